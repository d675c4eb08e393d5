"""The run folder: a contract read by the CLI, the GUI and outside tools (docs/ARCHITECTURE.md §3).

```
<runs dir>/<run id>/
  config.toml     the full config
  metrics.jsonl   one JSON object per line, append-only, flushed as written
  summary.json    status, final metrics, evaluation results (rewritten atomically;
                  updates hold .summary.lock, so training and evaluation never lose
                  each other's changes)
  owner.json      host, pid and heartbeat of the process training the run (while it
                  does): a run is `running` only while that process lives, otherwise
                  `interrupted` (resumable)
  checkpoints/    last.pt (atomic: temp file + rename)
  snapshots/      embeddings and reconstruction grids for reopening the run later
```
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from engine.events import EmbeddingSnapshot, MonitorSet, PreviewSnapshot

RUNS_DIR_ENV = "SELFSUP_RUNS_DIR"
#: an owner on another machine whose heartbeat is older than this is taken for dead
REMOTE_OWNER_TIMEOUT = 300.0
#: on this machine a live pid whose heartbeat is older than this is another process
#: that reused the pid
LOCAL_OWNER_TIMEOUT = 3600.0
APP_NAME = "selfsup-workbench"


#: a text run's vocabulary in its run folder (engine.data.tokens.tokenizer_from_dict)
TOKENIZER_FILE = "tokenizer.json"

def default_runs_dir() -> Path:
    """``$SELFSUP_RUNS_DIR`` if set, else the platform's user data dir + ``runs``."""
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "runs"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat[stat.rindex(")") + 2] != "Z"
        except (OSError, ValueError, IndexError):
            return True
    return True


def atomic_write_bytes(path: Path, data: bytes, sync: bool = True) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half
    (``sync``: also flush to disk first, so a power cut cannot leave it empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    """JSON cannot hold NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "run"


class RunFolder:
    """One run's folder on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._metrics_file: Any = None

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def owner_path(self) -> Path:
        return self.path / "owner.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def snapshots_dir(self) -> Path:
        return self.path / "snapshots"

    @classmethod
    def create(cls, runs_dir: str | Path, method: str, dataset: str, name: str = "") -> RunFolder:
        """A new, uniquely named folder ``<date>-<time>_<method>_<dataset>[_<name>]``."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        parts = [stamp, _slug(method), _slug(Path(dataset).name or dataset)]
        if name:
            parts.append(_slug(name))
        base = "_".join(parts)
        for i in range(1000):
            candidate = runs_dir / (base if i == 0 else f"{base}-{i}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            run = cls(candidate)
            run.checkpoint_dir.mkdir()
            run.snapshots_dir.mkdir()
            return run
        raise RuntimeError(f"could not create a run folder under {runs_dir}")

    # owner ---------------------------------------------------------------------------
    def claim(self) -> None:
        """Record this process as the one training the run (host, pid, heartbeat)."""
        now = time.time()
        self._write_owner({"host": socket.gethostname(), "pid": os.getpid(),
                           "started": now, "heartbeat": now})

    def heartbeat(self, step: int | None = None) -> None:
        """Say the owner is still alive, and at which step (the trainer calls this every
        few seconds; summary.json's step is the last checkpoint's)."""
        owner = self.read_owner()
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            beat: dict[str, Any] = {**owner, "heartbeat": time.time()}
            if step is not None:
                beat["step"] = step
            self._write_owner(beat)

    def release(self) -> None:
        """The run is no longer trained by this process."""
        owner = self.read_owner()
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            self.owner_path.unlink(missing_ok=True)

    def read_owner(self) -> dict[str, Any]:
        try:
            owner = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def owner_alive(self, owner: dict[str, Any] | None = None) -> bool:
        """Whether a live process is training the run right now (``owner``: the
        already-read ``owner.json``).

        On this machine: its pid exists, is not a zombie, and its heartbeat is recent
        enough that the pid was not reused. Elsewhere: its heartbeat is recent.
        """
        owner = self.read_owner() if owner is None else owner
        if not owner:
            return False
        age = time.time() - float(owner.get("heartbeat") or 0.0)
        if owner.get("host") != socket.gethostname():
            return age < REMOTE_OWNER_TIMEOUT
        return age < LOCAL_OWNER_TIMEOUT and _pid_alive(int(owner.get("pid") or 0))

    def live_status(self, summary: dict[str, Any] | None = None,
                    owner: dict[str, Any] | None = None) -> str:
        """The run's status as every client shows it: ``running`` only while its owner
        lives, ``interrupted`` for a run whose process died (resumable)."""
        s = self.read_summary() if summary is None else summary
        status = str(s.get("status", "unknown"))
        if status == "running" and not self.owner_alive(owner):
            return "interrupted"
        return status

    def _write_owner(self, owner: dict[str, Any]) -> None:
        atomic_write_bytes(self.owner_path, json.dumps(owner).encode(), sync=False)

    # metrics ---------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        if self._metrics_file is None:
            self._metrics_file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        self._metrics_file.write(json.dumps(_clean(row)) + "\n")
        self._metrics_file.flush()

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete row; a torn last line (a crash mid-write) is ignored."""
        rows: list[dict[str, Any]] = []
        if not self.metrics_path.exists():
            return rows
        with open(self.metrics_path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return rows

    def has_baseline(self) -> bool:
        """Whether the random-init measurement is logged (a resumed run does not redo it)."""
        return any(r.get("baseline") for r in self.read_metrics())

    def truncate_metrics(self, max_step: int) -> None:
        """Drop rows past ``max_step`` so a resumed run's curves continue without overlap."""
        self.close()
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= max_step]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics_path, text.encode())

    # snapshots -------------------------------------------------------------------
    def _save_npz(self, name: str, arrays: dict[str, Any], compress: bool) -> Path:
        import io

        import numpy as np

        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        path = self.snapshots_dir / name
        atomic_write_bytes(path, buf.getvalue())
        return path

    def _load_npz(self, paths: list[Path], cls: Any) -> list[Any]:
        """Each readable file through ``cls.from_arrays``; unreadable files are skipped."""
        import numpy as np

        out = []
        for path in paths:
            try:
                with np.load(path, allow_pickle=False) as z:
                    out.append(cls.from_arrays({k: z[k] for k in z.files}))
            except (OSError, ValueError, KeyError, json.JSONDecodeError):
                continue
        return out

    def save_preview(self, snap: PreviewSnapshot) -> Path:
        """``snapshots/preview_<step>.npz``, for reopening the run."""
        return self._save_npz(f"preview_{snap.step:08d}.npz", snap.to_arrays(), True)

    def save_embedding(self, snap: EmbeddingSnapshot) -> Path:
        """``snapshots/embedding_<step>.npz`` (float16), for replaying the embedding view."""
        return self._save_npz(f"embedding_{snap.step:08d}.npz", snap.to_arrays(), False)

    def load_embeddings(self) -> list[EmbeddingSnapshot]:
        """The saved embedding snapshots in step order (unreadable files are skipped)."""
        return self._load_npz(sorted(self.snapshots_dir.glob("embedding_*.npz")),
                              EmbeddingSnapshot)

    def save_monitor_set(self, ms: MonitorSet) -> Path:
        """``snapshots/monitor_set.npz``, once per run."""
        return self._save_npz("monitor_set.npz", ms.to_arrays(), True)

    def load_monitor_set(self) -> MonitorSet | None:
        """The run's monitor set, or None when it was not saved or cannot be read."""
        got = self._load_npz([self.snapshots_dir / "monitor_set.npz"], MonitorSet)
        return got[0] if got else None

    def load_previews(self, max_step: int | None = None) -> list[PreviewSnapshot]:
        """The saved preview snapshots in step order (unreadable files are skipped)."""
        snaps = self._load_npz(sorted(self.snapshots_dir.glob("preview_*.npz")),
                               PreviewSnapshot)
        return [s for s in snaps if max_step is None or s.step <= max_step]

    def truncate_previews(self, max_step: int) -> None:
        """Drop snapshots past ``max_step`` (a resumed run redoes those steps)."""
        for snap_path in [*self.snapshots_dir.glob("preview_*.npz"),
                          *self.snapshots_dir.glob("embedding_*.npz")]:
            try:
                step = int(snap_path.stem.split("_")[1])
            except (IndexError, ValueError):
                continue
            if step > max_step:
                snap_path.unlink(missing_ok=True)

    # summary ---------------------------------------------------------------------
    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def write_summary(self, summary: dict[str, Any]) -> None:
        summary = {**summary, "updated": time.time()}
        data = json.dumps(_clean(summary), indent=2).encode()
        atomic_write_bytes(self.summary_path, data)

    def update_summary(self, **changes: Any) -> dict[str, Any]:
        """Read, change and rewrite summary.json as one step.

        A training thread and an evaluation (another thread, or the CLI in another
        process) both update the summary of a running run: without the lock one of them
        could rewrite the file from a copy read before the other's change.
        """
        with _summary_lock(self.path):
            summary = self.read_summary()
            summary.update(changes)
            self.write_summary(summary)
        return summary


_thread_locks: dict[Path, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def _summary_lock(run_path: Path) -> Iterator[None]:
    """This process's threads, then other processes (an OS file lock beside the summary)."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(run_path.resolve(), threading.Lock())
    with thread_lock, FileLock(run_path / ".summary.lock", timeout=30):
        yield


@dataclass(frozen=True)
class RunInfo:
    """A line of the runs list."""

    id: str
    path: Path
    status: str
    method: str
    dataset: str
    step: int
    total_steps: int
    started: float | None
    knn_accuracy: float | None
    baseline_knn: float | None
    verdict: str | None = None


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run folder under ``runs_dir`` (newest first); unreadable ones show as unknown."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    out = []
    for p in runs_dir.iterdir():
        if not p.is_dir() or p.name.startswith("."):
            continue
        if not (p / "config.toml").exists() and not (p / "summary.json").exists():
            continue
        folder = RunFolder(p)
        s = folder.read_summary()
        final = s.get("final") or {}
        owner = folder.read_owner()
        status = folder.live_status(s, owner)
        step = int(s.get("step") or 0)
        if status == "running":  # the live step, not the last checkpoint's
            step = max(step, int(owner.get("step") or 0))
        out.append(
            RunInfo(
                id=p.name,
                path=p,
                status=status,
                method=str(s.get("method", "?")),
                dataset=str(s.get("dataset", "?")),
                step=step,
                total_steps=int(s.get("total_steps") or 0),
                started=s.get("started"),
                knn_accuracy=final.get("knn_accuracy"),
                baseline_knn=s.get("baseline_knn"),
                verdict=final.get("verdict"),
            )
        )
    out.sort(key=lambda r: (r.started or 0, r.id), reverse=True)
    return out
