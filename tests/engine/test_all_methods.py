"""Every registered method trains on every kind of data: shapes, digits, a user folder.

Parametrised over the registry, so a new method file is covered without touching this.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from engine import events as ev
from engine.presets import default_config
from engine.registry import available_methods
from engine.train import Trainer

METHODS = [m.name for m in available_methods()]


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


def tiny(method: str, dataset: str):
    cfg = default_config(method)
    for k, v in {"data.dataset": dataset, "data.shapes_count": 120, "optim.batch_size": 16,
                 "optim.max_steps": 3, "optim.warmup_steps": 1, "monitor.every_steps": 3,
                 "monitor.monitor_size": 40, "backbone.width": 4}.items():
        cfg.set(k, v)
    return cfg


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dataset", ["shapes", "digits", "folder"])
def test_method_trains_on_dataset(method, dataset, user_folder, tmp_path):
    source = str(user_folder) if dataset == "folder" else dataset
    events = list(Trainer(tiny(method, source), tmp_path).run())
    last = events[-1]
    assert isinstance(last, ev.Finished), getattr(last, "message", last)
    losses = [e.loss for e in events if isinstance(e, ev.StepMetrics)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    assert reports[-1].knn_accuracy is not None and math.isfinite(reports[-1].std)


def test_every_method_is_described():
    for m in available_methods():
        assert m.description and m.paper, m.name
        assert m.family in ("contrastive", "non-contrastive", "pretext", "reconstruction")
