"""The headless CLI end to end: run folder contents, bad input, listing, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.__main__ import main

SMALL = ["--set", "data.shapes_count=300", "--set", "optim.batch_size=32",
         "--set", "optim.warmup_steps=2", "--set", "monitor.every_steps=3",
         "--set", "monitor.monitor_size=60", "--set", "backbone.width=8", "--quiet"]


def only_run(runs: Path) -> Path:
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(dirs) == 1
    return dirs[0]


def read_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_end_to_end_writes_the_run_folder(tmp_path):
    runs = tmp_path / "runs"
    r = subprocess.run(
        [sys.executable, "-m", "engine", "train", "--dataset", "shapes", "--max-steps", "6",
         "--runs-dir", str(runs), *SMALL],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "random-init baseline" in r.stdout
    run = only_run(runs)
    assert (run / "config.toml").read_text().count("[optim]") == 1
    assert (run / "checkpoints" / "last.pt").exists()
    assert (run / "snapshots").is_dir()
    rows = read_rows(run)
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    for row in rows:
        if "loss" in row:
            assert {"epoch", "time", "loss", "lr", "images_per_sec"} <= set(row)
            assert row["loss"] > 0 and row["lr"] > 0
    monitor = [r for r in rows if "knn_accuracy" in r]
    assert monitor[0]["step"] == 0 and monitor[0]["baseline"] is True
    assert [m["step"] for m in monitor] == [0, 3, 6]
    assert all(0 <= m["knn_accuracy"] <= 1 for m in monitor)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 6
    assert summary["method"] == "simclr" and summary["dataset"] == "shapes"
    assert summary["baseline_knn"] == monitor[0]["knn_accuracy"]
    assert summary["final"]["knn_accuracy"] == monitor[-1]["knn_accuracy"]
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 6 and ckpt["method"] == "simclr"
    assert ckpt["config"]["optim"]["max_steps"] == 6


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "/no/such/folder"], "dataset folder not found: /no/such/folder"),
        (["--set", "optim.lr=-3"], "optim.lr = -3 is out of range"),
        (["--set", "optim.batchsize=3"], "unknown setting 'optim.batchsize'"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["/no/config.toml"], "config file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    code = main(["train", *args, "--runs-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1


def test_empty_folder_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["train", "--dataset", str(empty), "--runs-dir", str(tmp_path / "r"),
                 "--quiet"])
    assert code == 2
    assert "no images found" in capsys.readouterr().err


def test_methods_and_runs_listing(tmp_path, capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "simclr" in out and "contrastive" in out
    runs = tmp_path / "runs"
    assert main(["train", "--max-steps", "3", "--runs-dir", str(runs), *SMALL]) == 0
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "simclr" in out and "3/3" in out


def test_listing_runs_answers_without_importing_torch(tmp_path):
    """``runs`` only reads run folders: it must not wait seconds for torch, which only the
    ``eval`` flags' definitions need (they still appear in ``eval --help``)."""
    code = ("import sys; from engine.__main__ import main; "
            f"main(['runs', '--runs-dir', {str(tmp_path)!r}]); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"no runs in {tmp_path}", "False"]
    r = subprocess.run([sys.executable, "-m", "engine", "eval", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--knn-k" in r.stdout and "--shots" in r.stdout, r.stderr


def test_resume_continues_the_step_count(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "--max-steps", "4", "--runs-dir", str(runs), *SMALL]) == 0
    run = only_run(runs)
    assert main(["train", "--resume", str(run), "--max-steps", "8", "--quiet"]) == 0
    rows = read_rows(run)
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, 9))  # no gap, no repeat
    times = [r["time"] for r in rows if "loss" in r]
    assert times == sorted(times)  # the clock continues too
    assert sum(1 for r in rows if r.get("baseline")) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 8
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
