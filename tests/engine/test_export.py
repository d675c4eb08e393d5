"""Exports: the encoder loads into torchvision, embeddings line up with files, config reruns."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from engine import events as ev
from engine.augment import eval_transform
from engine.checkpoint import load_run_model
from engine.errors import UserInputError
from engine.export import export_config, export_embeddings, export_encoder, rerun_command
from engine.presets import load_toml
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import small_config


def run_dir(tmp_path, backbone: str = "small_cnn", steps: int = 3, monitor: int = 40) -> str:
    cfg = small_config("simclr", steps, **{"backbone.name": backbone, "optim.batch_size": 8,
                                            "monitor.monitor_size": monitor})
    events = list(Trainer(cfg, tmp_path / "runs").run())
    return next(e.run_dir for e in events if isinstance(e, ev.Finished))


def test_resnet_encoder_loads_into_torchvision_and_gives_the_same_features(tmp_path):
    # one step and the smallest monitor set: a ResNet-18 step and its monitor cost seconds
    rd = run_dir(tmp_path, "resnet18", steps=1, monitor=20)
    files = export_encoder(rd, tmp_path / "out")
    meta = json.loads(files["meta"].read_text())
    assert meta["backbone"] == "resnet18" and meta["feature_dim"] == 512

    net = torchvision.models.resnet18(weights=None)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(files["encoder"], weights_only=True))  # strict
    net.eval()
    cfg = load_toml(RunFolder(rd).config_path)
    model, _, _ = load_run_model(RunFolder(rd), cfg, "cpu")
    x = eval_transform(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), 32)
    with torch.no_grad():
        ours, theirs = net(x), model.embed(x)
    # the same features up to float rounding, relative to their size: features reach ~150,
    # and on a Zen 3 EPYC the two paths differed by more than allclose's atol=1e-5 there;
    # a wrongly mapped weight moves them by whole units
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max(), (ours - theirs).abs().max()
    # the generated loader snippet runs as written
    r = subprocess.run([sys.executable, "load_encoder.py"], cwd=tmp_path / "out",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "torch.Size([1, 512])" in r.stdout


def test_small_cnn_encoder_loader_runs(tmp_path):
    rd = run_dir(tmp_path)
    export_encoder(rd, tmp_path / "out")
    r = subprocess.run([sys.executable, "load_encoder.py"], cwd=tmp_path / "out",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "torch.Size([1, 64])" in r.stdout  # width 8 -> 8 * 8 features


def test_embeddings_line_up_with_files_and_labels(tmp_path):
    rd = run_dir(tmp_path)
    files = export_embeddings(rd, tmp_path / "emb")
    x = np.load(files["embeddings"])
    rows = list(csv.DictReader(open(files["index"], encoding="utf-8")))
    assert x.shape == (300, 64) and len(rows) == 300 and x.dtype == np.float32
    assert rows[0]["index"] == "0" and rows[0]["file"] and rows[0]["label"]
    assert np.all(np.isfinite(x))


def test_config_export_and_rerun_command(tmp_path):
    rd = run_dir(tmp_path)
    files = export_config(rd, tmp_path / "cfg")
    assert load_toml(files["config"]).to_dict() == load_toml(RunFolder(rd).config_path).to_dict()
    assert rerun_command(tmp_path / "cfg") in files["command"].read_text()


def test_bad_folders_are_refused_with_their_name(tmp_path):
    with pytest.raises(UserInputError, match="no config.toml"):
        export_encoder(tmp_path, tmp_path / "x")
    rd = run_dir(tmp_path)
    RunFolder(rd).last_checkpoint.write_bytes(b"torn")
    with pytest.raises(UserInputError, match="cannot read checkpoint"):
        export_encoder(rd, tmp_path / "x")


def test_cli_export(tmp_path, capsys):
    from engine.__main__ import main

    rd = run_dir(tmp_path)
    assert main(["export", rd, "config", "--out", str(tmp_path / "c")]) == 0
    assert "rerun with: python -m engine train" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nope"), "encoder", "--out", str(tmp_path)]) == 2
    assert "run not found" in capsys.readouterr().err
