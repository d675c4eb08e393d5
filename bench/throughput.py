"""SimCLR training throughput against its ceiling and the machine's, in one process.

- **layout**: the model's forward + backward on random tensors of the step's shape (two
  views per image) is timed in both memory layouts (NCHW and channels_last); the faster
  one is the ceiling, what the step would cost if sampling, augmentation, the loss and
  the optimiser were free. The trainer picks its layout with
  :func:`engine.model.memory_format`; the line says whether that is the faster one.
- **precision**: the same ceiling in float32 and under autocast in the dtype ``run.amp``
  trains in on this device (:func:`engine.model.autocast_dtype`: bfloat16 on a GPU, and
  on a CPU with AVX512-BF16 or AMX); none where the device has no fast low-precision path.
- **full step**: the real ``Trainer`` loop, timed between consecutive step events
  (monitor and checkpoint steps excluded), with ``run.amp`` on and off.
- **GFLOP/s**: the full step's floating-point work (forward and backward of one
  ``training_step``, counted by ``torch.utils.flop_counter``) divided by its time, beside
  a float32 matmul's GFLOP/s measured in the same run: the gap to what this machine can
  do at best.

    python bench/throughput.py [--backbone small_cnn|resnet18] [--batch 128] [--steps 12]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine import events as ev
from engine.config import Config
from engine.model import autocast_dtype, build_model, memory_format, pick_device, precision
from engine.presets import default_config
from engine.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ceiling(cfg: Config, device: torch.device, steps: int,
            fmt: torch.memory_format, dtype: torch.dtype | None = None) -> float:
    """Images/s of forward + backward on random inputs (2 views per image) in ``fmt``,
    under autocast to ``dtype`` when one is given."""
    model, _ = build_model(cfg, device)
    model = model.to(memory_format=fmt)
    model.train()
    b, r = cfg.optim.batch_size, cfg.data.resolution
    x = torch.randn(2 * b, 3, r, r, device=device).contiguous(memory_format=fmt)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with precision(device, dtype):
            out = model.project(model.embed(x))
        out.float().square().mean().backward()
        _sync(device)
        times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return b / statistics.median(times[2:])


def step_flops(cfg: Config, device: torch.device) -> int:
    """Floating-point operations of one training step's forward and backward."""
    model, _ = build_model(cfg, device)
    model.train()
    b, r = cfg.optim.batch_size, cfg.data.resolution
    batch = torch.randint(0, 256, (b, 3, r, r), dtype=torch.uint8, device=device)
    gen = torch.Generator().manual_seed(0)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model.training_step(batch, model.train_augment(), gen)
        out.loss.backward()
    return int(counter.get_total_flops())


def matmul_gflops(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of a float32 ``n x n`` matmul: the machine's practical peak here."""
    a = torch.randn(n, n, device=device)
    c = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ c
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ c
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def full_step(cfg: Config, steps: int) -> float:
    """Images/s of the real training loop (sampling, augmentation, loss, optimiser)."""
    cfg = cfg.copy()
    cfg.set("optim.max_steps", steps + 1)
    cfg.set("monitor.every_steps", 1_000_000)
    cfg.set("monitor.checkpoint_every", 10_000_000)
    cfg.set("monitor.checkpoint_seconds", 0)
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


def _amp(cfg: Config, on: bool) -> Config:
    cfg = cfg.copy()
    cfg.set("run.amp", on)
    return cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="small_cnn", choices=("small_cnn", "resnet18"))
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
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {date.today()}")
    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    ceilings = {name: ceiling(cfg, device, args.steps, fmt) for name, fmt in layouts.items()}
    for name, ips in ceilings.items():
        print(f"ceiling, {name + ':':<15} {ips:8.1f} images/s (forward+backward, random "
              "tensors)")
    best = max(ceilings, key=lambda k: ceilings[k])
    used = "channels_last" if memory_format(args.backbone, device) == torch.channels_last \
        else "contiguous"
    print(f"layout: the trainer uses {used}; the faster here is {best} "
          f"({ceilings['channels_last'] / ceilings['contiguous']:.2f}x channels_last vs "
          "contiguous)")
    ceil = ceilings[best]
    low = autocast_dtype(device, args.backbone)
    if low is None:
        print(f"precision: float32 only ({device} has no fast low-precision path)")
    else:
        fast = ceiling(cfg, device, args.steps, layouts[best], low)
        print(f"ceiling, {str(low).removeprefix('torch.') + ':':<15} {fast:8.1f} images/s "
              f"({fast / ceil:.2f}x float32; run.amp trains in it)")
        slow = full_step(_amp(cfg, False), args.steps)
        print(f"full training step, AMP off: {slow:8.1f} images/s")
        ceil = fast
    full = full_step(_amp(cfg, True), args.steps)
    print(f"full training step:          {full:8.1f} images/s"
          + (f" (AMP, {str(low).removeprefix('torch.')})" if low is not None else ""))
    print(f"ratio: {full / ceil:.1%} of the ceiling (target >= 85%)")
    flops = step_flops(cfg, device)
    achieved = flops * full / cfg.optim.batch_size / 1e9
    mm = matmul_gflops(device)
    print(f"full step: {flops / 1e9:.2f} GFLOP per step, {achieved:.1f} GFLOP/s achieved; "
          f"matmul {mm:.1f} GFLOP/s ({achieved / mm:.1%} of it)")


if __name__ == "__main__":
    main()
