"""Where each image method's training step goes: augmentation, forward, target forward,
backward, optimiser, EMA update.

The learning bench gives every method the same seconds, so a method whose step costs twice
as much gets half the steps. This bench splits the step into its parts, per method, with
the method's CPU preset, so that cost which is not part of the method (the optimiser's
per-tensor loop, an EMA update one tensor at a time) can be told from cost that is (MoCo's
and BYOL's target network, DINO's crops):

    python bench/step_profile.py [--methods simclr byol dino] [--steps 20] [--set K=V ...]

Timings are wall-clock medians over ``--steps`` steps after 3 warm-up steps, on the CPU
(or the GPU, synchronised around each part), in the precision the trainer uses there
(``run.amp``; ``--set run.amp=false`` for float32). "forward" is the method's training
step less its augmentation and its target networks' forward; "target" is the forward of the EMA
targets (teacher, key encoder). Prints a Markdown table headed by the machine and date.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from learning import config  # bench/learning.py, beside this file

from engine.augment import ViewAugment
from engine.data import load_configured
from engine.model import (
    autocast_dtype,
    build_model,
    build_optimizer,
    pick_device,
    precision,
    set_lr,
)
from engine.registry import available_methods, get_method_info

PARTS = ("augment", "forward", "target", "backward", "optimizer", "after_step")


class Clock:
    """Accumulates wall-clock seconds per part within one step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.acc: dict[str, float] = defaultdict(float)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.acc[name] += time.perf_counter() - t0


def _timed_augment(clock: Clock) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """ViewAugment's own ``__call__`` and one that times it (every augmentation the
    method draws, local crops included)."""
    original = ViewAugment.__call__

    def call(self: ViewAugment, *args: Any, **kwargs: Any) -> Any:
        with clock.part("augment"):
            return original(self, *args, **kwargs)

    return original, call


def _hook_targets(model: torch.nn.Module, clock: Clock) -> None:
    """Time the forward of every EMA target (MomentumMethod's pairs)."""
    starts: list[float] = []

    def pre(_m: torch.nn.Module, _i: Any) -> None:
        clock.sync()
        starts.append(time.perf_counter())

    def post(_m: torch.nn.Module, _i: Any, _o: Any) -> None:
        clock.sync()
        clock.acc["target"] += time.perf_counter() - starts.pop()

    for _online, target in getattr(model, "_momentum_pairs", []):
        target.register_forward_pre_hook(pre)
        target.register_forward_hook(post)


def profile(method: str, dataset: str, steps: int, overrides: list[str]) -> dict[str, Any]:
    cfg = config(method, dataset, overrides)  # as the learning bench builds it
    device = pick_device(cfg.run.device)
    torch.manual_seed(0)
    ds = load_configured(cfg.data, modality=get_method_info(method).modality)
    model, backbone_name = build_model(cfg, device)
    model.attach_source(ds)
    model.train()
    opt = build_optimizer(model, cfg)
    augment = model.train_augment()
    if augment is None or not isinstance(ds.inputs, torch.Tensor):
        raise SystemExit(f"{method}: not an image method with its own augmentation")
    gen = torch.Generator().manual_seed(1)
    clock = Clock(device)
    _hook_targets(model, clock)
    original, timed = _timed_augment(clock)
    b = min(cfg.optim.batch_size, len(ds))
    low = autocast_dtype(device, backbone_name) if cfg.run.amp else None  # the trainer's
    per_step: dict[str, list[float]] = defaultdict(list)
    ViewAugment.__call__ = timed  # type: ignore[method-assign]
    try:
        for i in range(steps + 3):
            idx = torch.randint(0, len(ds), (b,), generator=gen)
            batch = ds.inputs[idx].to(device)
            clock.acc.clear()
            set_lr(opt, cfg.optim.lr)
            with clock.part("step"):
                with clock.part("training_step"), precision(device, low):
                    out = model.training_step(batch, augment, gen)
                    float(out.loss.detach())
                with clock.part("backward"):
                    opt.zero_grad(set_to_none=True)
                    out.loss.backward()
                with clock.part("optimizer"):
                    opt.step()
                with clock.part("after_step"):
                    model.after_step(i, steps + 3)
            if i >= 3:
                a = dict(clock.acc)
                a["forward"] = a["training_step"] - a.get("augment", 0.0) - a.get("target", 0.0)
                for k, v in a.items():
                    per_step[k].append(v)
    finally:
        ViewAugment.__call__ = original  # type: ignore[method-assign]
    med = {k: statistics.median(v) for k, v in per_step.items()}
    return {"method": method, "batch": b, "median": med, "per_step": dict(per_step),
            "params": sum(p.numel() for p in model.parameters()),
            "tensors": sum(1 for p in model.parameters() if p.requires_grad),
            "precision": str(low).removeprefix("torch.") if low else "float32"}


def main() -> None:
    image = [m.name for m in available_methods() if m.modality == "image"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=image, choices=image, metavar="METHOD")
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = ap.parse_args()
    rows = [profile(m, args.dataset, args.steps, args.overrides) for m in args.methods]
    print(f"Step profile on {args.dataset}, {time.strftime('%Y-%m-%d')}, "
          f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
          f"; ms per step (median of {args.steps}), share of the step in brackets.\n")
    print("| method | batch | step | " + " | ".join(PARTS)
          + " | images/s | trainable tensors | precision |")
    print("|---|---|---|" + "---|" * len(PARTS) + "---|---|---|")
    for r in rows:
        med, total = r["median"], r["median"]["step"]
        cells = [f"{1e3 * med.get(p, 0.0):.1f} ({100 * med.get(p, 0.0) / total:.0f} %)"
                 for p in PARTS]
        print(f"| {r['method']} | {r['batch']} | {1e3 * total:.1f} | " + " | ".join(cells)
              + f" | {r['batch'] / total:.0f} | {r['tensors']} | {r['precision']} |")


if __name__ == "__main__":
    main()
