"""SimCLR training throughput against its ceiling, in one process.

The ceiling is the same model's forward + backward on random tensors of the same shape
(two views of each image): what the step would cost if data sampling, augmentation, the
loss and the optimiser were free. The full step is the real ``Trainer`` loop, timed
between consecutive step events (monitor and checkpoint steps excluded).

    python bench/throughput.py [--backbone resnet18] [--batch 128] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from engine import events as ev
from engine.config import default_config
from engine.train import Trainer, build_model, pick_device


def ceiling(cfg, device: torch.device, steps: int) -> float:
    """Images/s of forward + backward on random inputs (2 views per image)."""
    model, _ = build_model(cfg, device)
    model.train()
    b, r = cfg.optim.batch_size, cfg.data.resolution
    x = torch.randn(2 * b, 3, r, r, device=device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = model.project(model.embed(x))
        out.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return b / statistics.median(times[2:])


def full_step(cfg, steps: int) -> float:
    """Images/s of the real training loop (sampling, augmentation, loss, optimiser)."""
    cfg.set("optim.max_steps", steps + 1)
    cfg.set("monitor.every_steps", 1_000_000)
    cfg.set("monitor.checkpoint_every", 10_000_000)
    cfg.set("monitor.monitor_size", 20)
    with tempfile.TemporaryDirectory() as runs:
        stamps = []
        for e in Trainer(cfg, runs).run():
            if isinstance(e, ev.StepMetrics):
                stamps.append(time.perf_counter())
            elif isinstance(e, ev.Failed):
                raise SystemExit(f"run failed: {e.message}")
    gaps = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    return cfg.optim.batch_size / statistics.median(gaps[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet18", choices=("resnet18", "small_cnn"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    cfg = default_config("simclr")
    cfg.set("backbone.name", args.backbone)
    cfg.set("optim.batch_size", args.batch)
    cfg.set("data.resolution", args.resolution)
    cfg.set("optim.warmup_steps", 0)
    device = pick_device(cfg.run.device)
    print(f"SimCLR, {args.backbone}, batch {args.batch}, {args.resolution}px, {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    ceil = ceiling(cfg, device, args.steps)
    print(f"ceiling (forward+backward, random tensors): {ceil:8.1f} images/s")
    full = full_step(cfg, args.steps)
    print(f"full training step:                         {full:8.1f} images/s")
    print(f"ratio: {full / ceil:.1%} of the ceiling (target >= 85%)")


if __name__ == "__main__":
    main()
