"""What a method trains on: the inputs its training step builds from a few samples.

The views panel shows them live, before Start: the two augmented views of a joint-
embedding method, DINO's global and local crops, MAE's visible patches, the rotated
copies, shuffled tiles, holes, grey inputs, masked sentences and shifted targets. They
come from :meth:`engine.methods._base.SSLMethod.training_inputs`, which calls the same
functions the step calls, on a model built from the config being edited (never trained:
the inputs do not depend on the weights). Seeing that two crops of a star share only a
corner explains contrastive learning better than a paragraph (Chen et al. 2020, section
3, "data augmentation as objective design").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.config import Config
from engine.data.source import DataSource, Inputs
from engine.methods._base import InputView
from engine.model import build_model

#: how many samples the panel shows (rows)
SAMPLES = 6


def fixed_samples(source: DataSource, count: int = SAMPLES) -> tuple[Inputs, list[str]]:
    """``count`` samples (the same ones at every draw, so a changed setting is all that
    changes) and their display names: the first of each class in turn when the data
    has labels, so every class shows; else spread evenly over the dataset."""
    n = len(source)
    if n == 0:
        raise ValueError(f"dataset {source.name!r} has no samples to show")
    idx = torch.linspace(0, n - 1, min(count, n)).round().long().unique()
    labels = source.labels
    if labels is not None and len(labels) == n and int(labels.max()) > 0:
        by_class = [(labels == c).nonzero().flatten() for c in labels.unique().tolist()]
        picked: list[int] = []
        for k in range(max(len(c) for c in by_class)):
            picked += [int(c[k]) for c in by_class if k < len(c)]
            if len(picked) >= count:
                break
        idx = torch.tensor(picked[: min(count, n)])
    names = [source.files[i] if i < len(source.files) else f"#{i}" for i in idx.tolist()]
    return source.inputs[idx], names


@dataclass
class ViewsDrawing:
    """One draw: the samples as they are and what the method makes of them."""

    method: str
    names: list[str]
    #: uint8 ``(N, 3, H, W)`` sample images (None for text)
    originals: torch.Tensor | None
    #: the samples as text (text and paired data; [] for images)
    original_texts: list[str] = field(default_factory=list)
    views: list[InputView] = field(default_factory=list)
    draw: int = 0
    seconds: float = 0.0


def draw_views(cfg: Config, source: DataSource, draw: int = 0,
               samples: tuple[Inputs, list[str]] | None = None) -> ViewsDrawing:
    """The inputs ``cfg``'s method trains on for the fixed samples of ``source``.

    ``draw`` seeds the randomness (a "new draw" adds one); the same config, source and
    draw give the same pictures. Raises :class:`engine.errors.ConfigError` (or
    ValueError) for a config the method refuses, as Start would.
    """
    start = time.perf_counter()
    inputs, names = samples if samples is not None else fixed_samples(source)
    cpu = torch.device("cpu")
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)  # model init; the weights do not change the inputs
        model, _ = build_model(cfg, cpu)
    finally:
        torch.random.set_rng_state(torch_state)
    model.attach_source(source)
    generator = torch.Generator().manual_seed(cfg.data.seed * 1000 + draw)
    with torch.no_grad():
        views = model.training_inputs(inputs, generator)
    originals, texts = _originals(inputs, model)
    return ViewsDrawing(method=cfg.method_name, names=names, originals=originals,
                        original_texts=texts, views=views, draw=draw,
                        seconds=time.perf_counter() - start)


def _originals(inputs: Any, model: Any) -> tuple[torch.Tensor | None, list[str]]:
    """The samples as shown beside their views: images as uint8, token rows as text."""
    images = getattr(inputs, "images", None)
    tokens = getattr(inputs, "tokens", None)
    if images is not None:  # image-caption pairs: the caption is a view of its own
        return images, []
    assert isinstance(inputs, torch.Tensor)
    if inputs.dtype == torch.uint8 and inputs.ndim == 4:
        return inputs, []
    show = getattr(model, "show_tokens", None)
    rows = inputs if tokens is None else tokens
    return None, [show(r) if show is not None else str(r.tolist()) for r in rows.long()]
