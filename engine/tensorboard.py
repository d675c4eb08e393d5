"""A mirror of a run as TensorBoard event files, so ``tensorboard --logdir RUNS`` shows
workbench runs beside a person's other work.

Optional: it needs the ``tensorboard`` package (``pip install
'selfsup-workbench[tensorboard]'``). With ``run.tensorboard = true`` the trainer feeds
every event to a :class:`TensorBoardMirror` while it trains; ``python -m engine
tensorboard RUN_DIR`` writes the same files for a run that trained without it. The event
files go to ``<run folder>/tensorboard/``; the run folder's own files stay the record.

What is written: every step metric under ``train/`` (loss, learning rate, throughput, the
method's own), every monitor score under ``monitor/`` (kNN accuracy with its random-init
baseline, per-dim std and its healthy 1/sqrt(d), effective ranks, alignment,
uniformity, the method's extra scores), and each embedding snapshot (backbone features)
for the projector, with the monitor set's class names and thumbnails.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from engine import events as ev
from engine.runs import RunFolder

#: the folder inside a run folder
TB_DIR = "tensorboard"
#: projector snapshots kept: the first, the last and evenly spaced ones between
MAX_PROJECTOR_SNAPSHOTS = 5
INSTALL_HINT = "pip install 'selfsup-workbench[tensorboard]' (or pip install tensorboard)"

MONITOR_KEYS = ("knn_accuracy", "std", "std_reference", "effective_rank", "backbone_rank",
                "alignment", "uniformity")


def available() -> bool:
    """Whether the tensorboard package can be imported."""
    try:
        import tensorboard  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardMirror:
    """Writes the events of one run to ``<run_dir>/tensorboard``.

    ``purge_step`` (a resumed run's start step) makes TensorBoard drop what an earlier
    session wrote past it, as the run folder drops its rows past the checkpoint.
    Raises ImportError (with :data:`INSTALL_HINT`) without the tensorboard package.
    """

    def __init__(self, run_dir: str | Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(f"run.tensorboard needs the tensorboard package: "
                              f"{INSTALL_HINT} ({e})") from None
        self.path = Path(run_dir) / TB_DIR
        self.writer = SummaryWriter(log_dir=str(self.path), purge_step=purge_step)
        self.monitor_set: ev.MonitorSet | None = None

    def add(self, e: ev.Event) -> None:
        """Mirror one event (those with nothing to plot are ignored)."""
        w = self.writer
        if isinstance(e, ev.StepMetrics):
            scalars = {"loss": e.loss, "lr": e.lr, "images_per_sec": e.images_per_sec,
                       **e.extra}
            for k, v in scalars.items():
                if _finite(v):
                    w.add_scalar(f"train/{k}", float(v), e.step)
        elif isinstance(e, ev.MonitorReport):
            if e.baseline:
                knn = e.knn_accuracy
                if knn is not None and _finite(knn):
                    w.add_scalar("monitor/knn_accuracy_random_init", float(knn), e.step)
                return
            row = e.to_row()
            for k in (*MONITOR_KEYS, *e.extra):
                if _finite(row.get(k)):
                    w.add_scalar(f"monitor/{k}", float(row[k]), e.step)
            w.add_text("monitor/verdict", e.verdict, e.step)
        elif isinstance(e, ev.MonitorSet):
            self.monitor_set = e
        elif isinstance(e, ev.EmbeddingSnapshot):
            self.add_embedding(e)
        elif isinstance(e, (ev.Finished, ev.Failed)):
            self.writer.flush()

    def add_embedding(self, snap: ev.EmbeddingSnapshot) -> None:
        """The backbone features of the monitor set at ``snap.step`` for the projector."""
        import torch

        feats = torch.from_numpy(np.asarray(snap.features, dtype=np.float32))
        metadata: list[str] | None = None
        images = None
        ms = self.monitor_set
        if ms is not None and len(ms.files) == feats.shape[0]:
            if ms.labels is not None and ms.class_names:
                metadata = [ms.class_names[int(i)] for i in ms.labels]
            else:
                metadata = list(ms.files)
            if ms.thumbnails is not None:
                images = torch.from_numpy(np.ascontiguousarray(
                    ms.thumbnails.transpose(0, 3, 1, 2))).float().div_(255)
        self.writer.add_embedding(feats, metadata=metadata, label_img=images,
                                  global_step=snap.step, tag="backbone")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def mirror_run(run_dir: str | Path) -> Path:
    """Write the TensorBoard files of a finished or stopped run from its folder (logged
    rows, monitor set, a few embedding snapshots); replaces an earlier mirror."""
    run = RunFolder(run_dir)
    if not run.metrics_path.exists():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: not a run folder")
    out = run.path / TB_DIR
    if out.exists():
        for f in out.rglob("*"):
            if f.is_file():
                f.unlink()
    mirror = TensorBoardMirror(run.path)
    try:
        for row in run.read_metrics():
            if ev.MonitorReport.is_row(row):
                mirror.add(ev.MonitorReport.from_row(row))
            elif ev.StepMetrics.is_row(row):
                mirror.add(ev.StepMetrics.from_row(row))
        ms = run.load_monitor_set()
        if ms is not None:
            mirror.add(ms)
        snaps = run.load_embeddings()
        if len(snaps) > MAX_PROJECTOR_SNAPSHOTS:
            keep = np.linspace(0, len(snaps) - 1, MAX_PROJECTOR_SNAPSHOTS).round()
            snaps = [snaps[int(i)] for i in sorted(set(keep.tolist()))]
        for snap in snaps:
            mirror.add(snap)
    finally:
        mirror.close()
    return out
