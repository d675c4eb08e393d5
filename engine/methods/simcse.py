"""Unsupervised SimCSE: the same sentences twice through the encoder, dropout the only
difference, contrasted against the rest of the batch.

Gao, Yao, Chen. "SimCSE: Simple Contrastive Learning of Sentence Embeddings", EMNLP 2021.

Each batch of token rows goes through the encoder twice in train mode (one pass over the
batch stacked on itself); the two dropout masks are the "minimal data augmentation"
(section 3) that makes the two embeddings of a sentence a positive pair, and the other
sentences' second embeddings are its negatives: InfoNCE at temperature 0.05
(:func:`engine.losses.simcse_loss`, the paper's eq. 1 with dropout-noise positives).

The sentence embedding (``pooling``) is the mean of the token states over the real
tokens, or the state of a [CLS] token put in front of each row (the paper's choice; the
row's last token is dropped when the row is full). SimCSE trains with an MLP over it
(dense + tanh, BERT's pooler) and evaluates without it (its pooler ablation, "w/ MLP (train)"),
so :meth:`embed` (what kNN and exports read) is the pooled embedding and
:meth:`project` (what the loss and the collapse scores read) the MLP's output.

Dropout is the whole augmentation: ``dropout = 0`` gives two identical views, the
positive pair is trivially matched (similarity 1) and the loss only pushes sentences
apart; the paper's Table 2 finds no dropout (and the same mask for both views) far worse
than p = 0.1.

On several processes the second views are gathered with gradients
(:func:`engine.distributed.gather`) and every process contrasts its own sentences' first
views against the whole batch's second views: the mean over processes is the
whole-batch loss (the paper's code gathers across GPUs the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.config import Config, param
from engine.data.tokens import CLS
from engine.distributed import gather, rank
from engine.losses import simcse_loss
from engine.methods._base import InputView, StepOutput
from engine.methods._text import TextEncoderConfig, TextMethod
from engine.registry import register_method
from engine.text_encoder import mean_pool

POOLINGS = ("mean", "cls")


@dataclass
class SimCSEConfig(TextEncoderConfig):
    dropout: float = param(
        0.1, "Encoder dropout, SimCSE's only augmentation: the two passes of a sentence "
        "differ by their dropout masks (0.1 in the paper, Table 2).", min=0.0, max=0.9,
        collapse="0 makes the two views identical: the positive pair matches trivially "
        "(similarity 1) and the loss only spreads sentences apart, with nothing making "
        "similar sentences agree (Gao et al. 2021, Table 2: no dropout is far worse than "
        "0.1).")
    temperature: float = param(0.05, "Softmax temperature of the InfoNCE loss (0.05 in the "
                               "paper).", min=0.001, max=10.0)
    pooling: str = param(
        "mean", "Sentence embedding: the 'mean' of the token states over the real tokens, "
        "or the state of a '[CLS]' token put before each row (the paper's choice; mean "
        "pooling does about as well there).", choices=POOLINGS)


@register_method(
    "simcse",
    config=SimCSEConfig,
    family="contrastive",
    modality="text",
    description="Two dropout passes of each sentence are a positive pair, the other "
    "sentences negatives (InfoNCE).",
    paper="Gao et al. 2021, SimCSE: Simple Contrastive Learning of Sentence Embeddings",
    # CPU: the paper's unsupervised recipe has batch 64 and rows of 32 tokens
    # (max_seq_length 32); here 32 bytes, two passes of 64 rows in about 170 ms on a
    # 2-core CPU, 500 steps: the whole run in about 90 s. The contrast is solved within
    # a few hundred steps (positive similarity 0.94, negatives near 0) and kNN accuracy
    # levels off (2026-12-01: 32.3 % -> 39.4 % at 500 steps, 39.2 % at 700; rows of 64
    # bytes cost twice as much per step and gained less). The monitor set is 2,000
    # documents: kNN on 500 varies by about 2 points, the size of the gain.
    preset={"data.dataset": "pydocs", "data.seq_len": 32, "optim.lr": 5e-4,
            "optim.weight_decay": 0.01,
            "optim.batch_size": 64, "optim.max_steps": 500, "optim.warmup_steps": 50,
            "monitor.every_steps": 50, "monitor.monitor_size": 2000},
    gpu_preset={"method.dim": 384, "method.depth": 6, "method.heads": 6,
                "data.seq_len": 256, "optim.lr": 3e-4, "optim.batch_size": 256,
                "optim.max_steps": 3000, "optim.warmup_steps": 200,
                "monitor.every_steps": 250, "monitor.monitor_size": 2000},
    collapse_advice=(
        "SimCSE needs both its noise and its negatives: keep method.dropout near 0.1 "
        "(0 gives identical views) and the batch large enough (the paper uses 64); a "
        "temperature far from 0.05 weakens the contrast."
    ),
)
class SimCSE(TextMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: SimCSEConfig = cfg.method  # type: ignore[assignment]
        self.temperature = m.temperature
        self.pooling = m.pooling
        self.projector = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.Tanh())

    def inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """The encoder's input: the rows, or with 'cls' pooling [CLS] + the rows (cut to
        their length)."""
        if self.pooling == "mean":
            return ids
        cls = torch.full_like(ids[:, :1], CLS)
        return torch.cat([cls, ids[:, :-1]], dim=1)

    def pool(self, ids: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings ``(B, D)`` of token rows (see ``pooling``)."""
        x = self.inputs(ids)
        states = self.states(x)
        return mean_pool(states, x) if self.pooling == "mean" else states[:, 0].float()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector(features)

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The step stacks the batch on itself: both views are the same text, told
        apart only by the encoder's dropout."""
        texts = [self.show_tokens(r) for r in samples.long()]
        p = self.cfg.method.dropout  # type: ignore[attr-defined]
        second = (f"the same text; dropout {p:g} inside the encoder makes it a second view"
                  if p > 0 else "identical: with dropout 0 there is nothing to tell apart")
        return [InputView("view 1", texts=texts, caption="the text"),
                InputView("view 2", texts=list(texts), caption=second)]

    def training_step(self, images: torch.Tensor, augment: Any,
                      generator: torch.Generator) -> StepOutput:
        n = images.shape[0]
        z = self.project(self.pool(torch.cat([images, images])))  # two dropout masks
        z1, z2 = z[:n], z[n:]
        loss, pos, neg = simcse_loss(z1, gather(z2), rank() * n, self.temperature)
        return StepOutput(loss, {"positive_similarity": pos, "negative_similarity": neg})
