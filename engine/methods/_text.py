"""What the text methods share: the encoder's settings, its construction and the hooks
that make token rows the monitor's and the evaluation's inputs.

A text dataset source (:class:`engine.data.tokens.TextDataset`) hands the trainer int64
token rows ``(N, L)`` right-padded with [PAD]; a :class:`TextMethod` trains a
:class:`engine.text_encoder.TextEncoder` on them. Nothing is augmented by the trainer
(``train_augment`` is None: each method makes its own corruption, mask or dropout noise
inside ``training_step``), the evaluation input is the token rows themselves, and the
feature every protocol reads is the mean of the encoder's states over each row's real
tokens (:func:`engine.text_encoder.mean_pool`).

The vocabulary is the data's: ``data.tokenizer = "byte"`` has
:class:`~engine.data.tokens.ByteTokenizer`'s 260 ids (4 specials + 256 bytes);
``"bpe"`` has exactly ``data.bpe_vocab_size`` ids, the 4 specials included, so the
encoder built from a config fits the tokenizer its data source trains from the same
config (:func:`vocab_size`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from engine.config import Config, DataConfig, MethodConfig, param
from engine.data.tokens import PAD, SPECIALS, ByteTokenizer, Tokenizer
from engine.errors import ConfigError
from engine.methods._base import SSLMethod, StepOutput
from engine.text_encoder import POSITIONS, TextEncoder, mean_pool

if TYPE_CHECKING:
    from engine.augment import ViewAugment
    from engine.data.source import Inputs

#: the backbone name text runs record (checkpoints, run summaries)
BACKBONE_NAME = "text_transformer"
#: held-out rows scored per forward pass (bounds the memory of ``heldout_metrics``)
HELDOUT_CHUNK = 128
#: the first id that is a real token (after [PAD], [MASK], [CLS], [SEP])
FIRST_REAL = len(SPECIALS)


def vocab_size(data: DataConfig) -> int:
    """The number of token ids the run's tokenizer produces: 260 for 'byte'
    (:class:`ByteTokenizer`), ``data.bpe_vocab_size`` for 'bpe' (the trained BPE's whole
    vocabulary, its 4 special tokens included)."""
    if data.tokenizer == "bpe":
        return int(data.bpe_vocab_size)
    return ByteTokenizer().vocab_size


@dataclass
class TextEncoderConfig(MethodConfig):
    """The text encoder's settings, shown in each text method's form (its config
    subclasses this one and adds its own fields after these)."""

    dim: int = param(
        128, "Encoder: token width, also the feature dimension (128 trains in minutes on a "
        "CPU; GPT-1 and BERT-base have 768).", min=16, max=2048, label="Width")
    depth: int = param(4, "Encoder: number of Transformer blocks (12 in GPT-1 and "
                       "BERT-base).", min=1, max=48)
    heads: int = param(4, "Encoder: attention heads per block (must divide the width).",
                       min=1, max=32)
    mlp_ratio: float = param(4.0, "Encoder: hidden width of each block's MLP, as a multiple "
                             "of the token width (4 in GPT and BERT).", min=0.5, max=8.0,
                             advanced=True, label="MLP ratio")
    dropout: float = param(0.1, "Encoder: dropout on the embeddings, the attention weights "
                           "and both residual branches (0.1 in GPT and BERT).", min=0.0,
                           max=0.9)
    positions: str = param(
        "learned", "Encoder: position embeddings, 'learned' (GPT, BERT) or the fixed "
        "'sinusoidal' ones of Vaswani et al. 2017.", choices=POSITIONS, advanced=True)

    def validate(self, cfg: Config) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"method.dim = {self.dim} is not divisible by method.heads = "
                              f"{self.heads}")
        if self.positions == "sinusoidal" and self.dim % 2:
            raise ConfigError(f"method.dim = {self.dim} must be even for sinusoidal "
                              "positions (sines and cosines in pairs)")


def draw(shape: tuple[int, ...], generator: torch.Generator, device: torch.device
         ) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, then moved to ``device``:
    the same draws whatever device the model is on."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def draw_ints(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator,
              device: torch.device) -> torch.Tensor:
    """Uniform integers in ``[low, high)``, drawn as :func:`draw`."""
    return torch.randint(low, high, shape, generator=generator,
                         device=generator.device).to(device)


class TextMethod(SSLMethod):
    """Base of the text methods: a :class:`TextEncoder` as the backbone.

    ``causal`` says how the encoder reads a row for :meth:`embed` (and the method's own
    loss): a language model's states are causal, each token's state sees only the tokens
    before it, so its pooled feature weights the start of a row more than its end.
    """

    backbone: TextEncoder
    causal: bool = False

    @classmethod
    def segment_embeddings(cls, cfg: Config) -> int:
        """How many segment embeddings the encoder needs (BERT's sentence A / B: 2)."""
        return 0

    @classmethod
    def make_backbone(cls, cfg: Config, device: torch.device) -> tuple[nn.Module, int, str]:
        """The encoder of ``cfg.method``'s encoder fields, with ``data.seq_len``
        positions and the tokenizer's vocabulary (:func:`vocab_size`)."""
        kwargs = cls.encoder_kwargs(cfg)
        return TextEncoder(**kwargs), int(kwargs["dim"]), BACKBONE_NAME

    @classmethod
    def encoder_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The :class:`TextEncoder` arguments of a run's config (exports record them, so
        the encoder rebuilds without the workbench's configs)."""
        m: TextEncoderConfig = cfg.method  # type: ignore[assignment]
        return {"vocab_size": vocab_size(cfg.data), "max_len": cfg.data.seq_len,
                "dim": m.dim, "depth": m.depth, "heads": m.heads, "mlp_ratio": m.mlp_ratio,
                "dropout": m.dropout, "positions": m.positions,
                "segments": cls.segment_embeddings(cfg)}

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        self.vocab_size = int(self.backbone.vocab_size)
        #: turns token ids back into text for previews; the source's (BPE) replaces it
        self.tokenizer: Tokenizer = ByteTokenizer()

    def attach_source(self, source: object) -> None:
        tok = getattr(source, "tokenizer", None)
        if tok is not None:
            self.tokenizer = tok

    def text(self, ids: torch.Tensor) -> str:
        """A row of ids as text (specials dropped)."""
        return self.tokenizer.decode(ids[ids != PAD].tolist())

    def show_tokens(self, ids: torch.Tensor, marked: torch.Tensor | None = None) -> str:
        """A row as a reader sees it, for the views panel: specials by name
        (``[MASK]``), padding dropped, and the ``marked`` positions in ⟦ ⟧."""
        out = []
        for pos, i in enumerate(ids.tolist()):
            if i == PAD:
                continue
            tok = self.tokenizer
            piece = tok.token_text(i) if i < FIRST_REAL else tok.decode([i])
            out.append(f"⟦{piece}⟧" if marked is not None and bool(marked[pos]) else piece)
        return "".join(out)

    def training_step(self, images: torch.Tensor, augment: Any,
                      generator: torch.Generator) -> StepOutput:
        """One step's loss from a batch of token rows ``(B, L)`` (``augment`` is None)."""
        raise NotImplementedError

    def train_augment(self) -> ViewAugment | None:
        return None  # each text method corrupts its rows itself

    def finetune_augment(self) -> ViewAugment | None:
        return None

    def eval_inputs(self, batch: Inputs, resolution: int) -> torch.Tensor:
        """The token rows unchanged (``resolution`` means nothing for text)."""
        assert isinstance(batch, torch.Tensor), "a text source's inputs are token rows"
        return batch.long()

    def states(self, ids: torch.Tensor) -> torch.Tensor:
        """The encoder's token states ``(B, L, D)`` of token rows, causal or not."""
        return self.backbone(ids, causal=self.causal)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the token states over each row's real tokens ``(B, D)``: what kNN,
        the collapse scores and exports read."""
        return mean_pool(self.states(x), x)

    @staticmethod
    def chunks(inputs: torch.Tensor) -> list[torch.Tensor]:
        """Held-out rows in pieces of :data:`HELDOUT_CHUNK` (bounded memory)."""
        return list(inputs.split(HELDOUT_CHUNK))
