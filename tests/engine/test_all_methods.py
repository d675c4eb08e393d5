"""Every registered image method trains on every kind of image data (shapes, digits, a
user folder), every text method on a small text corpus, and each GPU preset builds and
takes a step (paired methods on a stand-in batch of image-caption pairs).

Parametrised over the registry, so a new method file is covered without touching this.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine import events as ev
from engine.data import load_dataset
from engine.model import build_model, build_optimizer
from engine.presets import default_config
from engine.registry import FAMILIES, MODALITIES, available_methods, get_method_info
from engine.train import Trainer
from tests.engine.conftest import small_config
from tests.engine.test_clip import StandInPairs
from tests.engine.test_text_methods import corpus

METHODS = [m.name for m in available_methods()]
IMAGE_METHODS = [m.name for m in available_methods() if m.modality == "image"]
TEXT_METHODS = [m.name for m in available_methods() if m.modality == "text"]
#: image-caption methods (CLIP): not in the trainer runs above until the paired source
#: (captioned shapes, captioned folders) exists; their steps and monitor hooks are
#: tested on stand-in pairs in test_clip.py and below
PAIRED_METHODS = [m.name for m in available_methods() if m.modality == "paired"]

#: Smaller still than ``small_config``: 45 runs (15 methods x 3 datasets) of 3 steps.
TINY = {"data.shapes_count": 120, "optim.batch_size": 16, "optim.warmup_steps": 1,
        "monitor.every_steps": 3, "monitor.monitor_size": 40, "backbone.width": 4}


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A small labelled folder of real image files (two classes, mixed formats)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for cls, ext in (("dark", "png"), ("bright", "jpg")):
        (root / cls).mkdir()
        for i in range(24):
            base = 40 if cls == "dark" else 200
            arr = np.clip(base + rng.normal(0, 30, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.{ext}")
    return root


@pytest.mark.parametrize("method", IMAGE_METHODS)
@pytest.mark.parametrize("dataset", ["shapes", "digits", "folder"])
def test_method_trains_on_dataset(method, dataset, user_folder, tmp_path):
    source = str(user_folder) if dataset == "folder" else dataset
    events = list(Trainer(small_config(method, 3, **TINY, **{"data.dataset": source}),
                          tmp_path).run())
    last = events[-1]
    if (method, dataset) == ("colorization", "digits"):  # grey: nothing to colour
        assert isinstance(last, ev.Failed) and last.input_error
        assert "colorization needs colour images" in last.message
        return
    assert isinstance(last, ev.Finished), getattr(last, "message", last)
    losses = [e.loss for e in events if isinstance(e, ev.StepMetrics)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    knn = reports[-1].knn_accuracy  # every dataset here is labelled
    assert knn is not None and 0 <= knn <= 1 and math.isfinite(reports[-1].std)


#: a text method's tiny encoder (the text counterpart of TINY)
TINY_TEXT = {"data.seq_len": 48, "method.dim": 32, "method.depth": 2, "method.heads": 2,
             "optim.batch_size": 16, "optim.warmup_steps": 1, "monitor.every_steps": 3,
             "monitor.monitor_size": 40}


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_text_method_trains_on_text(method, tmp_path):
    """A labelled corpus of short sentences (tests/engine/test_text_methods.py) with a
    held-out split, given to the trainer directly (no built-in text set needed)."""
    cfg = small_config(method, 3, **TINY_TEXT)
    events = list(Trainer(cfg, tmp_path, dataset=corpus()).run())
    last = events[-1]
    assert isinstance(last, ev.Finished), getattr(last, "message", last)
    losses = [e.loss for e in events if isinstance(e, ev.StepMetrics)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    knn = reports[-1].knn_accuracy
    assert knn is not None and 0 <= knn <= 1 and math.isfinite(reports[-1].std)


@pytest.mark.parametrize("method", PAIRED_METHODS)
def test_paired_method_steps_and_is_monitored_on_pairs(method):
    """Until the paired source exists: the CPU preset on stand-in pairs (shapes with
    random captions) takes steps, and the monitor (BatchNorm calibration, kNN, collapse
    scores, alignment views, preview) works on the pairs through the method's hooks."""
    from engine.model import calibrate_batchnorm
    from engine.monitoring import Monitor

    cfg = small_config(method, 2, **{"backbone.width": 4, "data.seq_len": 24,
                                     "method.dim": 32, "method.depth": 1,
                                     "method.heads": 2})
    ds = load_dataset("shapes", 32, shapes_count=100, use_cache=False)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(4, 260, (len(ds), cfg.data.seq_len), generator=g)
    pairs, cpu = StandInPairs(ds.inputs, rows), torch.device("cpu")
    torch.manual_seed(0)
    model, _ = build_model(cfg, cpu)
    calibrate_batchnorm(model, pairs[:40], cpu, cfg.data.resolution)
    optimizer = build_optimizer(model, cfg)
    augment = model.train_augment()
    for step in range(2):
        out = model.training_step(pairs[step * 16 : (step + 1) * 16], augment, g)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        model.after_step(step, 2)
    assert math.isfinite(float(out.loss.detach()))
    monitor = Monitor(cfg, pairs[:40], ds.labels[:40], cpu)
    measured = monitor.measure(model, 2, 0.1, baseline=False)
    assert measured is not None
    report, snap = measured
    assert report.knn_accuracy is not None and 0 <= report.knn_accuracy <= 1
    assert report.alignment is not None and math.isfinite(report.std)
    assert snap.features.shape == (40, model.feature_dim)
    preview = monitor.preview(model, 2)  # the heat map of the first monitor pairs
    assert preview is not None and preview.kind == "similarity"
    n = min(cfg.monitor.preview_count, 40)
    assert preview.originals.shape[0] == n and len(preview.items[0]["similarity"]) == n


def test_every_method_is_described():
    for m in available_methods():
        assert m.description and m.paper, m.name
        assert m.family in FAMILIES and m.modality in MODALITIES, m.name
    assert {m.modality for m in available_methods()} == {"image", "text", "paired"}
    assert {m.family for m in available_methods() if m.modality == "image"} == {
        "contrastive", "non-contrastive", "pretext", "reconstruction"}


# ----------------------------------------------------------------------------- GPU presets

#: Settings the GPU presets are known by (the paper-scale heads and batches).
GPU_PRESET_VALUES: dict[str, dict[str, object]] = {
    "barlow_twins": {"method.proj_dim": 2048},
    "byol": {"method.proj_hidden_dim": 4096, "optim.batch_size": 256},
    "clip": {"backbone.name": "resnet18"},
    "colorization": {"optim.batch_size": 256},
    "denoising": {"optim.batch_size": 256},
    "dino": {"method.out_dim": 2048, "method.local_crops": 6},
    "inpainting": {"optim.batch_size": 256},
    "mae": {"backbone.name": "vit", "optim.batch_size": 256},
    "moco": {"method.queue_size": 16384, "optim.batch_size": 256},
    "simsiam": {"method.proj_dim": 2048, "method.pred_hidden_dim": 512},
    "triplet": {"optim.batch_size": 256},
    "vicreg": {"method.proj_dim": 2048},
}
#: Settings the GPU preset makes larger than the CPU preset.
GPU_PRESET_LARGER: dict[str, tuple[str, ...]] = {
    "mae": ("backbone.vit_dim", "optim.max_steps"),
    **{m: ("method.dim", "method.depth", "data.seq_len", "optim.batch_size")
       for m in ("gpt", "mlm", "simcse", "clip")},
}
#: Preview column titles, where the method names them after its corruption.
PREVIEW_TITLES: dict[str, dict[str, str]] = {
    "colorization": {"output_title": "colourised"},
    "denoising": {"input_title": "masking noise"},
}


@pytest.fixture(scope="module")
def shapes_batch() -> torch.Tensor:
    """Four uint8 shape images ``(4, 3, 32, 32)`` (not cached: a module fixture runs
    before the per-test cache folder exists)."""
    return load_dataset("shapes", 32, shapes_count=100, use_cache=False).inputs[:4]


@pytest.mark.parametrize("method", METHODS)
def test_gpu_preset_builds_and_takes_a_step_on_cpu(method, shapes_batch):
    """The GPU preset as a GPU runs it (``backbone.name = auto`` is ResNet-18 there), with
    its full-size heads, on four images: one optimiser step, the after-step hook, the
    monitor's embed and project, and the preview. No trainer: its loop is covered by
    test_method_trains_on_dataset, and a monitor pass over 2048-d projections costs
    seconds on a CPU."""
    info = get_method_info(method)
    text, paired = info.modality == "text", info.modality == "paired"
    cpu, cfg = default_config(method), default_config(method, accelerator=True)
    for key, value in info.gpu_preset.items():  # applied on top of the CPU preset
        assert cfg.get(key) == value, key
    for key, value in GPU_PRESET_VALUES.get(method, {}).items():
        assert cfg.get(key) == value, key
    for key in GPU_PRESET_LARGER.get(method, ()):
        assert cfg.get(key) > cpu.get(key), key
    assert cfg.optim.max_steps > cfg.optim.warmup_steps
    if cfg.backbone.name == "auto":
        cfg.set("backbone.name", "resnet18")
    cfg.validate()

    torch.manual_seed(0)
    model, backbone = build_model(cfg, torch.device("cpu"))
    assert backbone == ("text_transformer" if text else cfg.backbone.name)
    batch = shapes_batch
    if text or paired:  # four token rows of the GPU preset's length, the last half padded
        rows = torch.randint(4, 260, (4, cfg.data.seq_len),
                             generator=torch.Generator().manual_seed(0))
        rows[:, cfg.data.seq_len // 2 :] = 0
        batch = StandInPairs(shapes_batch, rows) if paired else rows
    optimizer = build_optimizer(model, cfg)
    out = model.training_step(batch, model.train_augment(),
                              torch.Generator().manual_seed(0))
    assert out.loss.ndim == 0 and math.isfinite(float(out.loss.detach()))
    assert all(math.isfinite(float(v)) for v in out.metrics.values()), out.metrics
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    assert all(math.isfinite(v) for v in model.after_step(0, cfg.optim.max_steps).values())

    model.eval()
    with torch.no_grad():
        features = model.embed(model.eval_inputs(batch[:2], cfg.data.resolution))
        projections = model.project(features)
        preview = model.preview(batch[:2], torch.Generator().manual_seed(0))
    assert features.shape == (2, model.feature_dim) and torch.isfinite(features).all()
    assert projections.shape[0] == 2 and torch.isfinite(projections).all()
    if text:  # continuations (gpt), masks (mlm) as text items; SimCSE draws none
        assert preview is None if method == "simcse" else (
            preview is not None and preview.kind == "text" and preview.items)
    elif info.family == "pretext":
        assert preview is not None and preview.kind == "classification"
        assert len(preview.predicted) == len(preview.true) == 2
    elif info.family == "reconstruction":
        assert preview is not None and preview.kind == "reconstruction"
        assert preview.outputs is not None and preview.outputs.shape == (2, 3, 32, 32)
    for attr, title in PREVIEW_TITLES.get(method, {}).items():
        assert getattr(preview, attr) == title, attr
