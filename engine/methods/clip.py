"""CLIP: an image tower and a text tower trained to match each image with its caption.

Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger,
Sutskever. "Learning Transferable Visual Models From Natural Language Supervision",
ICML 2021.

A batch is N image-caption pairs (``batch.images`` uint8 ``(N, 3, R, R)``, ``batch.tokens``
int64 ``(N, L)`` right-padded with [PAD]: the paired source's ``Pairs``). The image tower
is the shared image backbone (``self.backbone``, so kNN, the collapse scores and exports
read image features as for every image method), the text tower a
:class:`~engine.text_encoder.TextEncoder`; a linear projection without bias maps each
to the joint space (``embed_dim``), where the embeddings are L2-normalised and the
symmetric InfoNCE of the paper's Figure 3 (:func:`engine.losses.clip_loss`) makes each
image pick its caption among the N and each caption its image.

- **Temperature.** Learned, as the paper (section 2.5): ``logit_scale`` is initialised
  to ``log(1 / 0.07)`` and the scale ``exp(logit_scale)`` is clipped at 100; the
  parameter itself is also kept in ``[0, log 100]`` after every step (open_clip's
  in-place clamp), so it never drifts where the clip would stop its gradient. A fixed
  ``temperature`` replaces it (no parameter); a large one is the collapse switch.
- **Text pooling.** ``mean``: the mean of the token states over the real tokens, with
  bidirectional attention, the feature the other text methods read. CLIP itself uses a
  causal text transformer and the state of the [EOS] token, causal so that it could be
  initialised from a language model or given a language-modelling loss (section 2.4),
  neither of which is done here; ``last`` reproduces it (causal attention, the state of
  each row's last real token: the byte rows have no [EOS]).
- **Augmentation.** One view per image: CLIP's only augmentation is a random square crop
  (section 2.3). The preset makes ``augment`` a mild random resized crop (80-100 % of the
  area) and turns off flips and colour changes, which would contradict captions that
  name colours and left / right.
- **Several processes.** Both towers' embeddings are gathered with gradients
  (:func:`engine.distributed.gather`) and each process takes its own pairs against the
  whole batch (:func:`engine.losses.clip_loss_shard`), so the mean over processes is
  the whole-batch loss, as CLIP shards its similarity matrix (section 2.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import FINETUNE_AUGMENT, ViewAugment, eval_transform, to_uint8
from engine.config import Config, param
from engine.data.tokens import PAD, ByteTokenizer, Tokenizer
from engine.distributed import gather, is_distributed, rank
from engine.losses import clip_loss, clip_loss_shard
from engine.methods._base import InputView, Preview, SSLMethod, StepOutput
from engine.methods._text import TextEncoderConfig, vocab_size
from engine.registry import register_method
from engine.retrieval import (
    DEFAULT_TEMPLATES,
    TEMPLATE_SEPARATOR,
    chance_recall,
    parse_templates,
    prompts,
    recall_at_k,
    zero_shot_accuracy,
)
from engine.text_encoder import POSITIONS, TextEncoder, mean_pool

#: the paper's initial temperature (section 2.5)
INIT_TEMPERATURE = 0.07
#: the largest logit scale, 1 / the smallest temperature (section 2.5)
MAX_LOGIT_SCALE = 100.0
TEXT_POOLINGS = ("mean", "last")
#: pairs embedded per forward pass by the monitor hooks (bounded memory)
CHUNK = 256
#: the recall@k the monitor hook reports
RECALL_KS = (1, 5, 10)
#: monitor pairs the recall and zero-shot scores are measured on (bounded cost; chance
#: recall@k is k / this)
RETRIEVAL_PAIRS = 1000


@dataclass
class CLIPConfig(TextEncoderConfig):
    """The joint space, the temperature and the text tower (the image tower is the
    ``backbone`` section)."""

    dim: int = param(
        128, "Text tower: token width, also its feature dimension (512 in CLIP's "
        "smallest text transformer).", min=16, max=2048, label="Text width")
    depth: int = param(2, "Text tower: number of Transformer blocks (12 in CLIP).", min=1,
                       max=48, label="Text depth")
    heads: int = param(4, "Text tower: attention heads per block (must divide the width; "
                       "8 in CLIP).", min=1, max=32, label="Text heads")
    mlp_ratio: float = param(4.0, "Text tower: hidden width of each block's MLP, as a "
                             "multiple of the token width (4 in CLIP).", min=0.5, max=8.0,
                             advanced=True, label="Text MLP ratio")
    dropout: float = param(0.0, "Text tower: dropout on the embeddings, attention and "
                           "residual branches (CLIP uses none).", min=0.0, max=0.9,
                           advanced=True, label="Text dropout")
    positions: str = param(
        "learned", "Text tower: position embeddings, 'learned' (CLIP) or the fixed "
        "'sinusoidal' ones of Vaswani et al. 2017.", choices=POSITIONS, advanced=True,
        label="Text positions")
    embed_dim: int = param(
        128, "Width of the joint image-text space both towers project into (512 in "
        "CLIP's ViT-B/32, 1024 in its ResNet-50).", min=2, max=8192, label="Joint width")
    temperature: float = param(
        0.0, "Softmax temperature of the symmetric InfoNCE: 0 learns it, as CLIP (from "
        "0.07, never below 0.01); a value above 0 fixes it.", min=0.0, max=100.0,
        collapse="A fixed temperature of 10 or more flattens the logits (cosines in "
        "[-1, 1] over 10 differ by at most 0.2): the loss stays near log(batch) whatever "
        "the embeddings, nothing separates the pairs and recall stays at chance.")
    text_pooling: str = param(
        "mean", "Caption embedding: the 'mean' of the text tower's states over the real "
        "tokens, or the state of the 'last' real token with causal attention (CLIP's "
        "[EOS] token).", choices=TEXT_POOLINGS, label="Text pooling")
    prompt_templates: str = param(
        TEMPLATE_SEPARATOR.join(DEFAULT_TEMPLATES), "Zero-shot prompts measured live: "
        "templates separated by '|', '{}' standing for a class name (\"a photo of a {}.\"); "
        "each class's prompts are averaged, as CLIP does (section 3.1.4).",
        label="Zero-shot prompts")

    def validate(self, cfg: Config) -> None:
        super().validate(cfg)
        parse_templates(self.prompt_templates, "method.prompt_templates")


def images_of(batch: Any) -> torch.Tensor:
    """The images of a batch of pairs (its ``images``), or the batch itself when it is
    already an image tensor."""
    images = getattr(batch, "images", None)
    return batch if images is None else images


class PairAugment(ViewAugment):
    """The image augmentation, applied to a batch of pairs (its ``images``) or of images:
    the monitor draws its alignment views from monitor pairs through it."""

    def __call__(self, images: Any, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        return super().__call__(images_of(images), generator)


@register_method(
    "clip",
    config=CLIPConfig,
    family="contrastive",
    modality="paired",
    description="Match each image with its caption among the batch's, both ways "
    "(symmetric InfoNCE with a learned temperature).",
    paper="Radford et al. 2021, Learning Transferable Visual Models From Natural "
    "Language Supervision",
    # CPU: the small CNN at 32 px and a 2-block text tower of width 128 over 64 bytes of
    # caption (the class and colour open every shapes caption; 18 % of them are longer
    # and lose their last words); batch 128 (the paper's is 32,768: more negatives help,
    # and a 2-core CPU affords this many); AdamW with weight decay 0.2 as the paper's
    # hyperparameters, a higher peak rate for the short run. One view, a mild crop,
    # nothing that changes colours or sides (the captions name them). On captioned
    # shapes (2026-12-01, 2-core CPU, the Trainer on load_paired): 700 steps of about
    # 0.21 s, 151 s in all with the monitor; on 1,000 of its pairs zero-shot accuracy 47.5 %
    # (chance 16.7 %), text-to-image recall@5 19.5 % (chance 0.5 %), image kNN 76 %.
    # 500 steps gave 29 % and 11.6 %; rows of 96 bytes did better per step (64 % at 700
    # steps) but cost about a third more time.
    preset={"data.dataset": "shapes", "data.seq_len": 64, "optim.lr": 2e-3,
            "optim.weight_decay": 0.2, "optim.batch_size": 128, "optim.max_steps": 700,
            "optim.warmup_steps": 50, "monitor.every_steps": 50, "monitor.preview_count": 16,
            "augment.crop_min_scale": 0.8, "augment.flip_prob": 0.0,
            "augment.jitter_prob": 0.0, "augment.grayscale_prob": 0.0,
            "augment.blur_prob": 0.0},
    gpu_preset={"backbone.name": "resnet18", "method.dim": 256, "method.depth": 4,
                "method.heads": 4, "method.embed_dim": 256, "data.seq_len": 96,
                "optim.lr": 5e-4, "optim.batch_size": 512, "optim.max_steps": 3000,
                "optim.warmup_steps": 200, "monitor.every_steps": 250},
    collapse_advice=(
        "CLIP needs a sharp softmax and many negatives: keep method.temperature at 0 "
        "(learned from 0.07) or near 0.07, and the batch as large as memory allows; "
        "captions that do not describe their images leave nothing to match."
    ),
)
class CLIP(SSLMethod):
    """Image tower ``backbone`` + ``image_proj``; text tower ``text`` + ``text_proj``."""

    logit_scale: nn.Parameter | None

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: CLIPConfig = cfg.method  # type: ignore[assignment]
        self.text = TextEncoder(**self.text_encoder_kwargs(cfg))
        self.text_pooling = m.text_pooling
        self.embed_dim = m.embed_dim
        # CLIP's projections are linear maps without bias (section 2.3; Figure 3: W_i, W_t)
        self.image_proj = nn.Linear(feature_dim, m.embed_dim, bias=False)
        self.text_proj = nn.Linear(m.dim, m.embed_dim, bias=False)
        self.fixed_temperature = float(m.temperature)
        if self.fixed_temperature > 0:
            self.logit_scale = None
        else:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / INIT_TEMPERATURE)))
        #: turns prompts into token ids; the source's (a trained BPE) replaces it
        self.tokenizer: Tokenizer = ByteTokenizer()
        #: the source's class names (the zero-shot prompts)
        self.class_names: list[str] = []
        #: the zero-shot prompt templates, "{}" standing for a class name
        self.templates: tuple[str, ...] = parse_templates(m.prompt_templates,
                                                          "method.prompt_templates")
        self.seq_len = int(cfg.data.seq_len)

    @classmethod
    def text_encoder_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The text tower's :class:`TextEncoder` arguments (exports record them, so the
        tower rebuilds without the workbench's configs)."""
        m: CLIPConfig = cfg.method  # type: ignore[assignment]
        return {"vocab_size": vocab_size(cfg.data), "max_len": cfg.data.seq_len,
                "dim": m.dim, "depth": m.depth, "heads": m.heads, "mlp_ratio": m.mlp_ratio,
                "dropout": m.dropout, "positions": m.positions, "segments": 0}

    # ------------------------------------------------------------------ the two towers

    def scale(self) -> torch.Tensor:
        """The logit scale ``1 / temperature``: ``exp(logit_scale)`` clipped at 100
        (section 2.5), or the fixed temperature's inverse."""
        if self.logit_scale is None:
            return torch.tensor(1.0 / self.fixed_temperature)
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The text tower's caption features ``(B, dim)`` (see ``text_pooling``)."""
        ids = tokens.long()
        if self.text_pooling == "mean":
            return mean_pool(self.text(ids), ids)
        states = self.text(ids, causal=True)
        last = ((ids != PAD).sum(1) - 1).clamp(min=0)
        return states[torch.arange(ids.shape[0], device=ids.device), last].float()

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Image features as unit vectors of the joint space (what the collapse scores
        read)."""
        return F.normalize(self.image_proj(features).float(), dim=-1)

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(B, 3, R, R)`` -> unit joint-space embeddings ``(B, E)``."""
        return self.project(self.backbone(x))

    def embed_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token rows ``(B, L)`` -> unit joint-space embeddings ``(B, E)``."""
        return F.normalize(self.text_proj(self.text_features(tokens)).float(), dim=-1)

    # -------------------------------------------------------------------- training

    def train_augment(self) -> PairAugment:
        """One mild augmented view of each image (``augment`` section; see the module
        docstring), applied to a batch of pairs or of images."""
        return PairAugment(self.cfg.augment, self.cfg.data.resolution)

    def training_inputs(self, samples: Any, generator: torch.Generator) -> list[InputView]:
        """The one augmented view of each image and the caption it is matched with."""
        view = self.train_augment()(samples.images, generator)
        captions = [self.tokenizer.decode(row[row != PAD].tolist())
                    for row in samples.tokens]
        return [InputView("image view", to_uint8(view), caption="one mild augmentation"),
                InputView("caption", texts=captions,
                          caption="its match; the other captions are the negatives")]

    def training_step(self, images: Any, augment: Any,
                      generator: torch.Generator) -> StepOutput:
        """One step on a batch of pairs (``images``: an object with ``images`` and
        ``tokens``); ``augment`` turns uint8 images into one normalised view each."""
        pixels, tokens = images.images, images.tokens
        n = pixels.shape[0]
        zi = self.embed_images(augment(pixels, generator))
        zt = self.embed_texts(tokens)
        scale = self.scale().to(zi.device)
        start = 0
        if is_distributed():
            start = rank() * n
            all_i, all_t = gather(zi), gather(zt)
            loss = clip_loss_shard(all_i, all_t, start, n, scale)
        else:
            all_i, all_t = zi, zt
            loss = clip_loss(zi, zt, scale)
        with torch.no_grad():
            cos = zi @ all_t.t()  # this process's images against every caption
            total = cos.shape[1]
            targets = torch.arange(start, start + n, device=cos.device)
            pos_sum = cos[torch.arange(n, device=cos.device), targets].sum()
            neg = ((cos.sum() - pos_sum) / (n * (total - 1)) if total > 1
                   else torch.zeros((), device=cos.device))
            accuracy = (cos.argmax(1) == targets).float().mean()
        metrics = {"temperature": 1.0 / scale.detach(), "positive_similarity": pos_sum / n,
                   "negative_similarity": neg, "image_to_text_accuracy": accuracy}
        return StepOutput(loss, metrics)

    def finetune_augment(self) -> PairAugment:
        """The fine-tuning protocol's light augmentation, applied to the images of a
        batch of pairs (the protocol cuts its batches from the source's pairs)."""
        return PairAugment(FINETUNE_AUGMENT, self.cfg.data.resolution)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Keep ``logit_scale`` in ``[0, log 100]`` (open_clip clamps it after every
        optimiser step), so the clip in :meth:`scale` never holds it where it gets no
        gradient."""
        if self.logit_scale is not None:
            self.logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))
        return {}

    def eval_inputs(self, batch: Any, resolution: int) -> torch.Tensor:
        """The images of a batch of pairs (or an image batch), resized and normalised:
        what kNN, the collapse scores and exports read through the image tower."""
        return eval_transform(images_of(batch), resolution)

    # ---------------------------------------------------------------- text prompts

    def attach_source(self, source: object) -> None:
        """Keep the source's tokenizer (prompts and queries are tokenised as its
        captions were) and its class names (the zero-shot prompts)."""
        tok = getattr(source, "tokenizer", None)
        if tok is not None:
            self.tokenizer = tok
        self.class_names = list(getattr(source, "class_names", []) or [])

    def encode_prompts(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentences as token rows ``(len(texts), data.seq_len)``, cut to the length and
        right-padded with [PAD], on the model's device. An empty prompt is a row of
        [PAD] only, which embeds without failing (as the zero vector, with mean
        pooling)."""
        rows = torch.full((len(texts), self.seq_len), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.tokenizer.encode(text)[: self.seq_len]
            if ids:
                rows[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return rows.to(self.image_proj.weight.device)

    # ------------------------------------------------------------------ monitor hook

    def _chunks(self, batch: Any, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit embeddings of every pair of ``batch``, images and texts, on the CPU."""
        pixels, tokens = batch.images, batch.tokens
        zi, zt = [], []
        for s in range(0, pixels.shape[0], CHUNK):
            zi.append(self.embed_images(eval_transform(pixels[s : s + CHUNK], resolution))
                      .float().cpu())
            zt.append(self.embed_texts(tokens[s : s + CHUNK]).float().cpu())
        return torch.cat(zi), torch.cat(zt)

    @torch.no_grad()
    def similarity_matrix(self, batch: Any) -> torch.Tensor:
        """Cosine similarities ``(N, N)`` of the N pairs' images (rows) and captions
        (columns), CPU float32, in eval mode: the live heat map, whose diagonal lights
        up as the towers learn."""
        was = self.training
        self.eval()
        try:
            zi, zt = self._chunks(batch, self.cfg.data.resolution)
        finally:
            self.train(was)
        return zi @ zt.t()

    @torch.no_grad()
    def paired_metrics(self, batch: Any, labels: torch.Tensor | None = None,
                       class_names: Sequence[str] | None = None,
                       templates: Sequence[str] = DEFAULT_TEMPLATES,
                       embedded: tuple[torch.Tensor, torch.Tensor] | None = None
                       ) -> dict[str, float]:
        """Retrieval and zero-shot scores of monitor pairs (``batch`` with ``images``
        and ``tokens``, on the device), in eval mode. ``embedded``: the pairs' unit
        image and caption embeddings (CPU) when they are already made (the monitor's),
        which then are not made again.

        Image-to-text and text-to-image recall@1/5/10 over the batch's N pairs
        (:func:`engine.retrieval.recall_at_k`) beside chance (``recall_chance_r{k}`` =
        k / N); with ``labels`` and ``class_names``, zero-shot accuracy from the
        ``templates``' prompts (:func:`engine.retrieval.zero_shot_accuracy`) beside its
        chance ``1 / C``.
        """
        was = self.training
        self.eval()
        try:
            zi, zt = embedded or self._chunks(batch, self.cfg.data.resolution)
            n = zi.shape[0]
            out = recall_at_k(zi @ zt.t(), RECALL_KS)
            out.update({f"recall_chance_r{k}": chance_recall(n, k) for k in RECALL_KS})
            if labels is not None and class_names:
                c, t = len(class_names), len(templates)
                ids = self.encode_prompts(prompts(class_names, templates))
                classes = self.embed_texts(ids).float().cpu().view(c, t, -1)
                out["zero_shot_accuracy"] = zero_shot_accuracy(zi, classes, labels)
                out["zero_shot_chance"] = 1.0 / c
        finally:
            self.train(was)
        return out

    # ----------------------------------------------------- the monitor's and the window's

    def monitor_metrics(self, inputs: Any, labels: torch.Tensor | None,
                        projections: torch.Tensor | None = None,
                        text_projections: torch.Tensor | None = None) -> dict[str, float]:
        """Recall@1/5/10 both ways and zero-shot accuracy (with the templates in
        :attr:`templates`) on the first :data:`RETRIEVAL_PAIRS` monitor pairs, from the
        monitor's embeddings of them when it passes both (each monitor step would
        otherwise embed the pairs twice)."""
        n = min(RETRIEVAL_PAIRS, int(inputs.shape[0]))
        lab = None if labels is None else labels[:n].cpu()
        embedded = None
        if (projections is not None and text_projections is not None
                and projections.shape[0] >= n and text_projections.shape[0] >= n):
            embedded = (projections[:n].float(), text_projections[:n].float())
        return self.paired_metrics(inputs[:n], lab, self.class_names or None, self.templates,
                                   embedded=embedded)

    @torch.no_grad()
    def preview(self, images: Any, generator: torch.Generator) -> Preview | None:
        """The similarity heat map of the first monitor pairs: images as rows, their
        captions as columns (the diagonal lights up as the towers learn)."""
        if getattr(images, "tokens", None) is None:
            return None
        sim = self.similarity_matrix(images)
        captions = [self.tokenizer.decode(row[row != PAD].tolist()) for row in
                    images.tokens.cpu()]
        item = {"type": "similarity", "captions": captions,
                "similarity": [[round(float(v), 4) for v in row] for row in sim]}
        return Preview(kind="similarity", originals=images.images, items=[item],
                       input_title="images", output_title="captions")

    @torch.no_grad()
    def text_projections(self, inputs: Any) -> torch.Tensor | None:
        """The captions of a batch of pairs as unit joint-space vectors (CPU float32),
        :data:`CHUNK` rows per pass; None for a batch without captions."""
        tokens = getattr(inputs, "tokens", None)
        if tokens is None:
            return None
        was = self.training
        self.eval()
        try:
            parts = [self.embed_texts(tokens[s : s + CHUNK]).float().cpu()
                     for s in range(0, tokens.shape[0], CHUNK)]
        finally:
            self.train(was)
        return torch.cat(parts) if parts else torch.empty(0, self.embed_dim)

    @torch.no_grad()
    def embed_query(self, text: str) -> torch.Tensor | None:
        """A typed sentence in the joint space, to rank the monitor images against."""
        was = self.training
        self.eval()
        try:
            return self.embed_texts(self.encode_prompts([text]))[0].float().cpu()
        finally:
            self.train(was)
