"""The monitoring step: what the trainer measures on the fixed monitor subset.

Every ``monitor.every_steps`` the trainer hands the model to :class:`Monitor`, which
embeds the monitor inputs in eval mode and returns a :class:`~engine.events.MonitorReport`
(kNN accuracy, collapse scores, spectrum, alignment and uniformity), the
:class:`~engine.events.EmbeddingSnapshot` behind the embedding view, and the method's
:class:`~engine.events.PreviewSnapshot`. Nothing here knows the data is images: inputs go
through the method's own ``eval_inputs`` and ``train_augment``, and the monitor set's
thumbnails come from the dataset source.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine import distributed
from engine.config import Config
from engine.data.source import Inputs
from engine.events import EmbeddingSnapshot, MonitorReport, MonitorSet, PreviewSnapshot
from engine.knn import knn_accuracy
from engine.methods._base import SSLMethod
from engine.monitor import alignment, anisotropy, collapse_std, effective_rank, spectrum, uniformity
from engine.verdict import collapse_verdict

if TYPE_CHECKING:
    from engine.augment import ViewAugment
    from engine.data import DataSource

#: monitor inputs embedded per forward pass
CHUNK = 512
#: held-out rows a method scores at each monitor step (bounds the monitor's cost)
HELDOUT_MAX = 1024
#: monitor inputs whose two augmented views measure alignment
ALIGNMENT_PAIRS = 256
#: offsets of ``data.seed`` for the monitor's own random draws, apart from training's
#: (``run.seed``): every run on a dataset shares its monitor set, and every monitor step
#: draws the same alignment views and preview masks, so snapshots compare like with like
MONITOR_SET_SEED, ALIGNMENT_SEED, PREVIEW_SEED = 12345, 4242, 777


def monitor_indices(n_items: int, cfg: Config) -> torch.Tensor:
    """The monitor subset: fixed by the data seed, so every run on a dataset shares it."""
    gen = torch.Generator().manual_seed(MONITOR_SET_SEED + cfg.data.seed)
    n_mon = min(cfg.monitor.monitor_size, n_items)
    return torch.randperm(n_items, generator=gen)[:n_mon]


def monitor_set(ds: DataSource, indices: torch.Tensor) -> MonitorSet:
    """The monitor subset's identity for embedding views: labels, names, thumbnails."""
    labels = getattr(ds, "labels", None)
    files = list(ds.files)
    idx = indices.tolist()
    thumbs = ds.thumbnails(indices)
    sample_texts = getattr(ds, "sample_texts", None)  # text sources: hover shows the text
    return MonitorSet(
        indices=indices.numpy().astype(np.int64),
        labels=None if labels is None else labels[indices].numpy().astype(np.int64),
        class_names=tuple(ds.class_names),
        files=tuple(files[i] for i in idx),
        thumbnails=None if thumbs is None else thumbs.numpy(),
        texts=() if sample_texts is None else tuple(sample_texts(indices)),
    )


def tower_scores(z: torch.Tensor, prefix: str) -> dict[str, float]:
    """A second tower's collapse scores as ``MonitorReport.extra`` keys (``prefix`` +
    std, std_reference, effective_rank, dim, count, uniformity, anisotropy): the numbers
    :func:`engine.verdict.tower_verdict` reads its verdict from, so a reopened run's
    rows give the same verdict as the live one."""
    d = int(z.shape[1])
    return {f"{prefix}std": collapse_std(z), f"{prefix}std_reference": 1.0 / math.sqrt(d),
            f"{prefix}effective_rank": effective_rank(z), f"{prefix}dim": float(d),
            f"{prefix}count": float(z.shape[0]), f"{prefix}uniformity": uniformity(z),
            f"{prefix}anisotropy": anisotropy(z)}


def _hwc(x: torch.Tensor) -> np.ndarray:
    if x.dtype != torch.uint8:
        raise TypeError(f"preview images must be uint8, got {x.dtype}")
    return x.detach().permute(0, 2, 3, 1).contiguous().cpu().numpy()


class Monitor:
    """Measures a model on fixed monitor inputs (CPU tensors) and labels."""

    def __init__(self, cfg: Config, inputs: Inputs, labels: torch.Tensor | None,
                 device: torch.device, heldout: torch.Tensor | None = None,
                 reference: dict[str, float] | None = None) -> None:
        """``heldout``: the source's held-out split (scored by the method's
        ``heldout_metrics``, at most :data:`HELDOUT_MAX` rows); ``reference``: constants of
        the data logged beside them (a corpus's unigram entropy)."""
        self.cfg = cfg
        self.inputs = inputs
        self.labels = labels
        self.device = device
        self.heldout = None if heldout is None or len(heldout) == 0 else heldout[:HELDOUT_MAX]
        self.reference = dict(reference or {})
        self._augment: ViewAugment | None = None

    @torch.no_grad()
    def _embed(self, model: SSLMethod
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """Backbone features, projections and (image-text methods) the paired texts'
        projections of the monitor inputs (CPU, float32; texts None otherwise).

        With several processes each embeds its share of the monitor set and rank 0
        receives all of them (the other ranks get None): the work is split, not repeated.
        """
        res = self.cfg.data.resolution
        inputs = self.inputs
        if distributed.is_distributed():
            inputs = inputs.tensor_split(distributed.world_size())[distributed.rank()]
        feats, projs, texts = [], [], []
        for i in range(0, inputs.shape[0], CHUNK):
            raw = inputs[i : i + CHUNK].to(self.device)
            f = model.embed(model.eval_inputs(raw, res))
            feats.append(f.float().cpu())
            projs.append(model.project(f).float().cpu())
            t = model.text_projections(raw)
            if t is not None:
                texts.append(t.float().cpu())
        # a rank whose share is empty (more ranks than monitor inputs) sends nothing
        f = torch.cat(feats) if feats else torch.empty(0, 0)
        z = torch.cat(projs) if projs else torch.empty(0, 0)
        t_all = torch.cat(texts) if texts else None
        if not distributed.is_distributed():
            return f, z, t_all
        parts = distributed.gather_objects_to_main((f, z, t_all))
        if parts is None:
            return None
        parts = [p for p in parts if p[0].shape[0]]
        t_parts = [p[2] for p in parts if p[2] is not None]
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                torch.cat(t_parts) if t_parts else None)

    @torch.no_grad()
    def measure(self, model: SSLMethod, step: int, epoch: float, baseline: bool
                ) -> tuple[MonitorReport, EmbeddingSnapshot] | None:
        """Embed the monitor inputs in eval mode and score them. Under torchrun every rank
        calls this at the same step; rank 0 gets the report, the others None."""
        was_training = model.training
        model.eval()
        try:
            emb = self._embed(model)
            if emb is None:
                return None
            f, z, t = emb
            if t is not None and (t.shape[0] != z.shape[0] or not t.shape[0]):
                t = None
            # alignment: two augmented views of the first inputs, the same draws each time
            if self._augment is None:
                self._augment = model.train_augment()
            align = None
            if self._augment is not None:
                gen = torch.Generator().manual_seed(ALIGNMENT_SEED + self.cfg.data.seed)
                pair: Any = self.inputs[:ALIGNMENT_PAIRS].to(self.device)  # augment reads it
                z1 = model.project(model.embed(self._augment(pair, gen))).float().cpu()
                z2 = model.project(model.embed(self._augment(pair, gen))).float().cpu()
                align = alignment(z1, z2)
            extra = dict(self.reference)
            extra["anisotropy"] = anisotropy(f)
            if self.heldout is not None:
                extra.update(model.heldout_metrics(self.heldout.to(self.device)))
            # the embeddings just made, so an image-text method need not embed them again
            extra.update(model.monitor_metrics(self.inputs.to(self.device), self.labels,
                                               projections=z, text_projections=t))
        finally:
            model.train(was_training)
        if t is not None:
            extra.update(tower_scores(t, "text_"))
        knn = None
        if self.labels is not None and len(set(self.labels.tolist())) > 1:
            knn = knn_accuracy(f, self.labels, self.cfg.monitor.knn_k,
                               self.cfg.monitor.knn_temperature)
        std, ref, rank = collapse_std(z), 1.0 / math.sqrt(z.shape[1]), effective_rank(z)
        f_rank = effective_rank(f)
        report = MonitorReport(
            step=step, epoch=epoch, baseline=baseline, knn_accuracy=knn, std=std,
            std_reference=ref, effective_rank=rank, dim=int(z.shape[1]),
            backbone_rank=f_rank, backbone_dim=int(f.shape[1]),
            verdict=collapse_verdict(std, ref, rank, int(z.shape[1]), int(z.shape[0]),
                                     f_rank, int(f.shape[1])),
            spectrum=tuple(spectrum(z)), alignment=align, uniformity=uniformity(z),
            extra=extra)
        snap = EmbeddingSnapshot(step=step, features=f.half().numpy(),
                                 projections=z.half().numpy(),
                                 text_projections=None if t is None else t.half().numpy())
        return report, snap

    @torch.no_grad()
    def preview(self, model: SSLMethod, step: int) -> PreviewSnapshot | None:
        """The method's preview of the first monitor inputs, with the same randomness
        (masks, noise, rotations) at every call so snapshots compare like with like."""
        n = min(self.cfg.monitor.preview_count, self.inputs.shape[0])
        was_training = model.training
        model.eval()
        dev = self.device
        gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu")
        gen.manual_seed(PREVIEW_SEED + self.cfg.data.seed)
        try:
            first: Any = self.inputs[:n].to(dev)  # images, token rows or pairs
            p = model.preview(first, gen)
        finally:
            model.train(was_training)
        if p is None:
            return None
        return PreviewSnapshot(
            step=step, kind=p.kind,
            originals=None if p.originals is None else _hwc(p.originals),
            inputs=None if p.inputs is None else _hwc(p.inputs),
            outputs=None if p.outputs is None else _hwc(p.outputs),
            predicted=tuple(p.predicted), true=tuple(p.true),
            input_title=p.input_title, output_title=p.output_title, items=tuple(p.items))
