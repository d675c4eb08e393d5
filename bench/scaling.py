"""Step time and images/s of one run on 1, 2, ... processes (torchrun, DDP).

Each process count trains the same config (``optim.batch_size`` is the global batch, so
the work per step is the same) for ``--steps`` steps under
``torchrun --standalone --nproc-per-node N -m engine train``; the step time is the median
gap between consecutive steps' training clocks in the run's ``metrics.jsonl`` (the first
steps, the monitor and checkpoint steps excluded). On a CPU each process gets
``cores / N`` threads, so every row uses the whole machine; on a 2-core CPU this is a
correctness harness more than a speed-up (two processes share the cores the one process
had). On a machine with several GPUs, run ``--nproc 1 2 4 8`` to see DDP scale.

    python bench/scaling.py [--method simclr] [--batch 128] [--steps 30] [--nproc 1 2]
        [--backbone auto|small_cnn|resnet18|resnet50] [--resolution 32] [--device auto]
        [--set run.sync_batchnorm=off ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_once(nproc: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Train ``args.steps`` steps on ``nproc`` processes; step-time statistics."""
    runs = work / f"runs-{nproc}"
    sets = {"optim.batch_size": args.batch, "optim.max_steps": args.steps,
            "optim.warmup_steps": 0, "data.resolution": args.resolution,
            "backbone.name": args.backbone, "run.device": args.device,
            "monitor.every_steps": 10 * args.steps, "monitor.monitor_size": 20,
            "monitor.checkpoint_every": 10 * args.steps, "monitor.checkpoint_seconds": 0,
            "data.shapes_count": max(args.images, 2 * args.batch)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "engine", "train", "--method", args.method,
           "--runs-dir", str(runs), "--quiet"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    for item in args.overrides:
        cmd += ["--set", item]
    env = dict(os.environ)
    if not (args.device in ("auto", "cuda") and torch.cuda.is_available()):
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed:\n{out.stderr[-3000:]}")
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    times = [r["time"] for r in rows if "loss" in r and "std" not in r]
    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)][3:-1]
    if not gaps:
        raise SystemExit("too few steps to time: raise --steps")
    step = statistics.median(gaps)
    summary = json.loads((run / "summary.json").read_text())
    return {"step_s": step, "ips": args.batch / step, "spread": statistics.pstdev(gaps),
            "device": summary.get("device", "?")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="simclr")
    p.add_argument("--batch", type=int, default=128, help="global batch (all processes)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backbone", default="auto")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--images", type=int, default=2000, help="built-in shapes to train on")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="any other setting (repeatable), "
                   "e.g. run.sync_batchnorm=off")
    args = p.parse_args()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    extra = f" ({', '.join(args.overrides)})" if args.overrides else ""
    print(f"{args.method}{extra}, global batch {args.batch}, {args.resolution}px, backbone "
          f"{args.backbone}, {args.steps} steps; {_cpu_name()}, {os.cpu_count()} cores, "
          f"{gpus} GPU(s) {torch.cuda.get_device_name(0) if gpus else ''}, torch "
          f"{torch.__version__}, {date.today()}")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for n in args.nproc:
            r = run_once(n, args, Path(work))
            results[n] = r
            base = results[args.nproc[0]]
            speedup = r["ips"] / base["ips"]
            # on GPUs each process brings its own device: report the scaling efficiency;
            # on a CPU all rows share the same cores, so only the ratio means anything
            eff = (f", efficiency {speedup / (n / args.nproc[0]):.0%}" if "cuda" in
                   r["device"] else f" (same {os.cpu_count()} CPU cores)")
            print(f"{n} process(es) [{r['device']}]: step {1000 * r['step_s']:7.1f} ms "
                  f"(± {1000 * r['spread']:.1f}), {r['ips']:8.1f} images/s, "
                  f"{speedup:.2f}x of {args.nproc[0]} process(es){eff}", flush=True)


if __name__ == "__main__":
    main()
