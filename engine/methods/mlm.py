"""Masked language modelling (BERT), with sentence-order or next-sentence prediction beside
it as an option.

Devlin, Chang, Lee, Toutanova. "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding", NAACL 2019 (masked LM and next-sentence prediction, NSP).
Lan, Chen, Goodman, Gimpel, Sharma, Soricut. "ALBERT: A Lite BERT for Self-supervised
Learning of Language Representations", ICLR 2020 (sentence-order prediction, SOP).

Masked LM (BERT, section 3.1 and appendix A.1): of each row's real tokens (never [PAD] or
another special token) 15 % are chosen, ``max(1, round(0.15 n))`` per row as BERT's data
generator; of the chosen, 80 % become [MASK], 10 % a random real token and 10 % stay as
they are, so the encoder must keep a representation of every token, not only of the
masked ones. The loss is the cross-entropy of the original token at the chosen positions
only (:func:`engine.losses.masked_lm_loss`); the output layer is BERT's: a dense + GELU +
LayerNorm transform, then the transposed token embedding (tied) plus a bias.

``sentence_task`` adds a two-way classifier on the [CLS] state (BERT's pooler, dense +
tanh, then a linear layer), weighted by ``sentence_weight``. Each row becomes a pair
``[CLS] A [SEP] B [SEP]`` padded to the row length, with segment embeddings 0 for
``[CLS] A [SEP]`` and 1 for ``B [SEP]``: A and B are the row's real tokens split at a
random point of the middle half (there are no sentence boundaries in a token row). When
the pair does not fit, the longer segment is cut, A from its start and B from its end, so
the tokens at their junction stay and a swapped pair holds the same tokens as the
unswapped one would.

* ``'sop'`` (ALBERT, section 3.1, "inter-sentence coherence loss"): with probability 0.5
  A and B are swapped; predict whether they were (label 1: swapped). Both orders come
  from the same text, so topic cannot give the answer away: only coherence can.
* ``'nsp'`` (BERT, section 3.1, task 2): with probability 0.5 B is replaced by the B of
  another row of the batch; predict "is next" (label 1: B follows A). ALBERT found NSP
  mostly solvable by topic alone (another row is usually about something else) and
  replaced it by SOP, which is why both are here to compare.

``masked_accuracy`` (and ``sentence_accuracy``) stream at every step. Held out, the
masking and the pairs are one fixed draw (a seeded generator), so every monitor step
scores the same positions; ``heldout_majority_accuracy``, always guessing the most
frequent chosen token, is the line masked accuracy must clear.

The feature kNN reads is the mean of the bidirectional states of the unmasked row (no
[CLS] / [SEP], segment 0). On several processes nothing is gathered: the losses are
means over each process's own positions and rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.config import Config, param
from engine.data.tokens import CLS, MASK, PAD, SEP
from engine.errors import ConfigError
from engine.losses import masked_lm_loss, pretext_cross_entropy
from engine.methods._base import InputView, Preview, StepOutput
from engine.methods._text import FIRST_REAL, TextEncoderConfig, TextMethod, draw, draw_ints
from engine.registry import register_method

SENTENCE_TASKS = ("none", "sop", "nsp")
#: the seed of the one masking (and pairing) draw every held-out score uses
HELDOUT_SEED = 20190601
#: preview: monitor rows shown, and tokens of each row shown (its masks among them)
PREVIEW_ROWS, PREVIEW_TOKENS = 4, 64


def mask_tokens(ids: torch.Tensor, generator: torch.Generator, mask_prob: float,
                mask_fraction: float, random_fraction: float, vocab_size: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of token rows ``(B, L)``: the corrupted rows and the bool mask of
    the chosen positions.

    Each row's candidates are its real tokens (ids from :data:`FIRST_REAL` on: never
    [PAD], [CLS], [SEP] or [MASK]); ``max(1, round(mask_prob * n))`` of its ``n``
    candidates are chosen uniformly without replacement. A chosen token becomes [MASK]
    with probability ``mask_fraction``, a uniformly drawn real token with probability
    ``random_fraction``, and stays otherwise (BERT: 0.15, 0.8, 0.1).
    """
    device = ids.device
    cand = ids >= FIRST_REAL
    n = cand.sum(1)
    k = torch.minimum((n.float() * mask_prob).round().long().clamp(min=1), n)
    scores = draw(tuple(ids.shape), generator, device).masked_fill(~cand, 2.0)
    ranks = scores.argsort(1).argsort(1)  # 0 for the smallest score of each row
    chosen = (ranks < k[:, None]) & cand
    r = draw(tuple(ids.shape), generator, device)
    to_mask = chosen & (r < mask_fraction)
    to_random = chosen & (r >= mask_fraction) & (r < mask_fraction + random_fraction)
    random_ids = draw_ints(FIRST_REAL, vocab_size, tuple(ids.shape), generator, device)
    out = ids.masked_fill(to_mask, MASK)
    return torch.where(to_random, random_ids, out), chosen


def sentence_pairs(ids: torch.Tensor, task: str, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` rows of the same length as ``ids`` ``(B, L)``, their
    segment ids and the labels of ``task`` ('sop': 1 when A and B were swapped; 'nsp':
    1 when B is the row's own continuation, 0 when it is another row's B).

    A row's ``n`` real tokens split at ``s``, uniform in ``[max(1, n // 4),
    max(lo, min(n - 1, 3n // 4))]``; both segments are non-empty (rows hold at least two
    real tokens). A pair longer than ``L - 3`` tokens is cut (see the module docstring).
    """
    if task not in ("sop", "nsp"):
        raise ValueError(f"task must be 'sop' or 'nsp', got {task!r}")
    device = ids.device
    b, length = ids.shape
    rows = torch.arange(b, device=device)
    n = (ids != PAD).sum(1)
    lo = (n // 4).clamp(min=1)
    hi = torch.maximum(lo, torch.minimum(n - 1, (3 * n) // 4))
    u = draw((b,), generator, device)
    s = (lo + (u * (hi - lo + 1).float()).long()).clamp(max=hi)
    coin = draw((b,), generator, device) < 0.5
    # A: the row's first s tokens; B: the row's (or, for NSP, another row's) rest
    src_b = rows
    if task == "nsp":
        if b < 2:
            coin = torch.zeros_like(coin)  # no other row to take a B from
        shift = draw_ints(1, max(b, 2), (b,), generator, device)
        src_b = torch.where(coin, (rows + shift) % b, rows)
        labels = (~coin).long()  # 1: B is the next segment
    else:
        labels = coin.long()  # 1: swapped
    len_a, start_b = s, s[src_b]
    len_b = n[src_b] - start_b
    # too long: cut the longer, A from its start and B from its end (the junction stays)
    budget = length - 3
    short = torch.minimum(len_a, len_b)
    cut_short = torch.minimum(short, torch.full_like(short, budget // 2))
    cut_long = budget - cut_short
    over = len_a + len_b > budget
    a_short = len_a <= len_b
    ca = torch.where(over, torch.where(a_short, cut_short, cut_long), len_a)
    cb = torch.where(over, torch.where(a_short, cut_long, cut_short), len_b)
    start_a = len_a - ca
    swap = coin if task == "sop" else torch.zeros_like(coin)
    src1, start1, c1 = (torch.where(swap, src_b, rows), torch.where(swap, start_b, start_a),
                        torch.where(swap, cb, ca))
    src2, start2, c2 = (torch.where(swap, rows, src_b), torch.where(swap, start_a, start_b),
                        torch.where(swap, ca, cb))

    p = torch.arange(length, device=device)[None, :]
    c1_, c2_ = c1[:, None], c2[:, None]
    in1 = (p >= 1) & (p <= c1_)
    in2 = (p >= c1_ + 2) & (p <= c1_ + 1 + c2_)
    tok1 = ids[src1].gather(1, (start1[:, None] + p - 1).clamp(0, length - 1))
    tok2 = ids[src2].gather(1, (start2[:, None] + p - c1_ - 2).clamp(0, length - 1))
    out = torch.full_like(ids, PAD)
    out = torch.where(in1, tok1, out)
    out = torch.where(in2, tok2, out)
    out = torch.where((p == 0), torch.full_like(ids, CLS), out)
    out = torch.where((p == c1_ + 1) | (p == c1_ + c2_ + 2), torch.full_like(ids, SEP), out)
    segments = ((p >= c1_ + 2) & (p <= c1_ + c2_ + 2)).long().expand(b, -1).contiguous()
    return out, segments, labels


@dataclass
class MLMConfig(TextEncoderConfig):
    mask_prob: float = param(
        0.15, "Fraction of each row's real tokens chosen for prediction (15 % in BERT).",
        min=0.01, max=0.9, label="Masking rate")
    mask_fraction: float = param(
        0.8, "Of the chosen tokens, the fraction replaced by [MASK] (80 % in BERT).",
        min=0.0, max=1.0, label="[MASK] fraction", advanced=True)
    random_fraction: float = param(
        0.1, "Of the chosen tokens, the fraction replaced by a random token (10 % in BERT; "
        "the rest stay unchanged).", min=0.0, max=1.0, label="Random-token fraction",
        advanced=True)
    sentence_task: str = param(
        "none", "A sentence-level task beside the masked LM, classified from the [CLS] "
        "state of '[CLS] A [SEP] B [SEP]' pairs cut from each row: 'sop' (ALBERT: were A "
        "and B swapped?), 'nsp' (BERT: is B the continuation of A or another row's?), or "
        "'none'.", choices=SENTENCE_TASKS, label="Sentence task")
    sentence_weight: float = param(
        1.0, "Weight of the sentence task's loss beside the masked-LM loss (1 in BERT and "
        "ALBERT).", min=0.0, max=100.0, label="Sentence-task weight")

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        if self.mask_fraction + self.random_fraction > 1.0 + 1e-9:
            raise ConfigError(
                f"method.mask_fraction + method.random_fraction = "
                f"{self.mask_fraction:g} + {self.random_fraction:g} exceeds 1")


@register_method(
    "mlm",
    config=MLMConfig,
    family="reconstruction",
    modality="text",
    description="Recover 15 % of the tokens from the rest (BERT's masked LM), optionally "
    "with sentence-order (ALBERT) or next-sentence (BERT) prediction.",
    paper="Devlin et al. 2019, BERT; Lan et al. 2020, ALBERT (sentence-order prediction)",
    # CPU: rows of 64 bytes (BERT trains 90 % of its steps on short rows because long
    # ones cost disproportionately, appendix A.2), dropout off as GPT's CPU preset (the
    # masking is the noise), 1,600 steps of about 70 ms: the whole run in about 125 s on
    # a 2-core CPU. A long warm-up (BERT: 10k steps) matters with a sentence task: with
    # 100 warm-up steps at lr 1e-3, SOP's loss collapsed the states and the masked
    # accuracy sat at the majority line for 800+ steps; with 300 it does not
    # (2026-12-01: held-out masked accuracy 47.4 % without a sentence task, 23.9 % with
    # SOP, whose own accuracy is 93.9 %; the majority lines 15.1 % and 13.3 %).
    preset={"data.dataset": "pydocs", "data.seq_len": 64, "method.dropout": 0.0,
            "optim.lr": 1e-3, "optim.weight_decay": 0.01,
            "optim.batch_size": 32, "optim.max_steps": 1600, "optim.warmup_steps": 300,
            "monitor.every_steps": 200, "monitor.monitor_size": 2000},
    # GPU: BERT's dropout back (the CPU preset turns it off)
    gpu_preset={"method.dim": 384, "method.depth": 6, "method.heads": 6,
                "method.dropout": 0.1,
                "data.seq_len": 256, "optim.lr": 5e-4, "optim.batch_size": 128,
                "optim.max_steps": 5000, "optim.warmup_steps": 200,
                "monitor.every_steps": 250, "monitor.monitor_size": 2000},
    collapse_advice=(
        "The masked LM cannot collapse without its loss rising: judge it by the held-out "
        "masked accuracy against the majority line. Mean-pooled token states can have "
        "a low effective rank when a few frequent tokens dominate; if the held-out "
        "accuracy stalls at the majority line, lower the learning rate or train longer."
    ),
)
class MLM(TextMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: MLMConfig = cfg.method  # type: ignore[assignment]
        self.m = m
        d = feature_dim
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.decoder_bias = nn.Parameter(torch.zeros(self.vocab_size))
        # exists only with a sentence task: DDP needs every parameter used at every step
        self.sentence_head: nn.Module | None = None
        if m.sentence_task != "none":
            self.sentence_head = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 2))

    @classmethod
    def segment_embeddings(cls, cfg: Config) -> int:
        return 0 if cfg.method.sentence_task == "none" else 2  # type: ignore[attr-defined]

    def lm_logits(self, states: torch.Tensor) -> torch.Tensor:
        """BERT's output layer: transform, then the tied token embedding plus a bias."""
        return self.transform(states) @ self.backbone.token.weight.t() + self.decoder_bias

    def _forward(self, ids: torch.Tensor, generator: torch.Generator
                 ) -> dict[str, torch.Tensor]:
        """Pairs (with a sentence task), masking, the encoder and both heads."""
        out = self._corrupt(ids, generator)
        states = self.backbone(out["inputs"], segments=out.get("segments"))
        out["logits"] = self.lm_logits(states)
        if self.sentence_head is not None:
            out["sentence_logits"] = self.sentence_head(states[:, 0])
        return out

    def _corrupt(self, ids: torch.Tensor, generator: torch.Generator
                 ) -> dict[str, torch.Tensor]:
        """The step's inputs: segment pairs (with a sentence task) and the masking."""
        m = self.m
        out: dict[str, torch.Tensor] = {}
        if self.sentence_head is not None:
            ids, out["segments"], out["labels"] = sentence_pairs(ids, m.sentence_task,
                                                                 generator)
        inputs, chosen = mask_tokens(ids, generator, m.mask_prob, m.mask_fraction,
                                     m.random_fraction, self.vocab_size)
        out.update(ids=ids, chosen=chosen, inputs=inputs)
        return out

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The masked row the encoder reads and the tokens it must recover (with a
        sentence task, the two segments and the order label)."""
        m = self.m
        f = self._corrupt(samples.long(), generator)
        views = [
            InputView("original", texts=[self.show_tokens(r, c) for r, c in
                                         zip(f["ids"], f["chosen"], strict=True)],
                      caption="⟦ ⟧: the tokens to predict"),
            InputView("masked input", texts=[self.show_tokens(r, c) for r, c in
                                             zip(f["inputs"], f["chosen"], strict=True)],
                      caption=f"{m.mask_prob:.0%} chosen: {m.mask_fraction:.0%} [MASK], "
                              f"{m.random_fraction:.0%} random, the rest kept"),
        ]
        if "labels" in f:
            names = (("in order", "swapped") if m.sentence_task == "sop"
                     else ("random", "next"))
            views.append(InputView("order label",
                                   texts=[names[int(y)] for y in f["labels"]],
                                   caption=f"{m.sentence_task.upper()}: [SEP] joins the "
                                           "two segments"))
        return views

    def training_step(self, images: torch.Tensor, augment: Any,
                      generator: torch.Generator) -> StepOutput:
        f = self._forward(images, generator)
        chosen, ids = f["chosen"], f["ids"]
        mlm = masked_lm_loss(f["logits"], ids, chosen)
        with torch.no_grad():
            hits = (f["logits"].argmax(-1) == ids) & chosen
            metrics: dict[str, torch.Tensor | float] = {
                "masked_accuracy": hits.sum().float() / chosen.sum().clamp(min=1),
                "mlm_loss": mlm.detach()}
        loss = mlm
        if "sentence_logits" in f:
            sl = pretext_cross_entropy(f["sentence_logits"], f["labels"])
            loss = loss + self.m.sentence_weight * sl
            metrics["sentence_loss"] = sl.detach()
            metrics["sentence_accuracy"] = (
                f["sentence_logits"].argmax(1) == f["labels"]).float().mean()
        return StepOutput(loss, metrics)

    def heldout_metrics(self, inputs: torch.Tensor) -> dict[str, float]:
        """Masked accuracy at one fixed draw, the majority baseline over the same chosen
        positions, and the sentence task's accuracy (same draw)."""
        gen = torch.Generator().manual_seed(HELDOUT_SEED)
        hits = chosen_n = sent_hits = rows = 0
        counts = torch.zeros(self.vocab_size, dtype=torch.long, device=inputs.device)
        for chunk in self.chunks(inputs):
            f = self._forward(chunk, gen)
            chosen, ids = f["chosen"], f["ids"]
            hits += int(((f["logits"].argmax(-1) == ids) & chosen).sum())
            chosen_n += int(chosen.sum())
            counts += torch.bincount(ids[chosen], minlength=self.vocab_size)
            if "sentence_logits" in f:
                sent_hits += int((f["sentence_logits"].argmax(1) == f["labels"]).sum())
                rows += int(chunk.shape[0])
        n = max(chosen_n, 1)
        out = {"heldout_masked_accuracy": hits / n,
               "heldout_majority_accuracy": int(counts.max()) / n}
        if self.sentence_head is not None:
            out["heldout_sentence_accuracy"] = sent_hits / max(rows, 1)
        return out

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview | None:
        """For the first monitor rows: the masked row with each chosen position's true
        token and the model's top 5 (the same masks at every monitor step), and with a
        sentence task, each pair's true and predicted order."""
        gen = torch.Generator().manual_seed(generator.initial_seed())
        rows = images[:PREVIEW_ROWS]
        f = self._forward(rows, gen)
        tok = self.tokenizer
        inputs = f["inputs"]
        probs = torch.softmax(f["logits"].float(), -1)
        top = probs.topk(5, -1)
        items: list[dict[str, Any]] = []
        for i in range(rows.shape[0]):
            real = (f["ids"][i] != PAD).nonzero().flatten().tolist()
            shown = real[:PREVIEW_TOKENS]
            masks = []
            for pos in shown:
                if not bool(f["chosen"][i, pos]):
                    continue
                true_id = int(f["ids"][i, pos])
                ids5 = top.indices[i, pos].tolist()
                masks.append({"position": shown.index(pos),
                              "true": tok.token_text(true_id),
                              "top5": [tok.token_text(t) for t in ids5],
                              "probs": [round(float(p), 4) for p in top.values[i, pos]],
                              "correct": ids5[0] == true_id})
            items.append({"type": "masked",
                          "tokens": [tok.token_text(int(inputs[i, pos])) for pos in shown],
                          "masks": masks})
        if "sentence_logits" in f:
            names = (("in order", "swapped") if self.m.sentence_task == "sop"
                     else ("random", "next"))
            sp = torch.softmax(f["sentence_logits"].float(), -1)
            for i in range(rows.shape[0]):
                ids, seg = f["ids"][i], f["segments"][i]
                body = ids >= FIRST_REAL
                a = self.text(ids[body & (seg == 0)])
                b = self.text(ids[body & (seg == 1)])
                pred = int(sp[i].argmax())
                items.append({"type": "order", "a": a, "b": b,
                              "true": names[int(f["labels"][i])], "predicted": names[pred],
                              "confidence": round(float(sp[i, pred]), 4)})
        return Preview(kind="text", items=items, input_title="masked",
                       output_title="top 5")
