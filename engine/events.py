"""The training event stream.

The trainer yields these small frozen dataclasses holding plain CPU data (floats,
numpy arrays, dicts), never live tensors, so any client can consume them: the CLI
prints them, the GUI worker forwards them as Qt signals, tests assert on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


@dataclass(frozen=True)
class MonitorSet(Event):
    """The fixed monitor subset, sent once per run: what embedding snapshots index into.

    ``thumbnails`` are uint8 ``(N, t, t, 3)`` (at most 64 px) for hover previews;
    ``labels`` index ``class_names`` (None without labels); ``files`` are display names.
    """

    indices: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    thumbnails: np.ndarray


@dataclass(frozen=True)
class EmbeddingSnapshot(Event):
    """Backbone features and projector outputs of the monitor subset at ``step`` (float16,
    row ``i`` is monitor image ``i``), for the live embedding view."""

    step: int
    features: np.ndarray
    projections: np.ndarray


@dataclass(frozen=True)
class PreviewSnapshot(Event):
    """A pretext or reconstruction method's view of fixed monitor images at ``step``.

    Arrays are uint8 ``(N, H, W, 3)``. ``kind`` is ``"reconstruction"`` (``outputs`` are
    the model's images) or ``"classification"`` (``predicted`` / ``true`` labels, one per
    input). Saved as ``snapshots/preview_<step>.npz`` for reopening the run.
    """

    step: int
    kind: str
    originals: np.ndarray
    inputs: np.ndarray
    outputs: np.ndarray | None = None
    predicted: tuple[str, ...] = ()
    true: tuple[str, ...] = ()
    input_title: str = "input"
    output_title: str = "output"


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
