"""Take a run's results out of the workbench: the encoder, the embeddings, the config.

- **Encoder**: the backbone's ``state_dict`` (``encoder.pt``). For ResNet-18 the keys are
  torchvision's, so it loads into ``torchvision.models.resnet18`` (with the small-image
  stem the run used, see the generated ``load_encoder.py``); other backbones load into
  :func:`engine.backbones.build_backbone`. A JSON file records what it is.
  A text run's encoder (:class:`engine.text_encoder.TextEncoder`) comes with its
  vocabulary (``tokenizer.json``) and a loader that embeds a sentence.
- **Embeddings**: backbone features of every image (or text sample) of the run's dataset
  as ``.npy``, with file names and labels (and, for text, the sample's text) in a
  ``.csv`` (one row per sample, same order).
- **Config**: the run's ``config.toml`` and the command line that reruns it.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import checkpoint as ckpt_io
from engine.errors import UserInputError
from engine.presets import load_toml
from engine.runs import TOKENIZER_FILE, RunFolder

LOADER_RESNET = '''"""Load the encoder exported by SelfSup Workbench into torchvision's ResNet."""
import torch
import torchvision

net = torchvision.models.resnet18(weights=None)
{stem}net.fc = torch.nn.Identity()  # the encoder's output: {dim}-d features
state = torch.load("encoder.pt", map_location="cpu", weights_only=True)
net.load_state_dict(state)
net.eval()
# inputs: RGB in [0, 1] at {res} px, normalised with mean {mean} and std {std}
print(net(torch.rand(1, 3, {res}, {res})).shape)
'''

LOADER_ENGINE = '''"""Load the encoder exported by SelfSup Workbench (needs the workbench)."""
import torch

from engine.backbones import build_backbone

net, dim = build_backbone({name!r}, {res}, {width}{extra})
state = torch.load("encoder.pt", map_location="cpu", weights_only=True)
net.load_state_dict(state)
net.eval()
# inputs: RGB in [0, 1] at {res} px, normalised with mean {mean} and std {std}
print(net(torch.rand(1, 3, {res}, {res})).shape)
'''


LOADER_TEXT = '''"""Load the text encoder exported by SelfSup Workbench (needs the workbench)."""
import json

import torch

from engine.data.tokens import PAD, tokenizer_from_dict
from engine.text_encoder import TextEncoder, mean_pool

meta = json.load(open("encoder.json", encoding="utf-8"))
tok = tokenizer_from_dict(json.load(open("tokenizer.json", encoding="utf-8")))
net = TextEncoder(**meta["encoder"])
net.load_state_dict(torch.load("encoder.pt", map_location="cpu", weights_only=True))
net.eval()
ids = torch.full((1, meta["encoder"]["max_len"]), PAD)
row = tok.encode("An example sentence.")[: ids.shape[1]]
ids[0, : len(row)] = torch.tensor(row)
with torch.no_grad():  # {dim}-d sentence embedding: the mean of the token states
    print(mean_pool(net(ids, causal=meta["causal"]), ids).shape)
'''


def _load(run_dir: str | Path) -> tuple[RunFolder, Any, ckpt_io.Checkpoint]:
    run = RunFolder(run_dir)
    if not run.config_path.is_file():
        raise UserInputError(f"not a run folder (no config.toml): {run.path}")
    if not run.last_checkpoint.is_file():
        raise UserInputError(f"no checkpoint in {run.path} (checkpoints/last.pt is missing)")
    return run, load_toml(run.config_path), ckpt_io.load(run.last_checkpoint)


def export_encoder(run_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``encoder.pt``, ``encoder.json`` and ``load_encoder.py`` into ``out_dir``."""
    from engine.augment import MEAN, STD
    from engine.backbones import build_backbone

    run, cfg, ckpt = _load(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = ckpt.backbone or cfg.backbone.name
    state = ckpt_io.backbone_state(ckpt)
    from engine.registry import get_method_info

    info = get_method_info(cfg.method_name)
    if info.modality == "text":
        return _export_text_encoder(run, cfg, ckpt, info.cls, state, out)
    res = cfg.data.resolution
    net, dim = build_backbone(name, res, cfg.backbone.width, **_backbone_kwargs(cfg, name))
    net.load_state_dict(state)  # proves the state_dict is complete before writing it
    torch.save(state, out / "encoder.pt")
    meta = {"run_id": run.id, "method": cfg.method_name, "backbone": name,
            "feature_dim": dim, "resolution": res, "step": ckpt.step,
            "normalise": {"mean": list(MEAN), "std": list(STD)}}
    (out / "encoder.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if name == "resnet18":
        stem = ("net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # small-image stem\n"
                "net.maxpool = torch.nn.Identity()\n") if res < 96 else ""
        text = LOADER_RESNET.format(stem=stem, dim=dim, res=res, mean=MEAN, std=STD)
    else:
        kwargs = _backbone_kwargs(cfg, name)
        extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        text = LOADER_ENGINE.format(name=name, res=res, width=cfg.backbone.width, extra=extra,
                                    mean=MEAN, std=STD)
    (out / "load_encoder.py").write_text(text, encoding="utf-8")
    return {"encoder": out / "encoder.pt", "meta": out / "encoder.json",
            "loader": out / "load_encoder.py"}


def _export_text_encoder(run: RunFolder, cfg: Any, ckpt: ckpt_io.Checkpoint, cls: Any,
                         state: dict[str, torch.Tensor], out: Path) -> dict[str, Path]:
    """A text run's encoder, its constructor arguments and its vocabulary."""
    from engine.text_encoder import TextEncoder

    kwargs = cls.encoder_kwargs(cfg)
    TextEncoder(**kwargs).load_state_dict(state)  # complete before anything is written
    vocab = run.path / TOKENIZER_FILE
    if not vocab.is_file():
        raise UserInputError(f"{vocab} is missing: the run's vocabulary is needed to use "
                             "its text encoder")
    torch.save(state, out / "encoder.pt")
    shutil.copyfile(vocab, out / "tokenizer.json")
    meta = {"run_id": run.id, "method": cfg.method_name, "backbone": ckpt.backbone,
            "feature_dim": kwargs["dim"], "step": ckpt.step, "encoder": kwargs,
            "causal": bool(getattr(cls, "causal", False)),
            "pooling": "mean over non-[PAD] tokens"}
    (out / "encoder.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out / "load_encoder.py").write_text(LOADER_TEXT.format(dim=kwargs["dim"]),
                                         encoding="utf-8")
    return {"encoder": out / "encoder.pt", "meta": out / "encoder.json",
            "vocabulary": out / "tokenizer.json", "loader": out / "load_encoder.py"}


def _backbone_kwargs(cfg: Any, name: str) -> dict[str, Any]:
    """Extra keyword arguments ``build_backbone`` takes for this backbone, if any."""
    import inspect

    from engine.backbones import build_backbone

    params = inspect.signature(build_backbone).parameters
    out = {}
    for field, value in vars(cfg.backbone).items():
        if field in params and field not in ("name", "width", "resolution"):
            out[field] = value
    return out


def export_embeddings(run_dir: str | Path, out_dir: str | Path, *,
                      cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Backbone features of the run's whole dataset: ``embeddings.npy`` (N, D) float32 and
    ``embeddings.csv`` (index, file, label), rows in the same order."""
    from engine.checkpoint import load_run_model
    from engine.data import load_configured
    from engine.model import extract_features, pick_device
    from engine.registry import get_method_info

    run, cfg, _ = _load(run_dir)
    d = cfg.data
    ds = load_configured(d, cache_dir, modality=get_method_info(cfg.method_name).modality)
    device = pick_device("auto")
    model, _, _ = load_run_model(run, cfg, device)
    feats = extract_features(model, ds.inputs, device, resolution=d.resolution).numpy()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", feats.astype(np.float32))
    with open(out / "embeddings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        texts = getattr(ds, "texts", None)  # a text source: each sample's text too
        w.writerow(["index", "file", "label"] + (["text"] if texts is not None else []))
        for i, name in enumerate(ds.files):
            label = "" if ds.labels is None else ds.class_names[int(ds.labels[i])]
            w.writerow([i, name, label] + ([texts[i]] if texts is not None else []))
    return {"embeddings": out / "embeddings.npy", "index": out / "embeddings.csv"}


def rerun_command(run_dir: str | Path) -> str:
    """The CLI command that reruns this run from its exported config."""
    return f"python -m engine train {shlex.quote(str(Path(run_dir) / 'config.toml'))}"


def export_config(run_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """``config.toml`` and ``rerun.sh`` (the command line that reruns it) in ``out_dir``."""
    run = RunFolder(run_dir)
    if not run.config_path.is_file():
        raise UserInputError(f"not a run folder (no config.toml): {run.path}")
    load_toml(run.config_path)  # refuses a broken file with a message naming it
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.config_path, out / "config.toml")
    cmd = rerun_command(out)
    (out / "rerun.sh").write_text(f"#!/bin/sh\n# reruns {run.id}\n{cmd}\n", encoding="utf-8")
    return {"config": out / "config.toml", "command": out / "rerun.sh"}
