"""The training event stream.

The trainer yields these small frozen dataclasses holding plain CPU data (floats,
numpy arrays, dicts), never live tensors, so any client can consume them: the CLI
prints them, the GUI worker forwards them as Qt signals, tests assert on them.

The events that are logged to ``metrics.jsonl`` (:class:`StepMetrics`,
:class:`MonitorReport`) each have one ``to_row`` / ``from_row`` pair: training writes
through it and every reader (the GUI replaying a run, outside tools) reads through it,
so a field cannot be written under one name and read back under another. The events
saved as ``.npz`` snapshots (:class:`MonitorSet`, :class:`EmbeddingSnapshot`,
:class:`PreviewSnapshot`) have one ``to_arrays`` / ``from_arrays`` pair each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _present(**arrays: np.ndarray | None) -> dict[str, np.ndarray]:
    """The arrays that are not None (an npz file has no None: absent means None)."""
    return {k: v for k, v in arrays.items() if v is not None}


def _json_array(meta: dict[str, Any]) -> np.ndarray:
    """Text metadata as a 0-d string array (npz files hold arrays only)."""
    return np.array(json.dumps(meta))


@dataclass(frozen=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True)
class DatasetReady(Event):
    """The dataset was loaded (or taken from the cache)."""

    name: str
    n_images: int
    resolution: int
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...]  # (file, reason)
    from_cache: bool


@dataclass(frozen=True)
class RunStarted(Event):
    """Training is about to begin (fresh or resumed at ``start_step``)."""

    run_id: str
    run_dir: str
    method: str
    device: str
    backbone: str
    feature_dim: int
    n_images: int
    total_steps: int
    start_step: int
    steps_per_epoch: int
    config: dict[str, Any]
    pretext_chance: float | None = None  # accuracy of guessing, for pretext methods


@dataclass(frozen=True)
class StepMetrics(Event):
    """Metrics of one optimisation step."""

    step: int
    epoch: float
    time: float
    loss: float
    lr: float
    images_per_sec: float
    extra: dict[str, float] = field(default_factory=dict)

    ROW_KEYS = ("step", "epoch", "time", "loss", "lr", "images_per_sec")

    def to_row(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` row: the fixed keys, then the method's own metrics."""
        return {"step": self.step, "epoch": self.epoch, "time": self.time, "loss": self.loss,
                "lr": self.lr, "images_per_sec": self.images_per_sec, **self.extra}

    @staticmethod
    def is_row(row: dict[str, Any]) -> bool:
        return row.get("loss") is not None and "std" not in row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StepMetrics:
        """A logged step (a NaN loss is written as null and read back as NaN)."""
        extra = {k: float(v) for k, v in row.items() if k not in cls.ROW_KEYS
                 and isinstance(v, (int, float)) and not isinstance(v, bool)}
        loss = row.get("loss")
        return cls(step=int(row.get("step", 0)), epoch=float(row.get("epoch") or 0.0),
                   time=float(row.get("time") or 0.0),
                   loss=float("nan") if loss is None else float(loss),
                   lr=float(row.get("lr") or 0.0),
                   images_per_sec=float(row.get("images_per_sec") or 0.0), extra=extra)


@dataclass(frozen=True)
class MonitorReport(Event):
    """Collapse scores and kNN accuracy on the fixed monitor subset.

    ``step == 0`` with ``baseline=True`` is the random-initialisation measurement taken
    before the first step: the reference every curve is read against.
    """

    step: int
    epoch: float
    baseline: bool
    knn_accuracy: float | None
    std: float
    std_reference: float
    effective_rank: float
    dim: int
    backbone_rank: float
    backbone_dim: int
    extra: dict[str, float] = field(default_factory=dict)
    verdict: str = "healthy"  # 'healthy', 'dimensional' or 'complete' (engine.monitor)
    spectrum: tuple[float, ...] = ()  # log10 covariance eigenvalues, largest first
    alignment: float | None = None  # Wang & Isola 2020, on two views of monitor images
    uniformity: float | None = None

    ROW_KEYS = ("step", "epoch", "time", "baseline", "knn_accuracy", "std", "std_reference",
                "effective_rank", "dim", "backbone_rank", "backbone_dim", "verdict",
                "alignment", "uniformity", "spectrum")

    def to_row(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` row (``baseline`` only on the random-init row)."""
        row: dict[str, Any] = {
            "step": self.step, "epoch": self.epoch, "knn_accuracy": self.knn_accuracy,
            "std": self.std, "std_reference": self.std_reference,
            "effective_rank": self.effective_rank, "dim": self.dim,
            "backbone_rank": self.backbone_rank, "backbone_dim": self.backbone_dim,
            "verdict": self.verdict, "alignment": self.alignment,
            "uniformity": self.uniformity, "spectrum": [round(v, 3) for v in self.spectrum],
            **self.extra}
        if self.baseline:
            row["baseline"] = True
        return row

    @staticmethod
    def is_row(row: dict[str, Any]) -> bool:
        return row.get("std") is not None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MonitorReport:
        """A logged report. Rows written before ``dim`` was logged recover it from the
        std reference, which is exactly 1/sqrt(dim)."""
        ref = float(row.get("std_reference") or 0.0)
        dim = row.get("dim")
        if dim is None:
            dim = round(1.0 / ref**2) if ref > 0 else len(row.get("spectrum") or [])
        extra = {k: float(v) for k, v in row.items() if k not in cls.ROW_KEYS
                 and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(
            step=int(row.get("step", 0)), epoch=float(row.get("epoch") or 0.0),
            baseline=bool(row.get("baseline")), knn_accuracy=row.get("knn_accuracy"),
            std=float(row["std"]), std_reference=ref,
            effective_rank=float(row.get("effective_rank") or 0.0), dim=int(dim),
            backbone_rank=float(row.get("backbone_rank") or 0.0),
            backbone_dim=int(row.get("backbone_dim") or 0), extra=extra,
            verdict=str(row.get("verdict") or "healthy"),
            spectrum=tuple(float(v) for v in row.get("spectrum") or ()),
            alignment=row.get("alignment"), uniformity=row.get("uniformity"))


def replay(rows: list[dict[str, Any]]) -> list[Event]:
    """The logged events of a run's ``metrics.jsonl`` rows, in order."""
    out: list[Event] = []
    for r in rows:
        if MonitorReport.is_row(r):
            out.append(MonitorReport.from_row(r))
        elif StepMetrics.is_row(r):
            out.append(StepMetrics.from_row(r))
    return out


@dataclass(frozen=True)
class MonitorSet(Event):
    """The fixed monitor subset, sent once per run: what embedding snapshots index into.

    ``thumbnails`` are uint8 ``(N, t, t, 3)`` (at most 64 px) for hover previews;
    ``labels`` index ``class_names`` (None without labels); ``files`` are display names;
    ``texts`` the samples' (shortened) texts for hover when the source is text.
    """

    indices: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    thumbnails: np.ndarray | None  # None: the source has no pictures (e.g. text)
    texts: tuple[str, ...] = ()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``snapshots/monitor_set.npz`` (names, files, texts as JSON)."""
        return _present(indices=self.indices, thumbnails=self.thumbnails, labels=self.labels,
                        meta=_json_array({"class_names": list(self.class_names),
                                          "files": list(self.files),
                                          "texts": list(self.texts)}))

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray]) -> MonitorSet:
        meta = json.loads(str(z["meta"]))
        return cls(indices=z["indices"], labels=z.get("labels"),
                   class_names=tuple(meta["class_names"]), files=tuple(meta["files"]),
                   thumbnails=z.get("thumbnails"), texts=tuple(meta.get("texts", ())))


@dataclass(frozen=True)
class EmbeddingSnapshot(Event):
    """Backbone features and projector outputs of the monitor subset at ``step`` (float16,
    row ``i`` is monitor image ``i``), for the live embedding view.

    ``text_projections`` (image-text methods only, else None) are the monitor pairs'
    captions in the same joint space as ``projections`` (row ``i`` is image ``i``'s
    caption), so the view can map both modalities together. Snapshots saved before it
    existed load with None.
    """

    step: int
    features: np.ndarray
    projections: np.ndarray
    text_projections: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        return _present(step=np.asarray(self.step, np.int64), features=self.features,
                        projections=self.projections, text_projections=self.text_projections)

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray]) -> EmbeddingSnapshot:
        return cls(step=int(z["step"]), features=z["features"], projections=z["projections"],
                   text_projections=z.get("text_projections"))


@dataclass(frozen=True)
class PreviewSnapshot(Event):
    """A method's view of fixed monitor inputs at ``step``.

    For images, arrays are uint8 ``(N, H, W, 3)`` and ``kind`` is ``"reconstruction"``
    (``outputs`` are the model's images) or ``"classification"`` (``predicted`` / ``true``
    labels, one per input). For text, ``kind`` is ``"text"``, there are no arrays, and
    ``items`` holds one plain dict per fixed input, whose keys the method chooses and the
    predictions panel shows (a prompt and its continuations; a masked sentence and each
    mask's top-5 guesses; a segment pair with predicted and true order). Saved as
    ``snapshots/preview_<step>.npz`` for reopening the run.
    """

    step: int
    kind: str
    originals: np.ndarray | None = None
    inputs: np.ndarray | None = None
    outputs: np.ndarray | None = None
    predicted: tuple[str, ...] = ()
    true: tuple[str, ...] = ()
    input_title: str = "input"
    output_title: str = "output"
    items: tuple[dict[str, Any], ...] = ()

    META = ("step", "kind", "predicted", "true", "input_title", "output_title", "items")

    def to_arrays(self) -> dict[str, np.ndarray]:
        return _present(originals=self.originals, inputs=self.inputs, outputs=self.outputs,
                        meta=_json_array({k: getattr(self, k) for k in self.META}))

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray]) -> PreviewSnapshot:
        meta = json.loads(str(z["meta"]))
        return cls(step=int(meta["step"]), kind=meta["kind"], originals=z.get("originals"),
                   inputs=z.get("inputs"), outputs=z.get("outputs"),
                   predicted=tuple(meta["predicted"]), true=tuple(meta["true"]),
                   input_title=meta["input_title"], output_title=meta["output_title"],
                   items=tuple(meta.get("items", ())))


@dataclass(frozen=True)
class CheckpointSaved(Event):
    step: int
    path: str


@dataclass(frozen=True)
class Paused(Event):
    step: int


@dataclass(frozen=True)
class Resumed(Event):
    step: int


@dataclass(frozen=True)
class Diverged(Event):
    """The loss became non-finite at ``step``: the model was put back to the checkpoint
    of ``restored_step`` and the run is paused (or, when it cannot pause, failed).

    ``settings`` are the config keys that may be changed before resuming
    (:meth:`engine.train.Trainer.request_settings`).
    """

    step: int
    value: str
    restored_step: int
    message: str
    settings: tuple[str, ...]


@dataclass(frozen=True)
class RunWarning(Event):
    """Something the user should know that does not stop the run."""

    message: str


@dataclass(frozen=True)
class QueryResult(Event):
    """The monitor inputs a typed sentence matches best (an image-text method's search,
    answered between steps): positions in the monitor set, best first, with their
    cosine similarities; ``message`` says why there are none. Not logged."""

    step: int
    query: str
    indices: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class Finished(Event):
    """The run ended: ``status`` is 'finished' (all steps done) or 'stopped' (on request)."""

    status: str
    step: int
    run_dir: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class Failed(Event):
    """The run ended with an error; ``message`` is for the user, ``details`` for a report."""

    message: str
    details: str
    run_dir: str | None
    input_error: bool = False  # bad user input (CLI exit code 2), not a crash
