"""Models from configs: device choice, building a method, optimiser groups, schedule,
BatchNorm calibration, memory format and feature extraction.

Everything that turns a :class:`~engine.config.Config` into a live network lives here,
below the training loop, so evaluation and export build, calibrate and read models
exactly as training does without importing the loop (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from engine.config import Config
from engine.data.source import Inputs
from engine.errors import UserInputError
from engine.methods._base import SSLMethod
from engine.registry import get_method_info


def pick_device(name: str = "auto") -> torch.device:
    """CUDA if available, else Apple's MPS, else CPU (or exactly what was asked for)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError("run.device = 'cuda' but no CUDA GPU is available (use 'auto')")
    return torch.device(name)


def has_accelerator() -> bool:
    """Whether 'auto' would train on a GPU (so GPU presets apply)."""
    return pick_device("auto").type != "cpu"


#: backbones whose CPU training is faster under bfloat16 autocast: convolutions
CPU_BF16_BACKBONES = frozenset({"small_cnn", "resnet18"})


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    Without it bf16 is emulated and slower than float32. The probes are private torch
    functions: if a later torch drops them, the answer is False and nothing else
    changes."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            continue
    return False


def autocast_dtype(device: torch.device, backbone_name: str) -> torch.dtype | None:
    """The mixed-precision dtype ``run.amp`` trains in, or None where it would not pay.

    On a GPU: bfloat16 where it has it (no loss scaling needed), else float16. On a CPU
    with bfloat16 in hardware, only convolutional backbones: oneDNN runs their bf16
    convolutions about 1.7x faster (the small CNN's forward+backward at batch 256,
    153 -> 91 ms on a 2-core Sapphire Rapids), while the transformers' steps get slower
    (MAE's ViT 147 -> 268 ms, GPT's text encoder 42 -> 51 ms, 2026-12-02;
    ``bench/throughput.py``). It pays without AMX too: on a 2-core AMD EPYC with
    AVX512-BF16 only, SimCLR's full step went from 810 to 1,394 images/s (1.72x,
    2026-12-02). Nothing on other devices (MPS)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and backbone_name in CPU_BF16_BACKBONES and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device`` (from :func:`autocast_dtype`), or a disabled
    autocast for None: float32, whatever encloses it. The one way every training-step
    caller (trainer, lr-find, benches) enters the trainer's precision."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def memory_format(backbone_name: str, device: torch.device) -> torch.memory_format:
    """The fastest layout of a backbone's activations on a device.

    channels_last (NHWC) lets oneDNN on CPU and cuDNN on CUDA run convolutions without
    layout conversions: on a 2-core CPU the small CNN's forward+backward is about 20 %
    faster and ResNet-18 about 33 % (bench/throughput.py). A ViT has no convolutions
    after its patch embedding, so it keeps the default layout.
    """
    if backbone_name == "vit" or device.type not in ("cpu", "cuda"):
        return torch.contiguous_format
    return torch.channels_last


#: device types with a fused AdamW kernel in the supported torch versions
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda"})


def build_model(cfg: Config, device: torch.device) -> tuple[SSLMethod, str]:
    """The method (backbone + heads) for a config on ``device``, in its fastest memory
    format; also the backbone name that ``backbone.name = auto`` resolved to."""
    info = get_method_info(cfg.method_name)
    cls = cast(type[SSLMethod], info.cls)
    backbone, dim, backbone_name = cls.make_backbone(cfg, device)
    model = cls(cfg, backbone, dim)
    model = model.to(device)
    fmt = memory_format(backbone_name, device)
    if fmt is not torch.contiguous_format:
        model = model.to(memory_format=fmt)
    return model, backbone_name


def lr_at(step: int, peak: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to zero at ``total_steps``
    (Goyal et al. 2017 warm-up; Loshchilov & Hutter 2017 cosine schedule)."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_lr(step: int, cfg: Config) -> float:
    """The run's learning rate at ``step`` (``optim`` section)."""
    o = cfg.optim
    return lr_at(step, o.lr, o.warmup_steps, o.max_steps)


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    lr_multipliers: dict[str, float] | None = None,
) -> list[dict]:
    """Optimiser groups: weights decay, biases and norm parameters do not.

    Each group carries ``lr_mult`` (from the parameter-name prefixes of
    ``lr_multipliers``; the loop sets its learning rate to the schedule's times it) and
    ``decays`` (whether the weight-decay setting applies to it).
    """
    mults = lr_multipliers or {}
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in named_params:
        if p.requires_grad:
            mult = next((m for pre, m in mults.items() if name.startswith(pre)), 1.0)
            groups.setdefault((p.ndim > 1, mult), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decays else 0.0,
         "decays": decays, "lr_mult": mult}
        for (decays, mult), params in sorted(groups.items(),
                                             key=lambda kv: (not kv[0][0], kv[0][1]))
    ]


def build_optimizer(model: SSLMethod, cfg: Config) -> torch.optim.Optimizer:
    """SGD or AdamW over :func:`param_groups` of the method's parameters."""
    groups = param_groups(model.named_parameters(), cfg.optim.weight_decay,
                          model.lr_multipliers())
    if cfg.optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    # The fused kernel updates every tensor in one pass instead of a Python loop over
    # them: 2.9 -> 1.0 ms per step for DINO's 35 tensors on the 2-core CPU
    # (bench/step_profile.py, 2026-12-02), the same update rule.
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = len(devices) == 1 and devices <= FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate: the schedule's value times the group's multiplier."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> bool:
    """Restore a checkpoint's optimiser state; False if it does not fit (kept fresh then).

    The group settings (``lr_mult``, ``decays``, ``fused``) are what the method and the
    device ask for now, so a checkpoint saved before they existed, or on another device,
    resumes too. A checkpoint whose parameters were grouped differently (saved before a
    method split off a group of its own) cannot be mapped onto the groups: the weights
    still resume, the optimiser moments start afresh.
    """
    own = [(g["lr_mult"], g["decays"], g.get("fused")) for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except ValueError:
        return False
    # fused: what this device supports, not what the saving one did
    for g, (mult, decays, fused) in zip(optimizer.param_groups, own, strict=True):
        g["lr_mult"], g["decays"], g["fused"] = mult, decays, fused
    return True


@torch.no_grad()
def calibrate_batchnorm(
    model: SSLMethod, images: Inputs, device: torch.device, resolution: int
) -> None:
    """Estimate BatchNorm statistics of the untrained model on the monitor images.

    A fresh network's running statistics are the placeholders mean 0 / variance 1, so
    in eval mode its features are badly scaled and the random-init baseline would look
    worse than random features really are. Averaging the batch statistics over the
    monitor set (no gradients, no weight change) gives the honest baseline. Leaves the
    model in train mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for i in range(0, images.shape[0], 256):
        chunk = images[i : i + 256]
        if chunk.shape[0] < 2:
            break
        x = model.eval_inputs(chunk.to(device), resolution)
        model.project(model.embed(x))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


@torch.no_grad()
def extract_features(
    model: SSLMethod,
    inputs: Inputs,
    device: torch.device | str,
    batch: int = 512,
    resolution: int | None = None,
) -> torch.Tensor:
    """Backbone features (N, D), float32 on the CPU: ``model.embed`` in eval mode.

    Eval mode so BatchNorm uses its running statistics and each input's features do not
    depend on the rest of its batch; the model's mode is restored afterwards.
    """
    device = torch.device(device)
    if resolution is None:
        cfg = getattr(model, "cfg", None)
        resolution = cfg.data.resolution if cfg is not None else int(inputs.shape[-1])
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, inputs.shape[0], batch):
            x = model.eval_inputs(inputs[i : i + batch].to(device), resolution)
            out.append(model.embed(x).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, int(getattr(model, "feature_dim", 0)))
    return torch.cat(out)


def has_text_tower(model: object) -> bool:
    """Whether ``model`` embeds images and sentences into one joint space (CLIP's hooks
    ``embed_images``, ``embed_texts``, ``encode_prompts``), which evaluation scores by
    zero-shot classification and retrieval and exports write both towers of."""
    return all(callable(getattr(model, h, None))
               for h in ("embed_images", "embed_texts", "encode_prompts"))


@torch.no_grad()
def extract_pair_embeddings(
    model: SSLMethod,
    pairs: Inputs,
    device: torch.device | str,
    batch: int = 512,
    resolution: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint-space embeddings of image-text pairs (``pairs.images``, ``pairs.tokens``),
    float32 on the CPU: ``embed_images`` of ``eval_inputs`` and ``embed_texts`` of the
    token rows, in eval mode (the mode is restored), as the monitor and the window see
    them."""
    device = torch.device(device)
    if resolution is None:
        resolution = int(model.cfg.data.resolution)
    embed_images = getattr(model, "embed_images")  # noqa: B009 - a paired method's hook
    embed_texts = getattr(model, "embed_texts")  # noqa: B009
    was_training = model.training
    model.eval()
    zi, zt = [], []
    try:
        for i in range(0, pairs.shape[0], batch):
            chunk = pairs[i : i + batch].to(device)
            zi.append(embed_images(model.eval_inputs(chunk, resolution)).float().cpu())
            zt.append(embed_texts(getattr(chunk, "tokens")).float().cpu())  # noqa: B009
    finally:
        model.train(was_training)
    if not zi:
        return torch.empty(0, 0), torch.empty(0, 0)
    return torch.cat(zi), torch.cat(zt)
