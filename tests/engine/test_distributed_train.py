"""One run on two processes (torchrun, gloo on this CPU): one run folder, the right steps,
resumable in one process and under another process count, a lost process ends the run
with an error, and the monitor's shared work gives the single-process report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import checkpoint as ckpt_io
from engine.events import Failed, Finished, StepMetrics
from engine.model import build_model
from engine.presets import default_config
from engine.registry import available_methods, get_method_info
from engine.runs import RunFolder
from engine.train import Trainer
from tests.conftest import isolated_env, small_config, torchrun


def _steps(run: Path) -> list[int]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r.get("kind", "step") == "step" and "loss" in r]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_a_two_process_run_writes_one_folder_with_every_step(ddp_run: Path):
    s = _summary(ddp_run)
    assert s["status"] == "finished" and s["processes"] == 2
    assert s["step"] == 12 and _steps(ddp_run) == list(range(1, 13))
    assert "2 processes" in s["device"]
    ck = ckpt_io.load(RunFolder(ddp_run).last_checkpoint)
    assert ck.step == 12 and "order" in ck.rng
    # the checkpoint holds the unwrapped model: no "module." prefix, plain BatchNorm keys
    assert not any(k.startswith("module.") for k in ck.model)
    model, _ = build_model(small_config(), torch.device("cpu"))
    model.load_state_dict(ck.model)


def test_a_two_process_run_resumes_in_one_process(ddp_run: Path, tmp_path: Path):
    import shutil

    run = tmp_path / ddp_run.name
    shutil.copytree(ddp_run, run)
    events = list(Trainer.resume(run, max_steps=16, pause_on_divergence=False).run())
    assert not [e for e in events if isinstance(e, Failed)], events
    assert [e.step for e in events if isinstance(e, StepMetrics)] == [13, 14, 15, 16]
    assert isinstance(events[-1], Finished) and events[-1].status == "finished"
    assert _steps(run) == list(range(1, 17))


def test_a_one_process_run_resumes_under_torchrun_with_the_same_baseline(
        tmp_path: Path, ddp_run: Path):
    """A GUI or CLI run (one process) continues on two; the monitor, whose embedding work
    the two processes share, reports what one process measured."""
    env = isolated_env(tmp_path)
    runs = tmp_path / "runs"
    cfg = small_config(**{"optim.max_steps": 6})
    list(Trainer(cfg, runs, pause_on_divergence=False).run())
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    single_baseline = _summary(run)["baseline_knn"]

    out = torchrun(["train", "--resume", str(run), "--max-steps", "12", "--quiet"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    s = _summary(run)
    assert s["status"] == "finished" and s["step"] == 12 and s["processes"] == 2
    assert _steps(run) == list(range(1, 13))
    assert s["baseline_knn"] == single_baseline  # not measured twice

    # a fresh two-process run of the same config (12 steps instead of 6, which the
    # baseline at step 0 does not see): the same random-init baseline, measured with the
    # monitor set split across the processes
    assert _summary(ddp_run)["processes"] == 2
    base1, base2 = ([r for r in RunFolder(p).read_metrics() if r.get("baseline")][0]
                    for p in (run, ddp_run))
    assert base2["knn_accuracy"] == pytest.approx(base1["knn_accuracy"], abs=1e-9)
    assert base2["effective_rank"] == pytest.approx(base1["effective_rank"], rel=1e-4)


def test_a_batch_that_does_not_split_is_refused_by_name(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    small_config(**{"optim.batch_size": 15}).save(cfg)
    out = torchrun(["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "--quiet"],
                   isolated_env(tmp_path))
    assert out.returncode != 0
    assert "optim.batch_size = 15" in out.stderr and "divisible by the 2 processes" in \
        out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two_ranks(tmp_path: Path, runs: Path, cfg: Path) -> list[subprocess.Popen]:
    """Both ranks started by hand with torchrun's variables, so a test can signal one."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(isolated_env(tmp_path), RANK=str(rank), WORLD_SIZE="2",
                   LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "engine", "train", str(cfg), "--runs-dir", str(runs),
             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True))
    return procs


def _wait_for_steps(procs: list[subprocess.Popen], runs: Path, n: int) -> Path:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = list(runs.glob("*/metrics.jsonl"))
        if found and len(_steps(found[0].parent)) >= n:
            return found[0].parent
        for p in procs:
            assert p.poll() is None, p.stderr.read()  # type: ignore[union-attr]
        time.sleep(0.2)
    pytest.fail(f"the two-process run did not reach step {n}")


def _long_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    small_config(**{"optim.max_steps": 100_000, "monitor.checkpoint_every": 4,
                    "monitor.every_steps": 50}).save(cfg)
    return cfg


def test_killing_one_process_ends_the_run_with_an_error_and_it_resumes(tmp_path: Path):
    runs = tmp_path / "runs"
    procs = _start_two_ranks(tmp_path, runs, _long_config(tmp_path))
    try:
        run = _wait_for_steps(procs, runs, 10)
        procs[1].kill()
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=30)
        took = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode == 1
    assert took < 15, f"rank 0 took {took:.1f} s to notice"
    assert "process 0 of 2 lost contact with another process" in err
    s = _summary(run)
    assert s["status"] == "failed" and "lost contact" in s["error"]
    saved = ckpt_io.load(RunFolder(run).last_checkpoint).step
    assert saved >= 8 and f"checkpoint of step {saved}" in s["error"]
    # and it resumes in one process from that checkpoint
    events = list(Trainer.resume(run, max_steps=saved + 2, pause_on_divergence=False).run())
    assert [e.step for e in events if isinstance(e, StepMetrics)] == [saved + 1, saved + 2]
    assert _summary(run)["status"] == "finished"


def test_ctrl_c_on_one_process_stops_both_at_the_same_step(tmp_path: Path):
    """A stop asked of one rank takes effect only once every rank knows (else the other
    would wait for it in the next step's all-reduce forever)."""
    runs = tmp_path / "runs"
    procs = _start_two_ranks(tmp_path, runs, _long_config(tmp_path))
    try:
        run = _wait_for_steps(procs, runs, 6)
        procs[1].send_signal(signal.SIGINT)  # the rank that does not write
        for p in procs:
            p.communicate(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    s = _summary(run)
    assert s["status"] == "stopped"
    assert ckpt_io.load(RunFolder(run).last_checkpoint).step == s["step"] == \
        _steps(run)[-1]


@pytest.mark.parametrize("name", [m.name for m in available_methods()])
def test_every_parameter_gets_a_gradient_each_step(name: str):
    """DDP (without find_unused_parameters) needs every trainable parameter to take part in
    every step, or the next step's gradient reduction fails on all ranks."""
    cfg = default_config(name, False)
    model, _ = build_model(cfg, torch.device("cpu"))
    modality = get_method_info(name).modality
    rows = torch.randint(4, 260, (8, cfg.data.seq_len))  # byte ids, no specials
    images = torch.randint(0, 256, (8, 3, cfg.data.resolution, cfg.data.resolution),
                           dtype=torch.uint8)
    x: Any = rows if modality == "text" else images
    if modality == "paired":  # image-caption pairs
        from tests.engine.test_clip import StandInPairs

        x = StandInPairs(images, rows)
    model(x, model.train_augment(), torch.Generator().manual_seed(0)).loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_no_torchrun_means_no_process_group(tmp_path: Path):
    for var in ("RANK", "WORLD_SIZE"):
        assert var not in os.environ
    events = list(Trainer(small_config(**{"optim.max_steps": 2}), tmp_path).run())
    assert isinstance(events[-1], Finished)
    assert _summary(Path(events[-1].run_dir))["processes"] == 1
