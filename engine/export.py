"""Take a run's results out of the workbench: the encoder, the embeddings, the config.

- **Encoder**: the backbone's ``state_dict`` (``encoder.pt``). For ResNet-18 the keys are
  torchvision's, so it loads into ``torchvision.models.resnet18`` (with the small-image
  stem the run used, see the generated ``load_encoder.py``); other backbones load into
  :func:`engine.backbones.build_backbone`. A JSON file records what it is.
  A text run's encoder (:class:`engine.text_encoder.TextEncoder`) comes with its
  vocabulary (``tokenizer.json``) and a loader that embeds a sentence. An image-text
  run (CLIP) writes its image tower as an image run does and beside it the text tower
  (``text_encoder.pt``), both projections and the logit scale (``projections.pt``), the
  vocabulary and ``load_clip.py``, which puts an image and a sentence into the joint
  space and prints their cosine.
- **Embeddings**: backbone features of every image (or text sample) of the run's dataset
  as ``.npy``, with file names and labels (and, for text, the sample's text) in a
  ``.csv`` (one row per sample, same order). An image-text run adds the joint-space
  embeddings of the images and of their captions and the captions in the ``.csv``.
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


LOADER_CLIP = '''"""Load the CLIP model exported by SelfSup Workbench (needs the workbench): the
image tower, the text tower and their projections into the joint space.

    python load_clip.py [IMAGE] [SENTENCE]

prints the cosine of the image (a random one without IMAGE) and the sentence in the
joint space. Imported, it gives ``embed_images`` (uint8 RGB images) and ``embed_texts``
(sentences), both unit vectors of the joint space ({embed_dim}-d).
"""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.augment import eval_transform
from engine.backbones import build_backbone
from engine.data.tokens import PAD, tokenizer_from_dict
from engine.text_encoder import TextEncoder, mean_pool

HERE = Path(__file__).resolve().parent
meta = json.loads((HERE / "clip.json").read_text(encoding="utf-8"))
tokenizer = tokenizer_from_dict(json.loads((HERE / "tokenizer.json").read_text("utf-8")))
image_tower, _ = build_backbone(meta["backbone"], meta["resolution"], meta["width"],
                                **meta["backbone_kwargs"])
image_tower.load_state_dict(torch.load(HERE / "encoder.pt", map_location="cpu",
                                       weights_only=True))
text_tower = TextEncoder(**meta["text_encoder"])
text_tower.load_state_dict(torch.load(HERE / "text_encoder.pt", map_location="cpu",
                                      weights_only=True))
heads = torch.load(HERE / "projections.pt", map_location="cpu", weights_only=True)
image_tower.eval()
text_tower.eval()


@torch.no_grad()
def embed_images(images):
    """uint8 RGB images (N, 3, H, W), resized to the run's resolution -> (N, E)."""
    x = eval_transform(images, meta["resolution"])
    return F.normalize(image_tower(x).float() @ heads["image_proj"].t(), dim=-1)


def tokens(sentences):
    """Token rows (N, seq_len), cut to the length and right-padded with [PAD]."""
    ids = torch.full((len(sentences), meta["seq_len"]), PAD, dtype=torch.long)
    for i, text in enumerate(sentences):
        row = tokenizer.encode(text)[: meta["seq_len"]]
        if row:
            ids[i, : len(row)] = torch.tensor(row)
    return ids


@torch.no_grad()
def embed_texts(sentences):
    """Sentences -> (N, E): the text tower's {pooling}, projected."""
    ids = tokens(sentences)
    if meta["text_pooling"] == "mean":
        f = mean_pool(text_tower(ids), ids)
    else:  # the state of each row's last real token, causal attention
        states = text_tower(ids, causal=True)
        last = ((ids != PAD).sum(1) - 1).clamp(min=0)
        f = states[torch.arange(ids.shape[0]), last].float()
    return F.normalize(f @ heads["text_proj"].t(), dim=-1)


if __name__ == "__main__":
    r = meta["resolution"]
    if len(sys.argv) > 1 and sys.argv[1] != "-":
        import numpy as np
        from PIL import Image

        rgb = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]
    else:
        image = torch.randint(0, 256, (1, 3, r, r), dtype=torch.uint8)
    sentence = sys.argv[2] if len(sys.argv) > 2 else "a red circle"
    cosine = float(embed_images(image)[0] @ embed_texts([sentence])[0])
    print(f"cosine {{cosine:.4f}} between the image and {{sentence!r}} "
          f"(logit scale {{meta['scale']:.2f}})")
'''


def _load(run_dir: str | Path) -> tuple[RunFolder, Any, ckpt_io.Checkpoint]:
    run = RunFolder(run_dir)
    if not run.config_path.is_file():
        raise UserInputError(f"not a run folder (no config.toml): {run.path}")
    if not run.last_checkpoint.is_file():
        raise UserInputError(f"no checkpoint in {run.path} (checkpoints/last.pt is missing)")
    return run, load_toml(run.config_path), ckpt_io.load(run.last_checkpoint)


def export_encoder(run_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``encoder.pt``, ``encoder.json`` and ``load_encoder.py`` into ``out_dir``;
    for an image-text run also its text tower, projections, vocabulary, ``clip.json``
    and ``load_clip.py``."""
    run, cfg, ckpt = _load(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = ckpt.backbone or cfg.backbone.name
    state = ckpt_io.backbone_state(ckpt)
    from engine.registry import get_method_info

    info = get_method_info(cfg.method_name)
    if info.modality == "text":
        return _export_text_encoder(run, cfg, ckpt, info.cls, state, out)
    if callable(getattr(info.cls, "text_encoder_kwargs", None)):  # an image-text method
        files = _export_image_encoder(run, cfg, ckpt, name, state, out)
        return {**files, **_export_text_tower(run, cfg, ckpt, info.cls, name, out)}
    return _export_image_encoder(run, cfg, ckpt, name, state, out)


def _export_image_encoder(run: RunFolder, cfg: Any, ckpt: ckpt_io.Checkpoint, name: str,
                          state: dict[str, torch.Tensor], out: Path) -> dict[str, Path]:
    """An image backbone, what it is, and a loader (torchvision's for ResNet-18)."""
    from engine.augment import MEAN, STD
    from engine.backbones import build_backbone

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


def _prefixed(model: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a state_dict under ``prefix``, the prefix cut, in the default
    memory layout."""
    return {k[len(prefix):]: v.contiguous() for k, v in model.items() if k.startswith(prefix)}


def _export_text_tower(run: RunFolder, cfg: Any, ckpt: ckpt_io.Checkpoint, cls: Any,
                       backbone: str, out: Path) -> dict[str, Path]:
    """An image-text run's text tower, both projections, the logit scale, the
    vocabulary and ``load_clip.py`` (the image tower is ``encoder.pt``)."""
    import math

    from engine.augment import MEAN, STD
    from engine.text_encoder import TextEncoder

    kwargs = cls.text_encoder_kwargs(cfg)
    text_state = _prefixed(ckpt.model, "text.")
    TextEncoder(**kwargs).load_state_dict(text_state)  # complete before it is written
    vocab = run.path / TOKENIZER_FILE
    if not vocab.is_file():
        raise UserInputError(f"{vocab} is missing: the run's vocabulary is needed to use "
                             "its text tower")
    try:
        heads = {"image_proj": ckpt.model["image_proj.weight"].contiguous(),
                 "text_proj": ckpt.model["text_proj.weight"].contiguous()}
    except KeyError as e:
        raise UserInputError(f"{run.last_checkpoint} has no {e.args[0]}: not an image-text "
                             "model's checkpoint") from None
    m = cfg.method
    log_scale = ckpt.model.get("logit_scale")
    if log_scale is not None:  # learned: exp, clipped at 100 as in training
        scale = min(math.exp(float(log_scale)), 100.0)
        heads["logit_scale"] = log_scale.detach().clone()
    else:
        scale = 1.0 / float(m.temperature)
    heads["scale"] = torch.tensor(scale)
    torch.save(text_state, out / "text_encoder.pt")
    torch.save(heads, out / "projections.pt")
    shutil.copyfile(vocab, out / "tokenizer.json")
    meta = {"run_id": run.id, "method": cfg.method_name, "step": ckpt.step,
            "backbone": backbone, "width": cfg.backbone.width,
            "backbone_kwargs": _backbone_kwargs(cfg, backbone),
            "resolution": cfg.data.resolution,
            "normalise": {"mean": list(MEAN), "std": list(STD)},
            "feature_dim": int(heads["image_proj"].shape[1]),
            "embed_dim": int(heads["image_proj"].shape[0]),
            "text_encoder": kwargs, "text_pooling": m.text_pooling,
            "seq_len": cfg.data.seq_len, "scale": scale,
            "temperature": 1.0 / scale, "learned_temperature": log_scale is not None}
    (out / "clip.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    pooling = ("mean over non-[PAD] tokens" if m.text_pooling == "mean"
               else "last real token (causal)")
    (out / "load_clip.py").write_text(
        LOADER_CLIP.format(embed_dim=meta["embed_dim"], pooling=pooling), encoding="utf-8")
    return {"text_encoder": out / "text_encoder.pt", "projections": out / "projections.pt",
            "vocabulary": out / "tokenizer.json", "clip_meta": out / "clip.json",
            "clip_loader": out / "load_clip.py"}


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
    ``embeddings.csv`` (index, file, label; a text run's ``text``), rows in the same
    order. An image-text run adds ``image_joint.npy`` and ``caption_joint.npy`` (N, E),
    the unit joint-space embeddings of each image and of its caption, and the
    ``caption`` column."""
    from engine.checkpoint import load_run_model
    from engine.data import load_configured
    from engine.model import (
        extract_features,
        extract_pair_embeddings,
        has_text_tower,
        pick_device,
    )
    from engine.registry import get_method_info

    run, cfg, _ = _load(run_dir)
    d = cfg.data
    ds = load_configured(d, cache_dir, modality=get_method_info(cfg.method_name).modality)
    device = pick_device("auto")
    model, _, _ = load_run_model(run, cfg, device)
    feats = extract_features(model, ds.inputs, device, resolution=d.resolution).numpy()
    paired = has_text_tower(model) and getattr(ds.inputs, "tokens", None) is not None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", feats.astype(np.float32))
    files = {"embeddings": out / "embeddings.npy"}
    if paired:
        zi, zt = extract_pair_embeddings(model, ds.inputs, device, resolution=d.resolution)
        np.save(out / "image_joint.npy", zi.numpy().astype(np.float32))
        np.save(out / "caption_joint.npy", zt.numpy().astype(np.float32))
        files.update(image_joint=out / "image_joint.npy",
                     caption_joint=out / "caption_joint.npy")
    with open(out / "embeddings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        texts = getattr(ds, "texts", None)  # a text source: each sample's text too
        column = ["caption" if paired else "text"] if texts is not None else []
        w.writerow(["index", "file", "label"] + column)
        for i, name in enumerate(ds.files):
            label = "" if ds.labels is None else ds.class_names[int(ds.labels[i])]
            w.writerow([i, name, label] + ([texts[i]] if texts is not None else []))
    return {**files, "index": out / "embeddings.csv"}


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
