"""Every registered method, the same CPU budget, the same data: who learns what?

For each method: kNN accuracy of the monitor set at random initialisation and after
training for a fixed wall-clock budget with the method's default (CPU) settings, the final
per-dim std of the normalised embedding (against 1/sqrt(d)), the effective rank, the
training images/s, and any method-specific accuracy it reports (pretext methods).

    python bench/learning.py [--budget 150] [--dataset shapes] [--methods simclr byol ...]

Each method first times a few steps of its own; its step count is then set so that its
whole default schedule (warm-up, cosine decay, EMA momentum schedule) fits the budget, as a
user's run of that length would be. A run still going at 1.5 times the budget (the
machine slowed down) is stopped there.

Prints a Markdown table (paste it into the README with the date and the machine).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time

import torch

from engine import events as ev
from engine.config import Config
from engine.model import has_accelerator
from engine.presets import default_config
from engine.registry import available_methods
from engine.train import Trainer


def config(name: str, dataset: str, overrides: list[str]) -> Config:
    cfg = default_config(name, has_accelerator())
    cfg.set("data.dataset", dataset)
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("method.") and key not in {s.key for s in cfg.specs()}:
            continue  # another method's setting
        cfg.set(key, value)
    return cfg


def seconds_per_step(cfg: Config, runs_dir: str, steps: int = 12) -> float:
    """Median training-step time of a config (monitor kept small)."""
    cfg = copy.deepcopy(cfg)
    cfg.set("optim.max_steps", steps)
    cfg.set("optim.warmup_steps", 1)
    cfg.set("monitor.every_steps", 100_000)
    cfg.set("monitor.monitor_size", 64)
    times = [e.time for e in Trainer(cfg, runs_dir).run() if isinstance(e, ev.StepMetrics)]
    gaps = sorted(b - a for a, b in zip(times[2:], times[3:], strict=False))
    return gaps[len(gaps) // 2]


def run_method(name: str, dataset: str, budget: float, runs_dir: str,
               overrides: list[str]) -> dict:
    cfg = config(name, dataset, overrides)
    steps = max(cfg.optim.warmup_steps + 1, int(budget / seconds_per_step(cfg, runs_dir)))
    cfg.set("optim.max_steps", steps)
    cfg.set("monitor.every_steps", 100_000)
    trainer = Trainer(cfg, runs_dir)
    out: dict = {"method": name, "steps": 0, "ips": [], "accuracy": [], "chance": None}
    final = None
    for e in trainer.run():
        if isinstance(e, ev.RunStarted):
            out["chance"] = e.pretext_chance
        elif isinstance(e, ev.MonitorReport):
            if e.baseline:
                out["baseline"] = e.knn_accuracy
            final = e  # the trainer measures again where a stopped run ends
        elif isinstance(e, ev.StepMetrics):
            out["steps"] = e.step
            out["ips"].append(e.images_per_sec)
            acc = e.extra.get("pretext_accuracy")
            if acc is not None:
                out["accuracy"].append(acc)
            if e.time >= 1.5 * budget:  # a safety net: the step count ends the run
                trainer.request_stop()
        elif isinstance(e, ev.Failed):
            out["error"] = e.message
            return out
    out.update(knn=final.knn_accuracy, std=final.std, ref=final.std_reference,
               rank=final.effective_rank, dim=final.dim)
    return out


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def pretext(r: dict) -> str:
    """Mean training-batch pretext accuracy over the last 20 steps, beside chance."""
    if not r["accuracy"]:
        return "-"
    last = r["accuracy"][-20:]
    chance = f" (chance {pct(r['chance'])})" if r["chance"] else ""
    return pct(sum(last) / len(last)) + chance


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=150.0, help="training seconds per method")
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--methods", nargs="*", help="default: every registered method")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE",
                   help="change a setting for every method (method.* only where it exists)")
    args = p.parse_args()
    names = args.methods or [m.name for m in available_methods()]
    changed = f", with {' '.join(args.overrides)}" if args.overrides else ""
    print(f"{args.dataset}, {args.budget:g} s of training per method{changed}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n")
    print("| method | kNN random init | kNN trained | per-dim std (1/√d) | effective rank "
          "| pretext acc. | steps | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as runs:
        for name in names:
            r = run_method(name, args.dataset, args.budget, runs, args.overrides)
            if "error" in r:
                print(f"| {name} | failed: {r['error']} |||||||")
                continue
            ips = sorted(r["ips"])[len(r["ips"]) // 2] if r["ips"] else 0.0
            print(f"| {name} | {pct(r.get('baseline'))} | {pct(r['knn'])} | "
                  f"{r['std']:.4f} ({r['ref']:.4f}) | {r['rank']:.1f} / {r['dim']} | "
                  f"{pretext(r)} | {r['steps']} | {ips:.0f} |", flush=True)


if __name__ == "__main__":
    main()
