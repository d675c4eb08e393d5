"""Headless command line: ``python -m engine train|sweep|methods|runs|eval|export``.

Bad input (missing folder, no images, invalid value) exits with code 2 and a one-line
message; a run that fails while training exits with code 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from engine.errors import UserInputError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """The arguments that describe a config, read by :func:`_build_config`."""
    p.add_argument("config", nargs="?", help="a config TOML file (defaults otherwise)")
    p.add_argument("--method", help="method name (see 'methods')")
    p.add_argument("--dataset", help="'shapes', 'digits', 'pydocs' (text), or a folder of "
                   "images or of text files")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="override one setting (repeatable)")


def _parser(eval_options: bool = True) -> argparse.ArgumentParser:
    """The CLI. ``eval_options=False`` leaves out the ``eval`` flags, whose definitions
    import torch (seconds on a small CPU), so that ``runs`` or ``methods`` answer at once."""
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a self-supervised model")
    _add_config_args(t)
    t.add_argument("--runs-dir", help="where run folders go (default: $SELFSUP_RUNS_DIR or "
                   "the user data dir)")
    t.add_argument("--max-steps", type=int, help="shorthand for --set optim.max_steps=N")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser("sweep", help="one run per value of one setting, in sequence")
    _add_config_args(w)
    w.add_argument("--vary", metavar="SECTION.FIELD=VALUES",
                   help="the values: v1,v2,... (a choice field: some of its choices) or "
                   "start:stop:count:lin|log")
    w.add_argument("--runs-dir", help="where run folders go; the sweep folder goes in "
                   "RUNS_DIR/sweeps/")
    w.add_argument("--max-steps", type=int, help="shorthand for --set optim.max_steps=N")
    w.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")
    w.add_argument("--quiet", action="store_true", help="only the start and end of each run")

    sub.add_parser("methods", help="list the registered methods")
    r = sub.add_parser("runs", help="list runs with status and final metrics")
    r.add_argument("--runs-dir")

    x = sub.add_parser("export", help="export a run's encoder, embeddings or config")
    x.add_argument("run", help="a run folder, or a run id under --runs-dir")
    x.add_argument("what", choices=("encoder", "embeddings", "config"))
    x.add_argument("--out", required=True, help="folder to write into (created if needed)")
    x.add_argument("--runs-dir", help="where run ids are looked up")

    f = sub.add_parser("lr-find", help="a learning-rate range test (Smith 2017): the "
                       "loss over exponentially rising rates, and a suggested optim.lr")
    _add_config_args(f)
    f.add_argument("--steps", type=int, default=100, help="steps of the test (default 100)")
    f.add_argument("--min-lr", type=float, default=1e-6, help="first rate (default 1e-6)")
    f.add_argument("--max-lr", type=float, default=10.0, help="last rate (default 10)")
    f.add_argument("--save", metavar="CONFIG_OUT", help="write the config with the "
                   "suggested optim.lr to this TOML file")
    f.set_defaults(max_steps=None)

    b = sub.add_parser("tensorboard", help="write TensorBoard event files of finished runs "
                       "(needs the tensorboard package)")
    b.add_argument("runs", nargs="+", help="run folders, or run ids under --runs-dir")
    b.add_argument("--runs-dir", help="where run ids are looked up")

    e = sub.add_parser("eval", help="evaluate a run's encoder beside its random-init baseline")
    e.add_argument("run", help="a run folder, or a run id under --runs-dir")
    e.add_argument("--runs-dir", help="where run ids are looked up (default: "
                   "$SELFSUP_RUNS_DIR or the user data dir)")
    e.add_argument("--protocols", nargs="+", metavar="NAME",
                   help="any of knn linear fewshot finetune, and for an image-text run "
                   "(clip) zeroshot retrieval (default: all that apply)")
    if eval_options:
        _add_eval_options(e)
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


# short aliases of evaluation options, besides --knn-k etc. generated from EvalOptions
_EVAL_ALIASES = {"knn_k": ["--k"], "knn_temperature": ["--temperature"],
                 "fewshot_shots": ["--shots"], "fewshot_draws": ["--draws"]}


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~engine.evaluate.EvalOptions` field, with its help and range.

    Values stay strings here: the options coerce and check them, so a bad value gives the
    same one-line message (naming the option and its range) as in the GUI.
    """
    from engine.config import field_specs
    from engine.evaluate import EvalOptions

    for spec in field_specs(EvalOptions(), "eval"):
        flags = [f"--{spec.name.replace('_', '-')}", *_EVAL_ALIASES.get(spec.name, [])]
        text = f"{spec.help} Default {spec.default}; {spec.range_text()}."
        if spec.type is bool:
            text = f"{spec.help} Off by default."
        if spec.name == "fewshot_shots":
            text = f"{spec.help} Default {' '.join(map(str, spec.default))}."
            parser.add_argument(*flags, dest=spec.name, nargs="+", metavar="N", help=text,
                                default=argparse.SUPPRESS)
        elif spec.type is bool:
            parser.add_argument(*flags, dest=spec.name, action="store_true", help=text,
                                default=argparse.SUPPRESS)
        else:
            parser.add_argument(*flags, dest=spec.name, metavar="VALUE", help=text,
                                default=argparse.SUPPRESS)


def _build_config(args: argparse.Namespace):  # noqa: ANN202 - Config, imported lazily
    from engine.config import parse_override
    from engine.model import has_accelerator
    from engine.presets import default_config, load_toml

    method = args.method
    accel = has_accelerator()
    cfg = load_toml(args.config) if args.config else default_config(method or "simclr", accel)
    if method and method != cfg.method_name:
        # switch method, keeping every other section
        other = cfg
        cfg = default_config(method, accel)
        for section in ("data", "augment", "backbone", "optim", "monitor", "run"):
            setattr(cfg, section, getattr(other, section))
    if args.dataset:
        cfg.set("data.dataset", args.dataset)
    explicit = set()
    for item in args.overrides:
        key, value = parse_override(item)
        cfg.set(key, value)
        explicit.add(key)
    if getattr(args, "max_steps", None) is not None:
        cfg.set("optim.max_steps", args.max_steps)
    cfg.validate()
    if not args.config:  # a config file says every setting itself
        _folder_defaults(cfg, frozenset(explicit), accel)
    return cfg


def _folder_defaults(cfg, keep: frozenset[str], accelerator: bool) -> None:  # noqa: ANN001
    """A user's image folder gets the resolution, crop scale and batch size of its size
    (engine.data.folder_defaults) unless ``--set`` gave them; says so on stderr."""
    from engine.data import folder_defaults as fd
    from engine.presets import default_config

    if not fd.is_image_folder(cfg.data.dataset):
        return
    stats = fd.folder_stats(cfg.data.dataset)
    applied = fd.apply(cfg, fd.suggest(stats, default_config(cfg.method_name, accelerator),
                                       accelerator), keep)
    if applied and int(os.environ.get("RANK", "0")) == 0:
        print(fd.describe(applied).replace("The form can change them.",
                                           "--set changes them."), file=sys.stderr)


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine import events as ev
    from engine.train import Trainer

    if args.resume:
        if args.config or args.method or args.dataset or args.overrides:
            raise UserInputError("--resume takes only --max-steps (the run keeps its config)")
        trainer = Trainer.resume(args.resume, max_steps=args.max_steps,
                                 pause_on_divergence=False)
    else:
        trainer = Trainer(_build_config(args), args.runs_dir, pause_on_divergence=False)

    from engine.distributed import launched

    # under torchrun only rank 0 reports; the others print their errors only
    rank = int(os.environ.get("RANK", "0")) if launched() else 0

    def on_stop_signal(signum: int, frame: object) -> None:
        if rank == 0:
            print("\nstopping: saving a checkpoint (Ctrl+C again to abort)", file=sys.stderr)
        trainer.request_stop()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                      else signal.SIG_DFL)

    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGTERM, on_stop_signal)  # torchrun stops its processes so
    bar = None
    code = 0
    verdict = "healthy"
    for e in trainer.run():
        if rank != 0:
            if isinstance(e, ev.Failed):
                print(f"error (process {rank}): {e.message}", file=sys.stderr)
                code = 2 if e.input_error else 1
            continue
        if isinstance(e, ev.DatasetReady):
            from engine.registry import get_method_info

            is_text = get_method_info(trainer.cfg.method_name).modality == "text"
            size = (f"{e.n_images} text samples of up to {e.resolution} tokens" if is_text
                    else f"{e.n_images} images at {e.resolution}px")
            print(f"dataset {e.name}: {size}, "
                  f"{len(e.class_names)} classes" + (" (cached)" if e.from_cache else ""))
            for f, why in e.skipped[:10]:
                print(f"  skipped {f}: {why}")
            if len(e.skipped) > 10:
                print(f"  ... and {len(e.skipped) - 10} more skipped files")
        elif isinstance(e, ev.RunStarted):
            print(f"run {e.run_id} ({e.method}, {e.backbone} on {e.device}) -> {e.run_dir}")
            bar = tqdm(total=e.total_steps, initial=e.start_step, disable=args.quiet,
                       unit="step", dynamic_ncols=True)
        elif isinstance(e, ev.StepMetrics) and bar is not None:
            bar.update(1)
            post = {"loss": f"{e.loss:.3f}", "ips": f"{e.images_per_sec:.0f}"}
            if "pretext_accuracy" in e.extra:
                post["pretext acc"] = f"{e.extra['pretext_accuracy']:.0%}"
            bar.set_postfix(post, refresh=False)
        elif isinstance(e, ev.MonitorReport):
            text = (f"step {e.step}: knn {_fmt(e.knn_accuracy, True)}  std {e.std:.4f} "
                    f"(1/sqrt(d) {e.std_reference:.4f})  rank {e.effective_rank:.1f}/{e.dim}")
            if e.baseline:
                text = "random-init baseline: " + text
            elif e.verdict != verdict:
                from engine.advice import explain_collapse

                text += "\n  " + explain_collapse(e.verdict, trainer.cfg)
            verdict = e.verdict
            (bar.write if bar is not None else print)(text)
        elif isinstance(e, ev.PreviewSnapshot) and e.step == 0:
            (bar.write if bar is not None else print)(
                f"previews ({e.input_title} -> {e.output_title}) are saved in "
                f"{trainer.run_folder.snapshots_dir if trainer.run_folder else 'the run folder'}"
                " at every monitor step")
        elif isinstance(e, ev.RunWarning):
            print(f"warning: {e.message}", file=sys.stderr)
        elif isinstance(e, ev.Finished):
            if bar is not None:
                bar.close()
            print(f"{e.status} at step {e.step}: {e.run_dir}")
        elif isinstance(e, ev.Failed):
            if bar is not None:
                bar.close()
            print(f"error: {e.message}", file=sys.stderr)
            code = 2 if e.input_error else 1
    return code


def cmd_sweep(args: argparse.Namespace) -> int:
    from engine import events as ev
    from engine.sweep import Sweep, format_table, plan_sweep

    if args.resume:
        if args.config or args.method or args.dataset or args.overrides or args.vary \
                or args.max_steps is not None or args.runs_dir:
            raise UserInputError("--resume takes no other options (the sweep keeps its "
                                 "config, values and runs dir)")
        sweep = Sweep(args.resume)
    else:
        if not args.vary:
            raise UserInputError("sweep needs --vary SECTION.FIELD=VALUES (or --resume)")
        plan = plan_sweep(_build_config(args), args.vary)  # every value checked first
        sweep = Sweep.create(plan, args.runs_dir)
    key, values = sweep.state["key"], sweep.state["values"]
    print(f"sweep {sweep.id}: {key} over {len(values)} values -> {sweep.path}")

    def on_stop_signal(signum: int, frame: object) -> None:
        print("\nstopping the sweep: saving the current run's checkpoint "
              "(Ctrl+C again to abort)", file=sys.stderr)
        sweep.request_stop()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                      else signal.SIG_DFL)

    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGTERM, on_stop_signal)

    def on_event(i: int, e: ev.Event) -> None:
        where = f"[{i + 1}/{len(values)}] {key}={values[i]}"
        if isinstance(e, ev.RunStarted):
            resumed = f" (resumed at step {e.start_step})" if e.start_step else ""
            print(f"{where}: run {e.run_id}{resumed}")
        elif isinstance(e, ev.MonitorReport) and not args.quiet:
            print(f"  step {e.step}: knn {_fmt(e.knn_accuracy, True)}  "
                  f"rank {e.effective_rank:.1f}/{e.dim}" + ("  (baseline)" if e.baseline
                                                              else ""))
        elif isinstance(e, ev.RunWarning):
            print(f"  warning: {e.message}", file=sys.stderr)
        elif isinstance(e, ev.Finished):
            print(f"{where}: {e.status} at step {e.step}")
        elif isinstance(e, ev.Failed):
            print(f"{where}: error: {e.message}", file=sys.stderr)

    result = sweep.run(on_event)
    print()
    print(format_table(result))
    if result.status != "finished":
        print(f"sweep stopped; continue with: python -m engine sweep --resume {sweep.path}")
    return 1 if any(r.status == "failed" for r in result.rows) else 0


def cmd_methods(args: argparse.Namespace) -> int:
    from engine.registry import available_methods

    for m in available_methods():
        print(f"{m.name:<14} {m.family:<16} {m.description}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from engine.runs import default_runs_dir, list_runs

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    runs = list_runs(runs_dir)
    if not runs:
        print(f"no runs in {runs_dir}")
        return 0
    print(f"{'run':<44} {'status':<11} {'method':<10} {'dataset':<10} {'steps':>11} "
          f"{'kNN':>7} {'baseline':>8}  started")
    for r in runs:
        started = datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M") if r.started \
            else "-"
        print(f"{r.id:<44} {r.status:<11} {r.method:<10} {r.dataset[:10]:<10} "
              f"{f'{r.step}/{r.total_steps}':>11} {_fmt(r.knn_accuracy, True):>7} "
              f"{_fmt(r.baseline_knn, True):>8}  {started}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from engine.evaluate import PROTOCOLS, EvalOptions, evaluate_run, format_table, resolve_run

    names = {f.name for f in dataclasses.fields(EvalOptions)}
    options = EvalOptions(**{k: v for k, v in vars(args).items() if k in names})
    options.validate()
    run_dir = resolve_run(args.run, args.runs_dir)

    def progress(msg: str) -> None:
        if not args.json:
            print(f"  {msg}...", file=sys.stderr, flush=True)

    ev = evaluate_run(run_dir, args.protocols or PROTOCOLS, options, progress=progress)
    if args.json:
        print(json.dumps(ev, indent=2))
    else:
        print(format_table(ev))
        print(f"written to {Path(run_dir) / 'summary.json'} under \"evaluation\"")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from engine import export
    from engine.evaluate import resolve_run

    run = resolve_run(args.run, args.runs_dir)
    fn = {"encoder": export.export_encoder, "embeddings": export.export_embeddings,
          "config": export.export_config}[args.what]
    for name, path in fn(run, args.out).items():
        print(f"{name}: {path}")
    if args.what == "config":
        print(f"rerun with: {export.rerun_command(args.out)}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from engine.lr_find import lr_find

    cfg = _build_config(args)
    cfg.validate()
    try:
        result = lr_find(cfg, steps=args.steps, lr_min=args.min_lr, lr_max=args.max_lr)
    except ValueError as e:
        raise UserInputError(f"lr-find: {e}") from None
    print(f"{cfg.method_name} on {cfg.data.dataset}: {len(result.lrs)} steps in "
          f"{result.seconds:.0f} s" + (" (stopped as the loss blew up)"
                                       if result.stopped_early else ""))
    every = max(1, len(result.lrs) // 12)
    print("  learning rate   loss (smoothed)")
    for lr, loss in list(zip(result.lrs, result.smoothed, strict=True))[::every]:
        print(f"  {lr:13.3g}   {loss:.4f}")
    if result.suggestion is None:
        print(f"no suggestion: {result.reason}")
        return 1
    print(f"suggested optim.lr = {result.suggestion:.3g} ({result.reason}; the preset has "
          f"{cfg.optim.lr:g})")
    if args.save:
        cfg.set("optim.lr", float(f"{result.suggestion:.3g}"))
        cfg.save(args.save)
        print(f"wrote {args.save}")
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from engine.evaluate import resolve_run
    from engine.runs import default_runs_dir
    from engine.tensorboard import INSTALL_HINT, available, mirror_run

    if not available():
        print(f"error: this needs the tensorboard package: {INSTALL_HINT}", file=sys.stderr)
        return 2
    for ref in args.runs:
        out = mirror_run(resolve_run(ref, args.runs_dir))
        print(f"{ref}: {out}")
    root = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    print(f"view with: tensorboard --logdir {root}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = _parser(eval_options=command == "eval").parse_args(argv)
    try:
        return {"train": cmd_train, "sweep": cmd_sweep, "methods": cmd_methods, "runs": cmd_runs,
                "eval": cmd_eval, "export": cmd_export,
                "tensorboard": cmd_tensorboard, "lr-find": cmd_lr_find}[args.command](args)
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
