"""Sweeps: values parsed and checked before any run, one run folder per value tagged with
the sweep, the results table, resume after an interruption, and the CLI end to end."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from engine import events as ev
from engine.__main__ import main
from engine.errors import ConfigError
from engine.presets import default_config
from engine.sweep import Sweep, format_table, parse_vary, plan_sweep, resume_sweep, run_sweep

TINY = {"optim.max_steps": 3, "monitor.every_steps": 3, "optim.batch_size": 16,
        "optim.warmup_steps": 1, "monitor.monitor_size": 100, "data.shapes_count": 200,
        "backbone.width": 8}
VARY = "method.temperature=0.05,0.1,0.2"


def tiny(method: str = "simclr"):
    cfg = default_config(method)
    for k, v in TINY.items():
        cfg.set(k, v)
    return cfg


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.is_dir() and p.name != "sweeps")


def test_parse_vary_lists_ranges_and_choices():
    cfg = tiny()
    assert parse_vary(cfg, VARY) == ("method.temperature", [0.05, 0.1, 0.2])
    assert parse_vary(cfg, "optim.lr=0.1:0.3:3:lin")[1] == pytest.approx([0.1, 0.2, 0.3])
    key, values = parse_vary(cfg, "optim.lr=1e-4:1e-2:5:log")
    assert key == "optim.lr"
    assert values == pytest.approx([1e-4, 10 ** -3.5, 1e-3, 10 ** -2.5, 1e-2], rel=1e-5)
    assert parse_vary(cfg, "optim.batch_size=16:64:3")[1] == [16, 40, 64]
    choices = cfg.spec("optim.optimizer").choices
    assert choices
    assert parse_vary(cfg, f"optim.optimizer={','.join(choices)}")[1] == list(choices)


@pytest.mark.parametrize("text, words", [
    ("method.temperature=0.1,-1", ["method.temperature", "-1"]),
    ("method.temperature=0.1,abc", ["method.temperature", "abc"]),
    ("optim.lr=1e-4:1e-2:5:cubic", ["optim.lr", "lin or log"]),
    ("optim.lr=-1:1:3:log", ["optim.lr", "positive"]),
    ("optim.optimizer=sgd,nope", ["optim.optimizer", "nope"]),
    ("optim.nonsense=1,2", ["optim.nonsense", "sections", "method"]),
    ("temperature", ["--vary expects"]),
])
def test_bad_values_and_unknown_keys_are_refused_before_any_run(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        run_sweep(tiny(), text, tmp_path / "runs")
    for w in words:
        assert w in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_sweep_runs_one_tagged_run_per_value_and_a_table(tmp_path):
    runs = tmp_path / "runs"
    seen: list[int] = []
    result = run_sweep(tiny(), VARY, runs,
                       on_event=lambda i, e: seen.append(i) if isinstance(e, ev.Finished)
                       else None)
    assert seen == [0, 1, 2] and result.status == "finished"
    dirs = run_dirs(runs)
    assert len(dirs) == 3
    temps = []
    for d in dirs:
        cfg = tomllib.loads((d / "config.toml").read_text())
        summary = json.loads((d / "summary.json").read_text())
        assert summary["status"] == "finished"
        tag = summary["sweep"]
        assert tag["id"] == result.id and tag["key"] == "method.temperature"
        assert cfg["method"]["temperature"] == tag["value"] == [0.05, 0.1, 0.2][tag["index"]]
        temps.append(tag["value"])
    assert sorted(temps) == [0.05, 0.1, 0.2]
    state = json.loads((result.path / "sweep.json").read_text())
    assert result.path.parent == runs / "sweeps"
    assert state["values"] == [0.05, 0.1, 0.2]
    assert [r["status"] for r in state["runs"]] == ["finished"] * 3
    assert {r["run_id"] for r in state["runs"]} == {d.name for d in dirs}
    table = format_table(result)
    for r in result.rows:
        assert r.run_id in table and r.knn_accuracy is not None and r.loss is not None
    assert "0.05" in table and "0.2" in table and "final kNN" in table


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(tmp_path):
    runs = tmp_path / "runs"
    plan = plan_sweep(tiny(), VARY)
    sweep = Sweep.create(plan, runs)

    def interrupt(i: int, e: ev.Event) -> None:
        if i == 1 and isinstance(e, ev.StepMetrics):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run(interrupt)
    state = json.loads(sweep.sweep_json.read_text())
    assert [r["status"] for r in state["runs"]] == ["finished", "running", "pending"]
    assert state["status"] == "stopped"
    first = state["runs"][0]["run_dir"]
    first_mtime = (Path(first) / "metrics.jsonl").stat().st_mtime

    started: list[int] = []
    result = resume_sweep(sweep.path, on_event=lambda i, e: started.append(i)
                          if isinstance(e, ev.RunStarted) else None)
    assert started == [1, 2] and result.status == "finished"
    assert [r.status for r in result.rows] == ["finished"] * 3
    assert result.rows[0].run_dir == first
    assert (Path(first) / "metrics.jsonl").stat().st_mtime == first_mtime
    assert len({r.run_id for r in result.rows}) == 3


def test_stop_request_stops_the_sweep_after_a_checkpoint(tmp_path):
    sweep = Sweep.create(plan_sweep(tiny(), "method.temperature=0.1,0.2"), tmp_path / "runs")

    def stop(i: int, e: ev.Event) -> None:
        if isinstance(e, ev.StepMetrics) and e.step == 1:
            sweep.request_stop()

    result = sweep.run(stop)
    assert result.status == "stopped"
    assert [r.status for r in result.rows] == ["stopped", "pending"]
    started: list[int] = []
    result = resume_sweep(sweep.path, lambda i, e: started.append(
        e.start_step) if isinstance(e, ev.RunStarted) else None)
    assert started == [1, 0]  # the stopped run continued from its checkpoint
    assert [r.status for r in result.rows] == ["finished", "finished"]


def test_cli_sweep_end_to_end(tmp_path, capsys):
    runs = tmp_path / "runs"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    code = main(["sweep", "--method", "simclr", "--dataset", "shapes", "--runs-dir",
                 str(runs), "--vary", "method.temperature=0.1,0.5", "--quiet", *sets])
    out = capsys.readouterr().out
    assert code == 0, out
    dirs = run_dirs(runs)
    assert len(dirs) == 2
    for d in dirs:
        assert d.name in out
    assert "final kNN" in out and "finished" in out
    sweep_dir = next((runs / "sweeps").iterdir())
    assert main(["sweep", "--resume", str(sweep_dir)]) == 0
    assert len(run_dirs(runs)) == 2  # nothing left to run
    code = main(["sweep", "--runs-dir", str(runs), "--vary", "method.temperature=0,1", *sets])
    assert code == 2
    assert "method.temperature" in capsys.readouterr().err
