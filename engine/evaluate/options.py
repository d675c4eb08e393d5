"""What an evaluation runs: its protocols, its options and the train/validation split."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.config import check, coerce, field_specs, param
from engine.data import DataSource
from engine.errors import ConfigError, UserInputError
from engine.retrieval import DEFAULT_TEMPLATES, TEMPLATE_SEPARATOR, parse_templates

#: the protocols on image (or text) features, which every run gets
PROTOCOLS = ("knn", "linear", "fewshot", "finetune")
#: the protocols of an image-text model (CLIP) through both towers; added to whatever
#: protocols are asked for unless one of them is named (see :func:`resolve_protocols`)
PAIRED_PROTOCOLS = ("zeroshot", "retrieval")
ALL_PROTOCOLS = PROTOCOLS + PAIRED_PROTOCOLS
PROTOCOL_TEXT = {
    "knn": "weighted kNN",
    "linear": "linear probe",
    "fewshot": "few-shot",
    "finetune": "fine-tune",
    "zeroshot": "zero-shot from prompts",
    "retrieval": "image-text retrieval",
}
MODELS = ("trained", "random_init")

Progress = Callable[[str], None]


@dataclass
class EvalOptions:
    """Settings of every protocol; declared like the run config so errors name the option."""

    val_fraction: float = param(0.2, "Fraction of each class held out for validation.",
                                min=0.05, max=0.5)
    seed: int = param(0, "Seeds the split, the few-shot draws and fine-tuning.", min=0,
                      max=2**31 - 1)
    knn_k: int = param(20, "Neighbours that vote in weighted kNN.", min=1, max=1000)
    knn_temperature: float = param(0.07, "Temperature of the kNN vote weights exp(sim / T).",
                                   min=0.001, max=10.0)
    knn_leave_one_out: bool = param(False, "kNN over all images, each query left out of the "
                                    "bank, instead of training bank / validation queries.")
    linear_max_iter: int = param(100, "L-BFGS iterations of the linear probe.", min=1,
                                 max=10_000)
    linear_weight_decay: float = param(1e-3, "L2 penalty (wd/2 * |W|^2) of the linear probe.",
                                       min=0.0, max=10.0)
    fewshot_shots: tuple[int, ...] = field(
        default=(1, 5, 10),
        metadata={"help": "Labelled images per class (each 1-1000).", "min": 1, "max": 1000})
    fewshot_draws: int = param(10, "Random support draws averaged per shot count.", min=1,
                               max=1000)
    finetune_steps: int = param(100, "Fine-tuning steps (optimizer updates).", min=1,
                                max=100_000)
    finetune_batch_size: int = param(128, "Images per fine-tuning step.", min=2, max=4096)
    finetune_lr: float = param(1e-3, "Peak AdamW learning rate of fine-tuning.", min=0.0,
                               max=1.0, min_exclusive=True)
    finetune_weight_decay: float = param(1e-4, "AdamW weight decay of fine-tuning.", min=0.0,
                                         max=1.0)
    batch_size: int = param(512, "Images per forward pass when extracting features.", min=1,
                            max=8192)
    device: str = param("auto", "Device; 'auto' picks CUDA, then MPS, then CPU.",
                        choices=("auto", "cpu", "cuda", "mps"))
    zeroshot_templates: str = param(
        TEMPLATE_SEPARATOR.join(DEFAULT_TEMPLATES),
        "Image-text models: the zero-shot prompt templates, separated by '|'; '{}' in "
        "each stands for the class name (CLIP averages the templates' embeddings per "
        "class).")
    retrieval_pairs: int = param(
        5000, "Image-text models: at most this many validation pairs (a seeded sample) "
        "are ranked in retrieval, as MSCOCO's 5,000 test images in CLIP; chance "
        "recall@k is k / pairs.", min=10, max=10_000)

    def validate(self) -> None:
        """Coerce each option to its type (so CLI strings work) and check its range; raise
        :class:`ConfigError` naming the option and what is allowed."""
        for spec in field_specs(self, "eval"):
            value = getattr(self, spec.name)
            if spec.name == "fewshot_shots":
                self.fewshot_shots = _coerce_shots(value)
                continue
            value = coerce(spec, value)
            check(spec, value)
            setattr(self, spec.name, value)
        parse_templates(self.zeroshot_templates, "eval.zeroshot_templates")

    def templates(self) -> tuple[str, ...]:
        """The zero-shot templates, one string each (:func:`parse_templates`)."""
        return parse_templates(self.zeroshot_templates, "eval.zeroshot_templates")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fewshot_shots"] = list(self.fewshot_shots)
        return d


def _coerce_shots(shots: Any) -> tuple[int, ...]:
    bad = ConfigError(f"eval.fewshot_shots = {shots!r} is out of range (allowed: one or more "
                      "whole numbers, each 1 ≤ value ≤ 1000)")
    if isinstance(shots, (int, str)) and not isinstance(shots, bool):
        shots = [shots]
    if not isinstance(shots, (tuple, list)) or not shots:
        raise bad
    out = []
    for s in shots:
        if isinstance(s, bool) or (isinstance(s, float) and not s.is_integer()):
            raise bad
        try:
            n = int(str(s).strip()) if isinstance(s, str) else int(s)
        except (TypeError, ValueError):
            raise bad from None
        if not 1 <= n <= 1000:
            raise bad
        out.append(n)
    return tuple(sorted(set(out)))


def check_protocols(protocols: Iterable[str]) -> tuple[str, ...]:
    """The requested protocols in canonical order; unknown names raise UserInputError."""
    wanted = list(protocols)
    allowed = ", ".join(ALL_PROTOCOLS)
    bad = [p for p in wanted if p not in ALL_PROTOCOLS]
    if bad:
        raise UserInputError(f"unknown protocol {bad[0]!r} (allowed: {allowed})")
    if not wanted:
        raise UserInputError(f"no protocol given (allowed: {allowed})")
    return tuple(p for p in ALL_PROTOCOLS if p in wanted)


def resolve_protocols(protocols: Iterable[str], paired: bool) -> tuple[str, ...]:
    """What an evaluation runs: the requested protocols, plus both paired protocols for
    an image-text model when none of them is named (so the GUI's and the CLI's usual
    requests score CLIP's towers without knowing about them). Naming a paired protocol
    for a model without a text tower raises UserInputError."""
    chosen = check_protocols(protocols)
    named = [p for p in chosen if p in PAIRED_PROTOCOLS]
    if not paired:
        if named:
            raise UserInputError(f"protocol {named[0]!r} needs an image-text model (method "
                                 "clip, trained on captioned images)")
        return chosen
    if not named:
        chosen = chosen + PAIRED_PROTOCOLS
    return tuple(p for p in ALL_PROTOCOLS if p in chosen)


def require_labels(ds: DataSource) -> torch.Tensor:
    """The labels, or UserInputError saying what evaluation needs."""
    k = len(ds.class_names)
    if ds.labels is None or k < 2:
        found = "no labels" if ds.labels is None else f"only one class ({ds.class_names[0]})"
        raise UserInputError(
            f"dataset {ds.name} has {found}: evaluation needs at least two classes; put "
            "images in one subfolder per class")
    return ds.labels


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices (sorted): ``round(n_c * val_fraction)`` of each class
    to validation, at least one and never all of a class with two or more images (a class
    with one image stays in training). Deterministic for a seed."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(int(labels.max()) + 1 if labels.numel() else 0):
        idx = (labels == c).nonzero().flatten()
        n = idx.numel()
        if n == 0:
            continue
        idx = idx[torch.randperm(n, generator=gen)]
        n_val = 0 if n < 2 else min(n - 1, max(1, round(n * val_fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    def cat(xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs).sort().values if xs else torch.empty(0, dtype=torch.long)

    return cat(train), cat(val)
