"""Typed run configuration: the single source of truth for every hyperparameter.

Each section is a dataclass whose fields are declared with :func:`param`, carrying a
default, help text and the allowed range or choices. The GUI forms, the CLI's
``--set section.field=value`` overrides, TOML files and validation messages are all
generated from these declarations (after nanoGPT's ``GPTConfig`` and magicgui's
dataclass widgets), so no default lives anywhere else.

This module must stay importable without torch: the GUI builds its forms from it
before the heavy libraries have loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from engine.errors import ConfigError


def param(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    choices: tuple[Any, ...] | None = None,
    label: str | None = None,
    collapse: str | None = None,
    advanced: bool = False,
    modality: str | None = None,
) -> Any:
    """Declare a config field with its help text and allowed range.

    ``collapse`` marks a switch that the literature shows makes the method collapse; its
    value is a short explanation shown next to the option in the GUI. ``modality``
    ("image" or "text") marks a field that only data of that kind reads: the form hides
    it for methods of the other kind (:meth:`FieldSpec.applies_to`).
    """
    meta = {
        "help": help,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "choices": choices,
        "label": label,
        "collapse": collapse,
        "advanced": advanced,
        "modality": modality,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldSpec:
    """What a form or a validator needs to know about one field."""

    section: str
    name: str
    type: type
    default: Any
    help: str
    min: float | None
    max: float | None
    min_exclusive: bool
    choices: tuple[Any, ...] | None
    label: str
    collapse: str | None
    advanced: bool
    modality: str | None = None  # the only kind of data that reads it; None: every kind

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def applies_to(self, modality: str) -> bool:
        """Whether a method training on ``modality`` data reads this field (paired
        image-text methods read both kinds' fields)."""
        if self.modality is None:
            return True
        return self.modality == modality or modality == "paired"

    def range_text(self) -> str:
        """The allowed values in words, for error messages and tooltips."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        lo = self.min
        hi = self.max
        if lo is None and hi is None:
            return f"any {self.type.__name__}"
        lo_op = "<" if self.min_exclusive else "≤"
        if lo is not None and hi is not None:
            return f"{_fmt(lo)} {lo_op} value ≤ {_fmt(hi)}"
        if lo is not None:
            return f"value {'>' if self.min_exclusive else '≥'} {_fmt(lo)}"
        assert hi is not None  # both None returned above
        return f"value ≤ {_fmt(hi)}"


def _fmt(x: float) -> str:
    return f"{x:g}"


#: sections that only one kind of data reads (the image augmentation and backbone)
SECTION_MODALITY = {"augment": "image", "backbone": "image"}


def field_specs(section_obj: Any, section: str) -> list[FieldSpec]:
    """The :class:`FieldSpec` of every field of a section dataclass, in declaration order.

    Built once per section class: ``get_type_hints`` evaluates every annotation, and a
    window asks for the specs about 450 times while it builds its forms (0.2 s of a 1.2 s
    window on a 2-core Zen 1 EPYC)."""
    key = (type(section_obj), section)
    if key not in _SPECS:
        _SPECS[key] = _build_field_specs(type(section_obj), section)
    return list(_SPECS[key])


_SPECS: dict[tuple[type, str], tuple[FieldSpec, ...]] = {}


def _build_field_specs(cls: type, section: str) -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        specs.append(
            FieldSpec(
                section=section,
                name=f.name,
                type=_base_type(hints[f.name]),
                default=f.default,
                help=meta.get("help", ""),
                min=meta.get("min"),
                max=meta.get("max"),
                min_exclusive=meta.get("min_exclusive", False),
                choices=meta.get("choices"),
                label=meta.get("label") or f.name.replace("_", " ").capitalize(),
                collapse=meta.get("collapse"),
                advanced=meta.get("advanced", False),
                modality=meta.get("modality") or SECTION_MODALITY.get(section),
            )
        )
    return tuple(specs)


def _base_type(t: Any) -> type:
    if t in (int, float, bool, str):
        return t
    return str


def coerce(spec: FieldSpec, value: Any) -> Any:
    """Convert ``value`` (a string from the CLI or a TOML scalar) to the field's type."""
    t = spec.type
    try:
        if t is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("true", "1", "yes", "on"):
                return True
            if s in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if t is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                return int(value)
            return int(str(value).strip())
        if t is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{spec.key}: {value!r} is not a valid {t.__name__} (allowed: {spec.range_text()})"
        ) from None


def check(spec: FieldSpec, value: Any) -> None:
    """Raise :class:`ConfigError` naming the field and its allowed range if ``value`` is bad."""
    if spec.choices is not None:
        if value not in spec.choices:
            raise ConfigError(
                f"{spec.key}: {value!r} is not allowed (allowed: {spec.range_text()})"
            )
        return
    if spec.type in (int, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{spec.key}: {value} is not a finite number")
        lo, hi = spec.min, spec.max
        below = lo is not None and (value <= lo if spec.min_exclusive else value < lo)
        above = hi is not None and value > hi
        if below or above:
            raise ConfigError(
                f"{spec.key} = {value:g} is out of range (allowed: {spec.range_text()})"
            )


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Where the data come from and how they are prepared (images or text)."""

    dataset: str = param(
        "shapes",
        "Built-in dataset ('shapes', 'digits'; 'pydocs' for text) or the path of a folder of "
        "images or of text files (.txt, .md). Subfolders are class labels, used only for "
        "evaluation and plot colours.",
    )
    resolution: int = param(32, "Training resolution in pixels (images are resized once).",
                            min=8, max=512, modality="image")
    shapes_count: int = param(6000, "Number of images generated for the built-in shapes set.",
                              min=100, max=200_000, advanced=True,
                              modality="image")
    seed: int = param(0, "Seed of the built-in shapes set and of the text held-out split.", min=0,
                      max=2**31 - 1, advanced=True)
    shapes_orientation: str = param(
        "upright", "Pose of the built-in shapes: 'upright' scenes have an up direction "
        "(shapes near their upright pose, shadows below), as photos do; 'any' turns shapes "
        "and light at random, so rotation prediction cannot work.",
        choices=("upright", "any"), label="Shapes orientation", advanced=True,
        modality="image")
    disk_cache: bool = param(True, "Cache decoded folders on disk so reopening is instant.",
                                label="Disk cache", advanced=True)
    # text data (the built-in 'pydocs' corpus or a folder of .txt / .md files)
    text_sample: str = param(
        "paragraph", "Text: what one sample is: a whole 'document' (file or docstring), a "
        "'paragraph' (blank-line separated), or a fixed-length 'window' of seq_len tokens "
        "(windows overlap by none). Longer samples are cut to seq_len tokens.",
        choices=("document", "paragraph", "window"), label="Text sample", modality="text")
    seq_len: int = param(128, "Text: tokens per sample (longer samples are cut, shorter "
                         "ones padded).", min=8, max=4096, label="Sequence length",
                         modality="text")
    tokenizer: str = param(
        "byte", "Text: 'byte' (UTF-8 bytes, nothing to train or download) or 'bpe' (a "
        "byte-level BPE trained on the corpus with Hugging Face tokenizers).",
        choices=("byte", "bpe"), advanced=True, modality="text")
    bpe_vocab_size: int = param(2048, "Text: vocabulary size of the trained BPE.", min=300,
                                max=65536, advanced=True, label="BPE vocabulary",
                                modality="text")
    heldout_fraction: float = param(
        0.05, "Text: fraction of samples held out of training, where language models measure "
        "bits per token.", min=0.0, max=0.5, advanced=True, label="Held-out fraction",
        modality="text")


@dataclass
class AugmentConfig:
    """Strengths of the two-view augmentations (SimCLR's recipe), applied batched on device."""

    crop_min_scale: float = param(
        0.4, "Smallest area fraction kept by random resized crop (0.08 in SimCLR on ImageNet; "
        "higher keeps small objects in view at 32 px).", min=0.05, max=1.0)
    crop_max_scale: float = param(1.0, "Largest area fraction kept by random resized crop.",
                                  min=0.05, max=1.0)
    flip_prob: float = param(0.5, "Probability of a horizontal flip.", min=0.0, max=1.0)
    jitter_prob: float = param(0.8, "Probability of applying colour jitter.", min=0.0, max=1.0)
    brightness: float = param(0.4, "Colour jitter: brightness strength.", min=0.0, max=1.0)
    contrast: float = param(0.4, "Colour jitter: contrast strength.", min=0.0, max=1.0)
    saturation: float = param(0.8, "Colour jitter: saturation strength.", min=0.0, max=1.0)
    hue: float = param(0.3, "Colour jitter: hue shift (fraction of the colour wheel). Strong "
                       "hue jitter stops two views being matched by colour alone.",
                       min=0.0, max=0.5)
    grayscale_prob: float = param(0.2, "Probability of converting a view to grayscale.",
                                  min=0.0, max=1.0)
    blur_prob: float = param(0.0, "Probability of a Gaussian blur (useful at higher "
                             "resolutions; off at 32 px as in SimCLR's CIFAR recipe).",
                             min=0.0, max=1.0)
    blur_sigma_max: float = param(1.5, "Largest blur sigma in pixels.", min=0.1, max=10.0,
                                  advanced=True)


@dataclass
class BackboneConfig:
    """The encoder whose features are evaluated; methods add heads on top."""

    name: str = param(
        "auto",
        "Encoder network. 'auto' picks the small CNN on CPU and ResNet-18 on a GPU; 'vit' is "
        "a small Vision Transformer (needed by MAE, usable by every method).",
        choices=("auto", "small_cnn", "resnet18", "vit"),
    )
    width: int = param(16, "Base channel width of the small CNN (features are 8x this).",
                       min=4, max=256, advanced=True)
    patch_size: int = param(
        4, "ViT: side of the square patches in pixels; must divide data.resolution (4 at "
        "32 px gives 8x8 = 64 tokens, as 16 at 224 px gives ViT's 14x14).",
        min=1, max=64, advanced=True)
    vit_dim: int = param(
        128, "ViT: token width, also the feature dimension (a multiple of 4 and of the heads; "
        "ViT-Tiny has 192, ViT-S 384; 128 keeps CPU runs to minutes).", min=16, max=2048,
        advanced=True)
    vit_depth: int = param(4, "ViT: number of transformer blocks (12 in ViT-Tiny and ViT-S).",
                           min=1, max=48, advanced=True)
    vit_heads: int = param(4, "ViT: attention heads per block (must divide the token width).",
                           min=1, max=32, advanced=True)
    vit_mlp_ratio: float = param(4.0, "ViT: hidden width of each block's MLP, as a multiple "
                                 "of the token width (4 in ViT and MAE).", min=0.5, max=8.0,
                                 advanced=True)


@dataclass
class OptimConfig:
    """Optimiser and schedule: linear warm-up, then cosine decay to zero."""

    optimizer: str = param("adamw", "Optimiser.", choices=("sgd", "adamw"))
    lr: float = param(2e-3, "Peak learning rate (after warm-up).", min=0.0, max=10.0,
                      min_exclusive=True, label="Learning rate")
    weight_decay: float = param(1e-4, "Weight decay.", min=0.0, max=1.0)
    momentum: float = param(0.9, "SGD momentum (ignored by AdamW).", min=0.0, max=0.999,
                            advanced=True)
    batch_size: int = param(
        128, "Images per step, over all processes: the global batch (under torchrun each of "
        "N processes takes batch_size / N, so the learning rate needs no change with N; "
        "when raising the batch, scale the learning rate with it).", min=2, max=8192)
    max_steps: int = param(500, "Total training steps.", min=1, max=10_000_000)
    warmup_steps: int = param(30, "Linear warm-up steps.", min=0, max=1_000_000)


@dataclass
class MonitorConfig:
    """What is measured during training, and how often."""

    every_steps: int = param(25, "Run the monitor (kNN, collapse scores) every N steps.",
                             min=1, max=1_000_000)
    monitor_size: int = param(
        2000, "Images in the fixed monitor subset (kNN, collapse scores, embedding view).",
        min=20, max=20_000)
    knn_k: int = param(20, "Neighbours for weighted kNN accuracy.", min=1, max=200)
    knn_temperature: float = param(0.07, "Temperature of kNN vote weights (DINO).",
                                   min=0.001, max=10.0)
    checkpoint_every: int = param(250, "Save last.pt every N steps.", min=1,
                                  max=10_000_000)
    checkpoint_seconds: float = param(
        60.0, "Also save last.pt when this many seconds of training have passed since the "
        "last save, so a killed run loses at most that much (0: by steps only).", min=0.0,
        max=86_400.0, advanced=True)
    preview_count: int = param(
        8, "Monitor images shown in the reconstruction / pretext preview at each monitor "
        "step (pretext and reconstruction methods).", min=1, max=64, advanced=True)


@dataclass
class RunSettings:
    """General run settings (kept as its own section so the TOML stays flat)."""

    seed: int = param(0, "Random seed for initialisation, augmentation and sampling.",
                      min=0, max=2**31 - 1)
    device: str = param("auto", "Training device; 'auto' picks CUDA, then MPS, then CPU.",
                        choices=("auto", "cpu", "cuda", "mps"))
    amp: bool = param(
        True, "Mixed precision: bfloat16 (or float16) on a GPU; on a CPU that has bfloat16 "
        "in hardware (AVX512-BF16 or AMX), bfloat16 for convolutional backbones, about 1.7x "
        "faster (transformers stay float32 there: slower in bf16). The losses stay "
        "float32.", label="AMP")
    name: str = param("", "Optional name appended to the run id.", advanced=True)
    sync_batchnorm: str = param(
        "auto",
        "BatchNorm statistics over the whole global batch when training on several "
        "processes (torchrun): 'auto' follows the method's paper (on for SimCLR, BYOL, "
        "SimSiam, Barlow Twins, VICReg, DINO), 'on' or 'off'. One process: no effect.",
        choices=("auto", "on", "off"), advanced=True, label="SyncBatchNorm")
    tensorboard: bool = param(
        False, "Also write the run's metrics and embedding snapshots as TensorBoard event "
        "files (run folder/tensorboard), so 'tensorboard --logdir RUNS' shows it beside "
        "other work. Needs the optional tensorboard package: pip install "
        "'selfsup-workbench[tensorboard]'.", advanced=True, label="TensorBoard mirror")


@dataclass
class MethodConfig:
    """Base class of each method's hyperparameters; subclasses live beside the method."""

    def validate(self, cfg: Config) -> None:
        """Rules that span fields, of this section or of others (the resolution, the
        backbone): raise :class:`ConfigError` naming the fields. Called by
        :meth:`Config.validate`, so the form rejects such values before Start."""


#: the method a new run uses unless told otherwise
DEFAULT_METHOD = "simclr"

SECTIONS = ("data", "augment", "backbone", "method", "optim", "monitor", "run")


@dataclass
class Config:
    """A complete run description: enough to reproduce the run."""

    method_name: str = DEFAULT_METHOD
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    run: RunSettings = field(default_factory=RunSettings)

    def sections(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SECTIONS}

    def specs(self) -> list[FieldSpec]:
        out: list[FieldSpec] = []
        for name, obj in self.sections().items():
            out.extend(field_specs(obj, name))
        return out

    def spec(self, key: str) -> FieldSpec:
        for s in self.specs():
            if s.key == key:
                return s
        known = ", ".join(SECTIONS)
        raise ConfigError(f"unknown setting '{key}' (sections: {known})")

    def get(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)

    def set(self, key: str, value: Any) -> None:
        """Set one field from a string or scalar, coercing and checking it."""
        spec = self.spec(key)
        v = coerce(spec, value)
        check(spec, v)
        setattr(getattr(self, spec.section), spec.name, v)

    def validate(self) -> None:
        """Check every field and the rules that span fields."""
        for spec in self.specs():
            value = coerce(spec, self.get(spec.key))
            check(spec, value)
        if self.augment.crop_min_scale > self.augment.crop_max_scale:
            raise ConfigError(
                "augment.crop_min_scale must not exceed augment.crop_max_scale "
                f"({self.augment.crop_min_scale:g} > {self.augment.crop_max_scale:g})"
            )
        if self.backbone.name == "vit" and self.data.resolution % self.backbone.patch_size:
            raise ConfigError(
                f"backbone.patch_size = {self.backbone.patch_size} does not divide "
                f"data.resolution = {self.data.resolution}: a ViT cuts the image into "
                "whole patches")
        self.method.validate(self)

    def fit_schedule(self) -> str | None:
        """Shorten a warm-up that does not fit in the run (``--max-steps 10`` with the
        default 30 warm-up steps): a tenth of the run instead. Returns the one line that
        says so, or None when nothing changed."""
        o = self.optim
        if o.warmup_steps == 0 or o.warmup_steps < o.max_steps:
            return None
        old, o.warmup_steps = o.warmup_steps, o.max_steps // 10
        return (f"optim.warmup_steps = {old} does not fit in optim.max_steps = "
                f"{o.max_steps}; warming up for {o.warmup_steps} steps instead")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, obj in self.sections().items():
            d = dataclasses.asdict(obj)
            if name == "method":
                d = {"name": self.method_name, **d}
            out[name] = d
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml(), encoding="utf-8")

    def copy(self) -> Config:
        return copy.deepcopy(self)


def parse_override(text: str) -> tuple[str, str]:
    """Split ``section.field=value`` into key and raw value."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.field=value, got {text!r}")
    return key.strip(), value.strip()
