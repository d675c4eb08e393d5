"""A text run end to end as a user drives it: a folder of text files, trained from a
config, evaluated beside random init (held-out bits too), exported with its vocabulary,
and trained by two processes under torchrun."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import events as ev
from engine.evaluate import evaluate_run
from engine.export import export_embeddings, export_encoder
from engine.presets import default_config
from engine.train import Trainer
from tests.conftest import isolated_env, torchrun

ANIMALS = ["The cat sat on the warm mat and purred.", "A dog ran across the green field.",
           "The horse ate hay in the old barn.", "Birds sang in the tall oak tree."]
MACHINES = ["The engine turned over and the motor hummed.", "A printer jammed on the page.",
            "The server rebooted after the update.", "Gears turned inside the old clock."]


@pytest.fixture(scope="module")
def text_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("texts")
    for label, lines in (("animals", ANIMALS), ("machines", MACHINES)):
        (root / label).mkdir()
        for i in range(12):
            paras = [lines[(i + j) % 4] + f" Note {i}-{j}." for j in range(4)]
            (root / label / f"{i}.txt").write_text("\n\n".join(paras), encoding="utf-8")
    return root


def tiny(method: str, folder: Path, **changes: object):  # noqa: ANN201 - Config
    cfg = default_config(method, False)
    for k, v in {"data.dataset": str(folder), "data.seq_len": 48, "method.dim": 32,
                 "method.depth": 2, "method.heads": 2, "optim.batch_size": 16,
                 "optim.max_steps": 30, "optim.warmup_steps": 3, "optim.lr": 3e-3,
                 "monitor.every_steps": 15, "monitor.monitor_size": 40,
                 "data.heldout_fraction": 0.15, **changes}.items():
        cfg.set(k, v)
    return cfg


@pytest.fixture(scope="module")
def gpt_run(text_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    events = list(Trainer(tiny("gpt", text_folder), runs,
                          cache_dir=runs / "cache").run())
    assert not [e for e in events if isinstance(e, ev.Failed)], events[-1]
    return Path(next(e.run_dir for e in events if isinstance(e, ev.Finished)))


def test_a_text_run_keeps_its_vocabulary_and_held_out_bits(gpt_run: Path):
    assert json.loads((gpt_run / "tokenizer.json").read_text())["kind"] == "byte"
    rows = [json.loads(x) for x in (gpt_run / "metrics.jsonl").read_text().splitlines()]
    held = [r for r in rows if "heldout_bits_per_token" in r]
    assert [r["step"] for r in held] == [0, 15, 30]
    assert held[-1]["heldout_bits_per_token"] < held[0]["heldout_bits_per_token"]
    assert all(r["unigram_bits"] == held[0]["unigram_bits"] for r in held)


def test_evaluation_scores_held_out_bits_beside_random_init(gpt_run: Path):
    result = evaluate_run(gpt_run, ["knn"], cache_dir=gpt_run.parent / "cache")
    held = result["heldout"]
    assert set(held) == {"trained", "random_init"}
    assert held["trained"]["heldout_bits_per_token"] < \
        held["random_init"]["heldout_bits_per_token"]
    from engine.evaluate import format_table

    assert "held-out bits per token" in format_table(result)


def test_the_exported_text_encoder_loads_with_its_vocabulary(gpt_run: Path, tmp_path: Path):
    files = export_encoder(gpt_run, tmp_path / "enc")
    assert {p.name for p in files.values()} == {"encoder.pt", "encoder.json",
                                                "tokenizer.json", "load_encoder.py"}
    out = subprocess.run([sys.executable, "load_encoder.py"], cwd=tmp_path / "enc",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 32])" in out.stdout
    emb = export_embeddings(gpt_run, tmp_path / "emb", cache_dir=gpt_run.parent / "cache")
    with open(emb["index"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"file", "label", "text"} <= set(rows[0])
    assert rows[0]["text"].strip() and rows[0]["label"] in ("animals", "machines")


def test_a_text_run_trains_on_two_processes(text_folder: Path, tmp_path: Path):
    """SimCSE under torchrun: one run folder, every step, its vocabulary."""
    cfg_path = tmp_path / "simcse.toml"
    tiny("simcse", text_folder, **{"optim.max_steps": 6, "monitor.every_steps": 3}
         ).save(cfg_path)
    out = torchrun(["train", str(cfg_path), "--runs-dir", str(tmp_path / "runs"),
                    "--quiet"], isolated_env(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["processes"] == 2
    assert summary["step"] == 6 and (run / "tokenizer.json").is_file()
