"""Runs survive anything: a killed process, a short run, another process owning a run."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import checkpoint as ckpt_io
from engine import events as ev
from engine.presets import default_config
from engine.runs import RunFolder, list_runs
from engine.train import Trainer

TINY = ["--set", "data.shapes_count=300", "--set", "optim.batch_size=32",
        "--set", "backbone.width=8", "--set", "monitor.monitor_size=60",
        "--set", "monitor.every_steps=7", "--set", "monitor.checkpoint_every=100000"]


def _rows(run: Path) -> list[dict]:
    return RunFolder(run).read_metrics()


def _wait_for(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_kill_9_loses_at_most_the_checkpoint_interval_and_resumes_without_gaps(tmp_path):
    """A real CLI process killed with SIGKILL at a random step: listed as interrupted
    (CLI and list_runs), its checkpoint at most ``checkpoint_seconds`` of training old,
    and the resumed run's metrics have each step exactly once and one baseline."""
    seconds = 1.5
    runs = tmp_path / "runs"
    env = {**os.environ, "SELFSUP_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "train", "--quiet", "--max-steps", "100000", *TINY,
         "--set", f"monitor.checkpoint_seconds={seconds}", "--runs-dir", str(runs)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: runs.is_dir() and any(runs.iterdir()), 90, "the run folder")
        run = next(runs.iterdir())
        kill_at = random.Random().randint(15, 60)
        _wait_for(lambda: any(r.get("step", 0) >= kill_at and "loss" in r
                              for r in _rows(run)), 120, f"step {kill_at}")
        # while it trains, every client says running, at its live step (the heartbeat's,
        # not the last checkpoint's)
        _wait_for(lambda: list_runs(runs)[0].step >= kill_at, 30, "the live step")
        assert list_runs(runs)[0].status == "running"
        out = subprocess.run([sys.executable, "-m", "engine", "runs", "--runs-dir", str(runs)],
                             env=env, capture_output=True, text=True, timeout=120)
        assert "running" in out.stdout
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows = _rows(run)
    last_step_row = max((r for r in rows if "loss" in r), key=lambda r: r["step"])
    assert json.loads((run / "summary.json").read_text())["status"] == "running"  # as left
    assert list_runs(runs)[0].status == "interrupted"
    out = subprocess.run([sys.executable, "-m", "engine", "runs", "--runs-dir", str(runs)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert "interrupted" in out.stdout and "running" not in out.stdout

    ck = ckpt_io.load(RunFolder(run).last_checkpoint)
    assert ck.step > 0  # the time-based checkpoint was written, not only step 0
    lost = last_step_row["time"] - ck.elapsed
    step_time = last_step_row["time"] / last_step_row["step"]
    # at most the interval, plus the step that crossed it and one monitor step
    assert lost <= seconds + 2 * step_time + 1.0, (lost, ck.step, last_step_row["step"])

    total = ck.step + 10
    events = list(Trainer.resume(run, max_steps=total, pause_on_divergence=False).run())
    assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
    rows = _rows(run)
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, total + 1))  # no gap, no duplicate
    monitor_steps = [r["step"] for r in rows if "std" in r]
    assert monitor_steps == sorted(set(monitor_steps))
    assert sum(1 for r in rows if r.get("baseline")) == 1
    assert list_runs(runs)[0].status == "finished"


def _fake_run(runs: Path, owner: dict | None) -> RunFolder:
    run = RunFolder(runs / "20260101-000000_simclr_shapes")
    run.path.mkdir(parents=True)
    run.write_summary({"status": "running", "method": "simclr", "dataset": "shapes",
                       "step": 3, "total_steps": 10})
    if owner is not None:
        run.owner_path.write_text(json.dumps(owner))
    return run


@pytest.mark.parametrize(("owner", "age", "expected"), [
    (None, 0, "interrupted"),
    ({"host": socket.gethostname(), "pid": os.getpid()}, 0, "running"),
    ({"host": socket.gethostname(), "pid": 2**22 + 17}, 0, "interrupted"),  # no such pid
    ({"host": socket.gethostname(), "pid": os.getpid()}, 7200,
     "interrupted"),  # pid reused long after the owner's last heartbeat
    ({"host": "another-machine", "pid": 1}, 0, "running"),
    ({"host": "another-machine", "pid": 1}, 3600, "interrupted"),
])
def test_running_only_while_the_owner_lives(tmp_path, owner, age, expected):
    # the heartbeat's age is set when the test runs, not when it is collected (a long
    # suite would otherwise age the "fresh" heartbeats)
    if owner is not None:
        owner = {**owner, "heartbeat": time.time() - age}
    _fake_run(tmp_path, owner)
    assert list_runs(tmp_path)[0].status == expected


def test_a_run_owned_by_a_live_process_cannot_be_resumed_twice(tmp_path):
    from engine.errors import UserInputError

    run = _fake_run(tmp_path, {"host": socket.gethostname(), "pid": os.getpid(),
                               "heartbeat": time.time()})
    run.checkpoint_dir.mkdir()
    run.last_checkpoint.write_bytes(b"x")
    with pytest.raises(UserInputError, match="being trained right now"):
        Trainer.resume(run.path)


def test_a_finished_run_leaves_no_owner(tmp_path):
    cfg = default_config("simclr")
    for k, v in {"data.shapes_count": 300, "optim.batch_size": 32, "backbone.width": 8,
                 "monitor.monitor_size": 60, "monitor.every_steps": 2,
                 "optim.warmup_steps": 0, "optim.max_steps": 2}.items():
        cfg.set(k, v)
    t = Trainer(cfg, tmp_path)
    seen_owner = []
    for e in t.run():
        if isinstance(e, ev.StepMetrics):
            seen_owner.append(t.run_folder.read_owner().get("pid"))
    assert seen_owner == [os.getpid()] * 2
    assert not t.run_folder.owner_path.exists()


def test_a_short_run_fits_its_warm_up_and_says_so(tmp_path):
    """``--max-steps 10`` with the default 30 warm-up steps runs (warm-up scaled down)."""
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-m", "engine", "train", "--quiet", "--max-steps", "10", *TINY,
         "--runs-dir", str(runs)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert "optim.warmup_steps = 30 does not fit in optim.max_steps = 10" in out.stderr
    run = next(runs.iterdir())
    assert [r["step"] for r in _rows(run) if "loss" in r] == list(range(1, 11))
    assert "warmup_steps = 1\n" in (run / "config.toml").read_text()
