"""A learning-rate range test before a run: which learning rates make the loss fall.

Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, section 3.3
(the "LR range test"): train for a short while with the learning rate rising
exponentially from tiny to huge, and watch the loss; it first stays flat (too small),
then falls (useful), then blows up (too large). The suggestion is the rate where the
smoothed loss falls fastest, as fastai's and Lightning's finders pick it; when the loss
never clearly falls (some SSL losses start near their floor), one tenth of the rate at
the lowest loss instead.

The test runs the method's own training step on the config's data and optimiser (with
its per-group multipliers) from a fresh model, and is thrown away afterwards. A caveat
worth saying in the window: for methods that can collapse (BYOL, SimSiam, DINO) a
falling loss may be the collapse itself, so the suggestion is a sanity check beside the
paper's rate, not a replacement for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.config import Config
from engine.model import (
    autocast_dtype,
    build_model,
    build_optimizer,
    pick_device,
    precision,
    set_lr,
)

#: smoothing of the loss (an exponential moving average with bias correction, as fastai)
BETA = 0.9
#: stop once the smoothed loss exceeds this many times its best
DIVERGE_FACTOR = 4.0


@dataclass
class LRFindResult:
    """The rates tried, the raw and smoothed losses, and the suggestion with its reason."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    reason: str = ""
    stopped_early: bool = False
    seconds: float = 0.0


def lr_find(cfg: Config, source: Any = None, steps: int = 100, lr_min: float = 1e-6,
            lr_max: float = 10.0, progress: Callable[[int, int], bool | None] | None = None
            ) -> LRFindResult:
    """Run the range test for ``cfg`` (its method, data, optimiser and batch size).

    ``source`` is the dataset source (loaded from ``cfg.data`` when None).
    ``progress(step, steps)`` is called after every step; returning True stops the test.
    The suggestion is clipped to the ``optim.lr`` field's allowed range.
    """
    if steps < 5:
        raise ValueError(f"lr-find needs at least 5 steps, got {steps}")
    if not 0 < lr_min < lr_max:
        raise ValueError(f"lr-find needs 0 < lr_min < lr_max, got {lr_min:g}, {lr_max:g}")
    start = time.perf_counter()
    if source is None:
        from engine.data import load_configured
        from engine.registry import get_method_info

        source = load_configured(cfg.data, modality=get_method_info(cfg.method_name).modality)
    device = pick_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    model, backbone_name = build_model(cfg, device)
    model.attach_source(source)
    model.train()
    optimizer = build_optimizer(model, cfg)
    augment = model.train_augment()
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu")
    gen.manual_seed(cfg.run.seed)
    order = torch.Generator().manual_seed(cfg.run.seed)
    # the precision the run will train in, where it needs no loss scaling (bfloat16)
    low = autocast_dtype(device, backbone_name) if cfg.run.amp else None
    step_precision = precision(device, low if low == torch.bfloat16 else None)
    inputs = source.inputs
    n, batch = len(source), min(cfg.optim.batch_size, len(source))
    out = LRFindResult()
    avg, best = 0.0, math.inf
    ratio = (lr_max / lr_min) ** (1.0 / (steps - 1))
    for i in range(steps):
        lr = lr_min * ratio**i
        set_lr(optimizer, lr)
        idx = torch.randint(0, n, (batch,), generator=order)
        with step_precision:
            step_out = model.training_step(inputs[idx].to(device), augment,  # type: ignore[arg-type]
                                           gen)
        loss = float(step_out.loss.detach())
        if not math.isfinite(loss):
            out.stopped_early = True
            break
        optimizer.zero_grad(set_to_none=True)
        step_out.loss.backward()
        optimizer.step()
        model.after_step(i, steps)
        avg = BETA * avg + (1 - BETA) * loss
        smooth = avg / (1 - BETA ** (i + 1))
        out.lrs.append(lr)
        out.losses.append(loss)
        out.smoothed.append(smooth)
        best = min(best, smooth)
        if i > 5 and smooth > DIVERGE_FACTOR * abs(best) + 1e-12 and smooth > best:
            out.stopped_early = True
            break
        if progress is not None and progress(i + 1, steps):
            out.stopped_early = True
            break
    out.suggestion, out.reason = suggest(out.lrs, out.smoothed)
    if out.suggestion is not None:
        spec = cfg.spec("optim.lr")
        lo = spec.min if spec.min is not None else 0.0
        hi = spec.max if spec.max is not None else math.inf
        out.suggestion = min(max(out.suggestion, lo if lo > 0 else out.suggestion), hi)
    out.seconds = time.perf_counter() - start
    return out


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, str]:
    """The middle of the longest stretch over which the smoothed loss keeps falling
    (fastai's "valley" rule: robust to the noise that makes the single steepest point
    jump); a tenth of the rate at the lowest loss when the loss barely falls."""
    n = len(lrs)
    if n < 5:
        return None, "too few steps ran to suggest a rate"
    low = min(range(n), key=smoothed.__getitem__)
    scale = max(abs(smoothed[0]), 1e-12)
    if max(smoothed[: low + 1]) - smoothed[low] <= 0.02 * scale:
        return lrs[low] / 10, "the loss barely fell: a tenth of the rate at its lowest"
    # longest decreasing subsequence ending at each point, and where it starts
    length = [1] * n
    first = list(range(n))
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    end = max(range(n), key=length.__getitem__)
    start = first[end]
    # a flat stretch before the fall is not part of it: start where the loss has left
    # its starting level by 2 % of the drop
    drop = smoothed[start] - smoothed[end]
    while start < end and smoothed[start + 1] > smoothed[first[end]] - 0.02 * drop:
        start += 1
    third = (end - start) / 3
    pick = start + int(third) + int(third / 2)
    return lrs[pick], "in the middle of the longest fall of the loss"
