"""Sweeps: one run per value of one setting, in sequence, resumable after an interruption.

A sweep is a folder ``<runs dir>/sweeps/<id>/`` holding ``config.toml`` (the base config)
and ``sweep.json`` (the key, the values and, per value, its run folder and status). Each
run is an ordinary run folder under the runs dir whose ``summary.json`` carries
``"sweep": {"id", "key", "value", "index"}``, so run lists and the GUI read sweeps without
knowing this module. The CLI (``python -m engine sweep``) and, later, the GUI's queue
drive the same :class:`Sweep`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.config import Config, FieldSpec, check, coerce
from engine.errors import ConfigError, UserInputError
from engine.presets import load_toml
from engine.runs import RunFolder, atomic_write_bytes, default_runs_dir
from engine.train import Trainer

#: a method's own headline metric, first found wins (metrics.jsonl row keys)
KEY_METRICS = ("heldout_bits_per_token", "heldout_masked_accuracy",
               "heldout_sentence_accuracy", "pretext_accuracy")

#: statuses of one value's run in sweep.json
PENDING, RUNNING, FINISHED, STOPPED, FAILED = "pending", "running", "finished", "stopped", \
    "failed"
#: a value the user took out of the queue before it ran
CANCELLED = "cancelled"
#: statuses that need no more work
DONE = (FINISHED, FAILED, CANCELLED)

EventCallback = Callable[[int, ev.Event], None]


# ------------------------------------------------------------------------ parsing values
def _range(spec: FieldSpec, raw: str) -> list[Any]:
    """``start:stop:count:lin|log`` (the last part optional, linear by default)."""
    parts = [p.strip() for p in raw.split(":")]
    if len(parts) not in (3, 4):
        raise ConfigError(f"--vary {spec.key}: range {raw!r} must be start:stop:count[:lin|log]")
    scale = parts[3].lower() if len(parts) == 4 else "lin"
    if scale not in ("lin", "log"):
        raise ConfigError(f"--vary {spec.key}: range scale {parts[3]!r} must be lin or log")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ConfigError(f"--vary {spec.key}: range {raw!r} needs two numbers and a whole "
                          "count") from None
    if count < 1:
        raise ConfigError(f"--vary {spec.key}: range count must be at least 1, got {count}")
    if scale == "log" and (start <= 0 or stop <= 0):
        raise ConfigError(f"--vary {spec.key}: a log range needs positive ends, got {raw!r}")
    out: list[float] = []
    for i in range(count):
        t = i / (count - 1) if count > 1 else 0.0
        if scale == "log":
            out.append(math.exp(math.log(start) + t * (math.log(stop) - math.log(start))))
        else:
            out.append(start + t * (stop - start))
    if spec.type is int:
        ints = list(dict.fromkeys(round(v) for v in out))  # rounding may repeat values
        return ints
    return [float(f"{v:.6g}") for v in out]  # 0.0031622776601683794 -> 0.00316228


def parse_vary(cfg: Config, text: str) -> tuple[str, list[Any]]:
    """``section.field=v1,v2,...`` or ``section.field=start:stop:count:lin|log`` into the
    key and its typed values, each checked against the field's spec (type, range, choices)
    and against the whole config, so a bad value is refused before any run starts."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or "." not in key or not raw:
        raise ConfigError(f"--vary expects section.field=v1,v2,... or "
                          f"section.field=start:stop:count:lin|log, got {text!r}")
    spec = cfg.spec(key)  # an unknown key: ConfigError naming the sections
    numeric = spec.type in (int, float) and spec.choices is None
    if numeric and ":" in raw and "," not in raw:
        values = _range(spec, raw)
    else:
        values = [coerce(spec, v.strip()) for v in raw.split(",") if v.strip()]
    if not values:
        raise ConfigError(f"--vary {key}: no values given")
    for v in values:
        check(spec, v)
        trial = cfg.copy()
        setattr(getattr(trial, spec.section), spec.name, v)
        trial.validate()  # rules that span fields (e.g. crop scales) name the field too
    return key, values


# ------------------------------------------------------------------------ results
@dataclass
class SweepRow:
    """One value's run as the table and a results plot read it."""

    index: int
    value: Any
    status: str
    run_id: str | None = None
    run_dir: str | None = None
    knn_accuracy: float | None = None
    effective_rank: float | None = None
    loss: float | None = None
    key_metric: tuple[str, float] | None = None  # the method's own, e.g. pretext accuracy
    error: str | None = None


@dataclass
class SweepResult:
    """Where a sweep stands: ``status`` is 'finished' once no value is left to run."""

    id: str
    path: Path
    key: str
    status: str
    rows: list[SweepRow] = field(default_factory=list)


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def format_table(result: SweepResult) -> str:
    """value | run id | final kNN | effective rank | final loss | [key metric] | status."""
    names = sorted({r.key_metric[0] for r in result.rows if r.key_metric})
    head = [result.key, "run id", "final kNN", "eff. rank", "final loss", *names, "status"]
    lines = []
    for r in result.rows:
        extra = [_fmt(r.key_metric[1], "accuracy" in n) if r.key_metric and
                 r.key_metric[0] == n else "-" for n in names]
        lines.append([f"{r.value:g}" if isinstance(r.value, float) else str(r.value),
                      r.run_id or "-", _fmt(r.knn_accuracy, True), _fmt(r.effective_rank),
                      _fmt(r.loss), *extra, r.status])
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(head)]
    rows = [head, *lines]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _key_metric(run: RunFolder) -> tuple[str, float] | None:
    rows = run.read_metrics()
    for name in KEY_METRICS:
        for row in reversed(rows):
            if isinstance(row.get(name), (int, float)):
                return name, float(row[name])
    return None


# ------------------------------------------------------------------------ the sweep
@dataclass
class SweepPlan:
    """A validated sweep not yet on disk: the base config, the key and its values."""

    cfg: Config
    key: str
    values: list[Any]

    def config_for(self, value: Any) -> Config:
        c = self.cfg.copy()
        c.set(self.key, value)
        return c


@dataclass
class QueuePlan:
    """Runs of different configs in sequence, each with a label (a demo's settings side
    by side: SimSiam with and without stop-gradient). ``key`` names what the labels are
    in tables and plots; ``tags`` go into sweep.json as they are (a demo's name)."""

    runs: list[tuple[str, Config]]
    key: str = "run"
    name: str = "queue"
    tags: dict[str, Any] = field(default_factory=dict)


def plan_sweep(cfg: Config, vary: str) -> SweepPlan:
    """Parse and check ``--vary`` against ``cfg`` (raises ConfigError before any run)."""
    cfg.validate()
    key, values = parse_vary(cfg, vary)
    return SweepPlan(cfg.copy(), key, values)


class Sweep:
    """A sweep folder, run value by value; :meth:`request_stop` is thread-safe (the GUI
    and the CLI's Ctrl+C handler call it), stopping the current run with a checkpoint."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stop = threading.Event()
        self._trainer: Trainer | None = None
        self.state: dict[str, Any] = self._read()

    @property
    def sweep_json(self) -> Path:
        return self.path / "sweep.json"

    @property
    def runs_dir(self) -> Path:
        return Path(self.state["runs_dir"])

    @classmethod
    def create(cls, plan: SweepPlan, runs_dir: str | Path | None = None,
               name: str | None = None) -> Sweep:
        """Write a new sweep folder ``<runs dir>/sweeps/<date>-<time>_<name or key>``."""
        runs = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        root = runs / "sweeps"
        root.mkdir(parents=True, exist_ok=True)
        base = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}_{name or plan.key}"
        for i in range(1000):
            path = root / (base if i == 0 else f"{base}-{i}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise RuntimeError(f"could not create a sweep folder under {root}")
        plan.cfg.save(path / "config.toml")
        state = {"id": path.name, "key": plan.key, "values": plan.values,
                 "runs_dir": str(runs.resolve()), "created": time.time(), "status": PENDING,
                 "runs": [{"index": i, "value": v, "status": PENDING, "run_id": None,
                           "run_dir": None} for i, v in enumerate(plan.values)]}
        _write_json(path / "sweep.json", state)
        return cls(path)

    @classmethod
    def create_queue(cls, plan: QueuePlan, runs_dir: str | Path | None = None) -> Sweep:
        """Write a queue folder: one ``config-<i>.toml`` per run (each validated first),
        run in order by :meth:`run` like a sweep's values."""
        if not plan.runs:
            raise ConfigError("a queue needs at least one run")
        for _, c in plan.runs:
            c.validate()
        first = plan.runs[0][1]
        sweep = cls.create(SweepPlan(first, plan.key, [label for label, _ in plan.runs]),
                           runs_dir, name=plan.name)
        for i, (_, c) in enumerate(plan.runs):
            c.save(sweep.path / f"config-{i}.toml")
            sweep.state["runs"][i]["config"] = f"config-{i}.toml"
        sweep.state.update(plan.tags)
        sweep._save()
        return sweep

    def _read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.sweep_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise UserInputError(f"{self.path} is not a sweep folder (no readable "
                                 f"sweep.json: {e})") from None
        return dict(state)

    def _save(self) -> None:
        _write_json(self.sweep_json, self.state)

    @property
    def id(self) -> str:
        return str(self.state["id"])

    def request_stop(self) -> None:
        self._stop.set()
        if self._trainer is not None:
            self._trainer.request_stop()

    @property
    def trainer(self) -> Trainer | None:
        """The run under way (the window pauses it and applies live changes)."""
        return self._trainer

    def cancel(self, index: int) -> bool:
        """Take a value that has not started out of the queue; False if it has."""
        entry = self.state["runs"][index]
        if entry["status"] != PENDING or entry.get("run_dir"):
            return False
        entry["status"] = CANCELLED
        self._save()
        return True

    @property
    def unfinished(self) -> bool:
        return any(e["status"] not in DONE for e in self.state["runs"])

    def _trainer_for(self, entry: dict[str, Any], base: Config) -> Trainer:
        """Resume an unfinished run from its checkpoint, or start it (again) fresh."""
        run_dir = entry.get("run_dir")
        if run_dir and entry["status"] in (RUNNING, STOPPED):
            run = RunFolder(run_dir)
            if run.last_checkpoint.exists():
                return Trainer.resume(run.path, pause_on_divergence=False)
        if entry.get("config"):  # a queue: each run has its own config
            c = load_toml(self.path / entry["config"])
        else:
            c = base.copy()
            c.set(self.state["key"], entry["value"])
        return Trainer(c, self.runs_dir, pause_on_divergence=False)

    def run(self, on_event: EventCallback | None = None) -> SweepResult:
        """Run every value not yet finished, in order; returns where the sweep stands.

        ``on_event(index, event)`` sees every event of every run. An exception there (a
        KeyboardInterrupt) leaves sweep.json saying which run was under way, so
        :func:`resume_sweep` continues it.
        """
        base = load_toml(self.path / "config.toml")
        self._stop.clear()
        self.state["status"] = RUNNING
        self._save()
        try:
            for entry in self.state["runs"]:
                if self._stop.is_set():
                    break
                if entry["status"] in DONE:
                    continue
                if entry.get("run_dir") and _summary_status(entry["run_dir"]) == FINISHED:
                    entry["status"] = FINISHED  # finished before the sweep could record it
                    self._save()
                    continue
                self._run_one(entry, base, on_event)
                if entry.get("input_error"):
                    break  # bad input (a missing dataset) fails every value alike
        finally:
            self._trainer = None
            left = [e for e in self.state["runs"] if e["status"] not in DONE]
            self.state["status"] = STOPPED if left else FINISHED
            self._save()
        return self.result()

    def _run_one(self, entry: dict[str, Any], base: Config,
                 on_event: EventCallback | None) -> None:
        trainer = self._trainer_for(entry, base)
        self._trainer = trainer
        if self._stop.is_set():
            trainer.request_stop()
        tag = {"id": self.id, "key": self.state["key"], "value": entry["value"],
               "index": entry["index"]}
        for e in trainer.run():
            if isinstance(e, ev.RunStarted):
                entry.update(status=RUNNING, run_id=e.run_id, run_dir=e.run_dir)
                RunFolder(e.run_dir).update_summary(sweep=tag)
                self._save()
            elif isinstance(e, ev.Finished):
                entry["status"] = FINISHED if e.status == "finished" else STOPPED
                self._save()
            elif isinstance(e, ev.Failed):
                entry.update(status=FAILED, error=e.message, input_error=e.input_error)
                if e.run_dir and not entry.get("run_dir"):
                    entry["run_dir"] = e.run_dir
                self._save()
            if on_event is not None:
                on_event(entry["index"], e)

    def result(self) -> SweepResult:
        rows = []
        for entry in self.state["runs"]:
            row = SweepRow(index=entry["index"], value=entry["value"], status=entry["status"],
                           run_id=entry.get("run_id"), run_dir=entry.get("run_dir"),
                           error=entry.get("error"))
            if row.run_dir and Path(row.run_dir).is_dir():
                run = RunFolder(row.run_dir)
                final = run.read_summary().get("final", {})
                row.knn_accuracy = final.get("knn_accuracy")
                row.effective_rank = final.get("effective_rank")
                row.loss = final.get("loss")
                row.key_metric = _key_metric(run)
            rows.append(row)
        return SweepResult(id=self.id, path=self.path, key=self.state["key"],
                           status=self.state["status"], rows=rows)


def _summary_status(run_dir: str) -> str | None:
    status = RunFolder(run_dir).read_summary().get("status")
    return str(status) if status is not None else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2).encode(), sync=False)


def run_sweep(cfg: Config, vary: str, runs_dir: str | Path | None = None,
              on_event: EventCallback | None = None) -> SweepResult:
    """Plan, create and run a sweep in one call (values checked before anything is written)."""
    return Sweep.create(plan_sweep(cfg, vary), runs_dir).run(on_event)


def unfinished_sweeps(runs_dir: str | Path | None = None) -> list[Sweep]:
    """The sweeps and queues under ``runs_dir`` with values still to run, oldest first
    (the window offers to resume them after it was closed mid-queue)."""
    root = (Path(runs_dir) if runs_dir is not None else default_runs_dir()) / "sweeps"
    out = []
    for path in sorted(root.glob("*/sweep.json")):
        try:
            sweep = Sweep(path.parent)
        except UserInputError:
            continue  # not ours or damaged: the run list shows its runs anyway
        if sweep.unfinished:
            out.append(sweep)
    return out


def resume_sweep(path: str | Path, on_event: EventCallback | None = None) -> SweepResult:
    """Continue an interrupted sweep: finished runs are kept, the unfinished one resumed
    from its checkpoint (or restarted when it has none), the rest run."""
    return Sweep(path).run(on_event)
