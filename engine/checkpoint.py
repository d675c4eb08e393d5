"""The one place that writes, reads, validates and restores a run's checkpoint.

A checkpoint describes itself (nanoGPT's and torchvision's habit): the method, the full
config and the backbone name beside the weights, optimiser, AMP scaler, step, wall time,
RNG states and data position, so any run folder can be reopened, resumed, evaluated or
exported without the session that made it. It is written atomically (temp file +
rename): a process killed mid-write leaves the previous checkpoint intact. Read with
``weights_only=True``: a checkpoint is data, never code.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.config import Config
from engine.errors import UserInputError
from engine.methods._base import SSLMethod
from engine.model import build_model, load_optimizer_state
from engine.runs import RunFolder, atomic_write_bytes

#: bumped when the layout changes incompatibly; older formats are still read where known
CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    """The contents of ``checkpoints/last.pt``."""

    step: int
    method: str
    config: dict[str, Any]
    backbone: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0  # training seconds (pauses excluded) up to ``step``
    rng: dict[str, torch.Tensor] = field(default_factory=dict)  # "augment", "torch"
    data_order: torch.Tensor | None = None  # the epoch's permutation of the dataset
    data_pos: int = 0  # how far into ``data_order`` the run has read

    def to_state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "method": self.method, "config": self.config,
                "backbone": self.backbone, "model": self.model, "optimizer": self.optimizer,
                "scaler": self.scaler, "step": self.step, "elapsed": self.elapsed,
                "rng": self.rng, "data_order": self.data_order, "data_pos": self.data_pos}

    @classmethod
    def from_state(cls, state: Any, path: Path | str = "checkpoint") -> Checkpoint:
        """Validate a loaded dict; raise UserInputError naming the file and the problem."""
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise UserInputError(f"{path} is not a run checkpoint (no model weights)")
        fmt = int(state.get("format", 1))
        if fmt > CHECKPOINT_FORMAT:
            raise UserInputError(f"{path} was written by a newer version of the workbench "
                                 f"(checkpoint format {fmt}; this version reads "
                                 f"{CHECKPOINT_FORMAT})")
        try:
            return cls(step=int(state.get("step", 0)), method=str(state.get("method", "")),
                       config=dict(state.get("config") or {}),
                       backbone=str(state.get("backbone") or ""), model=state["model"],
                       optimizer=dict(state.get("optimizer") or {}),
                       scaler=dict(state.get("scaler") or {}),
                       elapsed=float(state.get("elapsed", 0.0)),
                       rng=dict(state.get("rng") or {}), data_order=state.get("data_order"),
                       data_pos=int(state.get("data_pos", 0)))
        except (TypeError, ValueError) as e:
            raise UserInputError(f"{path} is not a valid run checkpoint ({e})") from None


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically to ``path``."""
    buf = io.BytesIO()
    torch.save(ckpt.to_state(), buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint (on the CPU); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"no checkpoint at {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which file
        raise UserInputError(f"cannot read checkpoint {p}: {e}") from None
    return Checkpoint.from_state(state, p)


def restore_training(
    ckpt: Checkpoint,
    model: SSLMethod,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
) -> bool:
    """Put weights, optimiser, scaler and RNGs back to ``ckpt``; False when the saved
    optimiser state does not fit the current parameter groups (its moments start afresh,
    see :func:`engine.model.load_optimizer_state`)."""
    model.load_state_dict(ckpt.model)
    fits = load_optimizer_state(optimizer, ckpt.optimizer) if ckpt.optimizer else False
    if ckpt.scaler:
        scaler.load_state_dict(ckpt.scaler)
    if "augment" in ckpt.rng:
        generator.set_state(ckpt.rng["augment"])
    if "torch" in ckpt.rng:
        torch.set_rng_state(ckpt.rng["torch"])
    return fits


def load_run_model(run: RunFolder, cfg: Config, device: torch.device | str
                   ) -> tuple[SSLMethod, str, int]:
    """A run's trained model from ``checkpoints/last.pt`` in eval mode on ``device``, the
    backbone name it was trained with, and its step."""
    from engine.backbones import resolve_backbone_name

    device = torch.device(device)
    ckpt = load(run.last_checkpoint)
    name = ckpt.backbone or resolve_backbone_name(cfg.backbone.name, device)
    c = copy.deepcopy(cfg)
    c.backbone.name = name
    model, _ = build_model(c, torch.device("cpu"))
    try:
        model.load_state_dict(ckpt.model)
    except RuntimeError as e:
        raise UserInputError(f"{run.last_checkpoint} does not fit the run's config "
                             f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), name, ckpt.step


def backbone_state(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """The encoder's weights: the ``backbone.`` entries of the method's state_dict, in
    the default memory layout (loadable anywhere)."""
    prefix = "backbone."
    return {k[len(prefix):]: v.contiguous() for k, v in ckpt.model.items()
            if k.startswith(prefix)}
