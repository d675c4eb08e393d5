"""Every registered method, the same CPU budget, the same data: who learns what?

For each method: kNN accuracy of the monitor set at random initialisation and after
training for a fixed wall-clock budget with the method's default (CPU) settings, the final
per-dim std of the normalised embedding (against 1/sqrt(d)), the effective rank, the
training images/s, and any method-specific accuracy it reports (pretext methods).

    python bench/learning.py [--budget 150] [--dataset shapes] [--text-dataset pydocs]
                             [--methods simclr byol gpt mlm mlm+sop ...]
                             [--repeats 3] [--probe] [--curve K]

``--curve K`` measures kNN K times along each image method's run and prints the curves:
how fast a method starts, beside how far it gets (BYOL and DINO start slower than SimCLR).

``--repeats N`` trains each image method with seeds 0..N-1 (the same step count) and
reports kNN accuracy, its gain over random init and, with ``--probe``, linear-probe
accuracy (trained and random init, engine.evaluate's protocol) as mean ± sd: kNN alone
is unfair to the reconstruction methods, and a +2 point difference means nothing when
seeds differ by 3.

Each method first times a few steps of its own; its step count is then set so that its
whole default schedule (warm-up, cosine decay, EMA momentum schedule) fits the budget, as a
user's run of that length would be. A run still going at 1.5 times the budget (the
machine slowed down) is stopped there. ``--budget 0`` instead trains each method for its
preset's own ``optim.max_steps`` with its own monitor schedule, as pressing Start does.

Image methods train on ``--dataset`` (image-text methods such as CLIP on its captioned
form, in a table with zero-shot accuracy and recall@5 beside chance), text methods (GPT,
MLM, SimCSE, and the variants of :data:`VARIANTS` such as ``mlm+sop``) on
``--text-dataset``. Text methods get a table of
their own: the same columns (samples/s for images/s), plus the training time (the
trainer's clock, monitor steps included) and the held-out score of the method, at random
initialisation and after training, beside the line it must clear: GPT's bits per token
against the corpus's unigram entropy, MLM's masked-token accuracy against always guessing
the most frequent masked token (and the sentence-order or next-sentence accuracy against
chance, 50 %).

Prints Markdown tables headed by the dataset, budget, machine and date (paste them into
the README); under an image table, one line names the methods whose mean ends at or below
their random encoder, by kNN and by linear probe.
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
from engine.model import autocast_dtype, has_accelerator
from engine.presets import default_config
from engine.registry import available_methods, get_method_info
from engine.train import Trainer

#: bench entries that are a registered method with settings of their own
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mlm+sop": ("mlm", ("method.sentence_task=sop",)),
    "mlm+nsp": ("mlm", ("method.sentence_task=nsp",)),
}
#: variants run when no --methods are given (after every registered method)
DEFAULT_VARIANTS = ("mlm+sop",)


def method_of(entry: str) -> tuple[str, tuple[str, ...]]:
    """The registered method of a bench entry and the settings the entry adds."""
    return VARIANTS.get(entry, (entry, ()))


def modality(entry: str) -> str:
    return get_method_info(method_of(entry)[0]).modality


def config(entry: str, dataset: str, overrides: list[str]) -> Config:
    name, own = method_of(entry)
    cfg = default_config(name, has_accelerator())
    cfg.set("data.dataset", dataset)
    for item in own:
        key, _, value = item.partition("=")
        cfg.set(key, value)
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


def reference_speed(dataset: str, runs_dir: str) -> str:
    """This machine's speed now, in one fixed unit: the time of SimCLR's CPU-preset step
    in float32 (and under AMP where this CPU has bfloat16 in hardware, which the presets
    train in).

    A budget in seconds buys fewer steps on a slower machine, and this one's speed drifts
    by a third within a day; tables made at different times compare by this line."""
    cfg = default_config("simclr")
    cfg.set("data.dataset", dataset)
    cfg.set("run.device", "cpu")
    cfg.set("run.amp", False)
    t = seconds_per_step(cfg, runs_dir)
    line = (f"Machine speed: SimCLR's CPU-preset step (small CNN, batch "
            f"{cfg.optim.batch_size}) took {1e3 * t:.0f} ms in float32, "
            f"{cfg.optim.batch_size / t:.0f} images/s")
    if autocast_dtype(torch.device("cpu"), "small_cnn") is not None:
        cfg.set("run.amp", True)
        line += f", and {1e3 * seconds_per_step(cfg, runs_dir):.0f} ms with AMP (bfloat16)"
    return line + ", when this table began."


def steps_for(entry: str, dataset: str, budget: float, runs_dir: str,
              overrides: list[str]) -> int | None:
    """The step count that fits ``budget`` seconds (None for ``budget`` 0: the preset's)."""
    if budget <= 0:
        return None
    cfg = config(entry, dataset, overrides)
    return max(cfg.optim.warmup_steps + 1, int(budget / seconds_per_step(cfg, runs_dir)))


def run_method(entry: str, dataset: str, budget: float, runs_dir: str,
               overrides: list[str], seed: int = 0, steps: int | None = None,
               probe: bool = False, curve: int = 0) -> dict:
    """Train one bench entry with ``run.seed = seed``; ``budget`` 0: its preset's own steps
    and monitor schedule, else ``steps`` (:func:`steps_for`). With ``probe`` the trained
    and the random-init encoder are also scored by a linear probe (engine.evaluate, the
    run's labelled data, 20 % held out per class). With ``curve`` K the monitor measures
    kNN K times along the run (``out["curve"]``: (step, training seconds, kNN))."""
    cfg = config(entry, dataset, overrides)
    cfg.set("run.seed", seed)
    if budget > 0:
        if steps is None:
            steps = steps_for(entry, dataset, budget, runs_dir, overrides)
        cfg.set("optim.max_steps", steps)
        cfg.set("monitor.every_steps", max(1, steps // curve) if curve else 100_000)
    trainer = Trainer(cfg, runs_dir)
    out: dict = {"method": entry, "steps": 0, "ips": [], "accuracy": [], "chance": None,
                 "time": 0.0, "curve": []}
    final = None
    for e in trainer.run():
        if isinstance(e, ev.RunStarted):
            out["chance"] = e.pretext_chance
        elif isinstance(e, ev.MonitorReport):
            if e.baseline:
                out["baseline"] = e.knn_accuracy
                out["baseline_extra"] = dict(e.extra)
            elif e.knn_accuracy is not None:
                out["curve"].append((e.step, out["time"], e.knn_accuracy))
            final = e  # the trainer measures again where a stopped run ends
        elif isinstance(e, ev.StepMetrics):
            out["steps"] = e.step
            out["time"] = e.time
            out["ips"].append(e.images_per_sec)
            acc = e.extra.get("pretext_accuracy")
            if acc is not None:
                out["accuracy"].append(acc)
            if budget > 0 and e.time >= 1.5 * budget:  # a safety net: the step count ends
                trainer.request_stop()
        elif isinstance(e, ev.Failed):
            out["error"] = e.message
            return out
        if isinstance(e, ev.Finished):
            out["run_dir"] = e.run_dir
    assert final is not None
    out.update(knn=final.knn_accuracy, std=final.std, ref=final.std_reference,
               rank=final.effective_rank, dim=final.dim, extra=dict(final.extra))
    if probe and "run_dir" in out:
        from engine.evaluate import evaluate_run

        res = evaluate_run(out["run_dir"], ["linear"])["results"]["linear"]
        out["probe"] = res["trained"]["accuracy"]
        out["probe_baseline"] = res["random_init"]["accuracy"]
    return out


def mean_sd(xs: list[float | None]) -> str:
    """'85.7 ± 1.2 %' over repeats (sample standard deviation), or one value."""
    vals = [x for x in xs if x is not None]
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return pct(m)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
    return f"{100 * m:.1f} ± {100 * sd:.1f} %"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def pretext(r: dict) -> str:
    """Mean training-batch pretext accuracy over the last 20 steps, beside chance."""
    if not r["accuracy"]:
        return "-"
    last = r["accuracy"][-20:]
    chance = f" (chance {pct(r['chance'])})" if r["chance"] else ""
    return pct(sum(last) / len(last)) + chance


def heldout(r: dict) -> str:
    """A text method's held-out score at random initialisation -> after training, beside
    the line it must clear (GPT: the unigram entropy; MLM: the majority guess)."""
    base, end = r.get("baseline_extra", {}), r.get("extra", {})
    if "heldout_bits_per_token" in end:
        line = end.get("unigram_bits")
        ref = "" if line is None else f" (unigram {line:.2f})"
        return (f"{base.get('heldout_bits_per_token', float('nan')):.2f} → "
                f"{end['heldout_bits_per_token']:.2f} bits/token{ref}")
    if "heldout_masked_accuracy" in end:
        text = (f"masked {pct(base.get('heldout_masked_accuracy'))} → "
                f"{pct(end['heldout_masked_accuracy'])} "
                f"(majority {pct(end.get('heldout_majority_accuracy'))})")
        if "heldout_sentence_accuracy" in end:
            text += (f"; sentence {pct(base.get('heldout_sentence_accuracy'))} → "
                     f"{pct(end['heldout_sentence_accuracy'])} (chance 50.0 %)")
        return text
    return "-"


def below_baseline(results: dict[str, list[dict]], probe: bool) -> str:
    """One line naming the methods whose mean over seeds ends at or below their random
    encoder, by kNN and (with ``--probe``) by linear probe: the learning table's bar ("no
    method ends below its baseline") read off the table, so nobody has to scan it."""
    def below(key: str, base_key: str) -> str:
        worse = []
        for name, rs in results.items():
            pairs = [(r[key], r[base_key]) for r in rs
                     if r.get(key) is not None and r.get(base_key) is not None]
            if not pairs:
                continue
            gain = sum(a - b for a, b in pairs) / len(pairs)
            if gain <= 0:
                worse.append(f"{name} ({100 * gain:+.1f} pts)")
        return ", ".join(worse) or "none"
    line = f"At or below the random encoder (mean over seeds): by kNN, {below('knn', 'baseline')}"
    if probe:
        line += f"; by linear probe, {below('probe', 'probe_baseline')}"
    return line + "."


def median_rate(r: dict) -> float:
    return sorted(r["ips"])[len(r["ips"]) // 2] if r["ips"] else 0.0


def image_table(entries: list[str], args: argparse.Namespace, runs: str) -> None:
    """kNN (and with ``--probe`` linear-probe) accuracy at random init and trained, as
    mean ± sd over ``--repeats`` seeds; the other columns are the first seed's."""
    probe = args.probe
    curves: dict[str, list[dict]] = {}
    finished: dict[str, list[dict]] = {}  # the methods whose every seed trained
    extra_head = " linear probe random init | linear probe trained |" if probe else ""
    print("| method | kNN random init | kNN trained | gain |" + extra_head
          + " per-dim std (1/√d) | effective rank | pretext acc. | steps | images/s |")
    print("|---|---|---|---|" + ("---|---|" if probe else "") + "---|---|---|---|---|")
    for name in entries:
        steps = steps_for(name, args.dataset, args.budget, runs, args.overrides)
        rs = [run_method(name, args.dataset, args.budget, runs, args.overrides, seed=seed,
                         steps=steps, probe=probe, curve=args.curve)
              for seed in range(args.repeats)]
        curves[name] = rs
        bad = [r for r in rs if "error" in r]
        if bad:
            print(f"| {name} | failed: {bad[0]['error']} |||||||")
            continue
        finished[name] = rs
        r = rs[0]
        gains = [x["knn"] - x["baseline"] for x in rs if x.get("baseline") is not None]
        gain = "-" if not gains else mean_sd(gains).replace(" %", " pts").replace(
            "%", " pts")
        probes = (f" {mean_sd([x.get('probe_baseline') for x in rs])} | "
                  f"{mean_sd([x.get('probe') for x in rs])} |") if probe else ""
        print(f"| {name} | {mean_sd([x.get('baseline') for x in rs])} | "
              f"{mean_sd([x['knn'] for x in rs])} | {gain} |{probes} "
              f"{r['std']:.4f} ({r['ref']:.4f}) | {r['rank']:.1f} / {r['dim']} | "
              f"{pretext(r)} | {r['steps']} | {median_rate(r):.0f} |", flush=True)
    if finished:
        print("\n" + below_baseline(finished, probe), flush=True)
    if args.curve:
        curve_table(curves)


def curve_table(curves: dict[str, list[dict]]) -> None:
    """kNN accuracy along each method's run (mean over seeds at each monitor step), with
    the training seconds it was reached at (the first seed's clock)."""
    rows = []
    for name, rs in curves.items():
        # the trainer measures again where a run ends: one point per step
        pts = [{step: (t, knn) for step, t, knn in r.get("curve", [])} for r in rs]
        steps = sorted(set.intersection(*(set(p) for p in pts))) if pts else []
        if not steps:
            continue
        cells = [f"{pct(rs[0].get('baseline'))} (0 s)"]
        for step in steps:
            knn = sum(p[step][1] for p in pts) / len(pts)
            cells.append(f"{pct(knn)} ({pts[0][step][0]:.0f} s)")
        rows.append((name, cells))
    if not rows:
        return
    width = max(len(cells) for _, cells in rows)
    print("\nkNN accuracy along the run (mean over seeds; training seconds in brackets)\n")
    print("| method | random init | " + " | ".join(f"{i}" for i in range(1, width)) + " |")
    print("|---" * (width + 1) + "|")
    for name, cells in rows:
        cells += [""] * (width - len(cells))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def text_table(entries: list[str], args: argparse.Namespace, runs: str) -> None:
    print("| method | kNN random init | kNN trained | per-dim std (1/√d) | effective rank "
          "| held-out score | steps | samples/s | train time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in entries:
        r = run_method(name, args.text_dataset, args.budget, runs, args.overrides)
        if "error" in r:
            print(f"| {name} | failed: {r['error']} ||||||||")
            continue
        print(f"| {name} | {pct(r.get('baseline'))} | {pct(r['knn'])} | "
              f"{r['std']:.4f} ({r['ref']:.4f}) | {r['rank']:.1f} / {r['dim']} | "
              f"{heldout(r)} | {r['steps']} | {median_rate(r):.0f} | {r['time']:.0f} s |",
              flush=True)


def paired_table(entries: list[str], args: argparse.Namespace, runs: str) -> None:
    """Image-text methods: kNN of the image tower, zero-shot accuracy from class-name
    prompts and recall@5 both ways on the monitor pairs, each beside chance."""
    print("| method | kNN random init | kNN trained | zero-shot (chance) | text→image R@5 "
          "(chance) | image→text R@5 | effective rank | steps | pairs/s | train time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in entries:
        r = run_method(name, args.dataset, args.budget, runs, args.overrides)
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |||||||||")
            continue
        end = r.get("extra", {})

        def moved(key: str, r: dict = r) -> str:
            return f"{pct(r.get('baseline_extra', {}).get(key))} → {pct(r['extra'].get(key))}"

        print(f"| {name} | {pct(r.get('baseline'))} | {pct(r['knn'])} | "
              f"{moved('zero_shot_accuracy')} ({pct(end.get('zero_shot_chance'))}) | "
              f"{moved('text_to_image_r5')} ({pct(end.get('recall_chance_r5'))}) | "
              f"{moved('image_to_text_r5')} | {r['rank']:.1f} / {r['dim']} | {r['steps']} | "
              f"{median_rate(r):.0f} | {r['time']:.0f} s |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=150.0,
                   help="training seconds per method (0: each preset's own max_steps)")
    p.add_argument("--dataset", default="shapes", help="what image methods train on")
    p.add_argument("--text-dataset", default="pydocs", help="what text methods train on")
    p.add_argument("--methods", nargs="*",
                   help="default: every registered method, then "
                   f"{', '.join(DEFAULT_VARIANTS)} (variants: {', '.join(VARIANTS)})")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE",
                   help="change a setting for every method (method.* only where it exists)")
    p.add_argument("--repeats", type=int, default=1,
                   help="image methods: train each with seeds 0..N-1 and report kNN (and "
                   "probe) accuracy as mean ± sd, so noise is not read as a result")
    p.add_argument("--curve", type=int, default=0, metavar="K",
                   help="image methods: measure kNN K times along each run and print "
                   "the curves (the monitor's time counts in the budget's steps)")
    p.add_argument("--probe", action="store_true",
                   help="image methods: add linear-probe accuracy, trained and random init")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    names = args.methods or ([m.name for m in available_methods()] + list(DEFAULT_VARIANTS))
    images = [n for n in names if modality(n) == "image"]
    texts = [n for n in names if modality(n) == "text"]
    paired = [n for n in names if modality(n) == "paired"]
    changed = f", with {' '.join(args.overrides)}" if args.overrides else ""
    budget = (f"{args.budget:g} s of training per method" if args.budget > 0
              else "each method's default steps")
    if args.repeats > 1:
        budget += f", {args.repeats} seeds (mean ± sd)"
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"{'accelerator' if has_accelerator() else 'no GPU'}, "
               f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as runs:
        if images:
            print(f"{args.dataset}, {budget}{changed}, {machine}\n")
            if args.budget > 0:
                print(reference_speed(args.dataset, runs) + "\n")
            image_table(images, args, runs)
        if texts:
            print(f"{chr(10) if images else ''}{args.text_dataset}, {budget}{changed}, "
                  f"{machine}\n")
            text_table(texts, args, runs)
        if paired:
            print(f"{chr(10) if images or texts else ''}{args.dataset} with captions, "
                  f"{budget}{changed}, {machine}\n")
            paired_table(paired, args, runs)


if __name__ == "__main__":
    main()
