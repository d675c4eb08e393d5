"""Text as token ids: the byte-level tokenizer every text run can use, and the text source.

Byte level (each UTF-8 byte is a token, after the four special tokens) needs nothing to
download or train, encodes any text, and makes bits per token bits per byte, which for
mostly-ASCII text is bits per character: the unit language-model papers report on
character-level benchmarks. A tokenizer describes itself (:meth:`ByteTokenizer.to_dict`)
so a run folder stores its vocabulary and reopens on its own.

The contract every text source meets (docs/ARCHITECTURE.md, section 2): ``inputs`` is an
int64 ``(N, L)`` tensor of token ids, right-padded with :data:`PAD`, every row holding at
least two real tokens; methods for text read nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from engine.data.dataset import check_labels

#: special token ids, the same for every tokenizer of the workbench
PAD, MASK, CLS, SEP = 0, 1, 2, 3
SPECIALS = {"[PAD]": PAD, "[MASK]": MASK, "[CLS]": CLS, "[SEP]": SEP}


class Tokenizer(Protocol):
    """What every tokenizer of the workbench offers (:class:`ByteTokenizer`, and the
    trained byte-level BPE of :mod:`engine.data.bpe`); all keep the ids of
    :data:`SPECIALS`."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int] | torch.Tensor, specials: bool = False) -> str: ...

    def token_text(self, i: int) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens ``4 + byte``; the specials take ids 0-3."""

    kind = "byte"
    offset = len(SPECIALS)

    @property
    def vocab_size(self) -> int:
        return self.offset + 256

    def encode(self, text: str) -> list[int]:
        return [self.offset + b for b in text.encode("utf-8", "surrogatepass")]

    def decode(self, ids: list[int] | torch.Tensor, specials: bool = False) -> str:
        """The text of ``ids``; special tokens are dropped, or shown as ``[MASK]`` etc.
        with ``specials``. Bytes that do not form UTF-8 show as U+FFFD."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        names = {v: k for k, v in SPECIALS.items()}
        out, run = [], bytearray()
        for i in ids:
            if i >= self.offset:
                run.append(i - self.offset)
                continue
            if run:
                out.append(run.decode("utf-8", "replace"))
                run = bytearray()
            if specials and i != PAD:
                out.append(names.get(i, f"[{i}]"))
        if run:
            out.append(run.decode("utf-8", "replace"))
        return "".join(out)

    def token_text(self, i: int) -> str:
        """One token as a reader sees it (a byte of a multi-byte character shows as
        ``<xNN>``)."""
        if i < self.offset:
            return {v: k for k, v in SPECIALS.items()}.get(i, f"[{i}]")
        b = i - self.offset
        return chr(b) if 32 <= b < 127 else {10: "\\n", 9: "\\t", 32: "␣"}.get(b, f"<x{b:02X}>")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "specials": SPECIALS}


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """The tokenizer a run folder stored (``tokenizer.json``). A BPE needs the
    ``tokenizers`` package (:class:`engine.errors.ConfigError` saying so without it)."""
    kind = d.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        from engine.data.bpe import BPETokenizer

        return BPETokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def unigram_entropy_bits(inputs: torch.Tensor, vocab_size: int) -> float:
    """Entropy in bits per token of the corpus's token frequencies (padding excluded):
    what a model that ignores all context can reach at best, the line a language model's
    held-out bits per token must fall below to have learned anything from context."""
    ids = inputs[inputs != PAD]
    if ids.numel() == 0:
        return 0.0
    p = torch.bincount(ids, minlength=vocab_size).double()
    p = p[p > 0] / ids.numel()
    return float(-(p * p.log2()).sum())


@dataclass(eq=False)
class TextDataset:
    """Tokenised text samples with optional labels: the text data source.

    ``inputs`` trains; ``heldout`` (the same layout, or None) is never trained on and is
    where language models measure bits per token. ``texts`` holds each training sample's
    text (hover previews, exports), ``files`` its display name (``path`` or
    ``path#paragraph``).
    """

    name: str
    inputs: torch.Tensor  # (N, L) int64, PAD-padded on the right
    labels: torch.Tensor | None
    class_names: list[str]
    files: list[str]
    texts: list[str]
    tokenizer: Tokenizer
    skipped: list[tuple[str, str]] = field(default_factory=list)
    heldout: torch.Tensor | None = None
    sample: str = "document"  # how a sample was cut: "document", "paragraph", "window"
    from_cache: bool = False
    #: (file, what happened) for files read with a caveat: truncated, not UTF-8, ...
    notes: list[tuple[str, str]] = field(default_factory=list)
    cut: int = 0  # samples (training and held out) longer than seq_len, cut to it

    def __post_init__(self) -> None:
        x = self.inputs
        if x.dim() != 2 or x.dtype != torch.int64:
            raise ValueError(f"text inputs must be int64 (N, L), got {x.dtype} "
                             f"{tuple(x.shape)}")
        n = x.shape[0]
        if len(self.files) != n or len(self.texts) != n:
            raise ValueError(f"{len(self.files)} names and {len(self.texts)} texts for {n} "
                             "samples")
        if n and int((x != PAD).sum(1).min()) < 2:
            raise ValueError("every text sample needs at least two tokens")
        check_labels(self.labels, self.class_names, n)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def resolution(self) -> int:
        """The sequence length (the data contract's 'natural size')."""
        return int(self.inputs.shape[1])

    @property
    def modality(self) -> str:
        return "text"

    def class_counts(self) -> list[int]:
        if self.labels is None:
            return []
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def thumbnails(self, indices: torch.Tensor) -> torch.Tensor | None:
        return None  # text has no pictures; hover shows :meth:`sample_texts`

    def sample_texts(self, indices: torch.Tensor, limit: int = 300) -> list[str]:
        """The texts of some samples, cut to ``limit`` characters, for hover and exports."""
        out = []
        for i in indices.tolist():
            t = self.texts[i]
            out.append(t if len(t) <= limit else t[: limit - 1] + "…")
        return out

    @property
    def unigram_bits(self) -> float:
        """Bits per token of the training split's unigram distribution."""
        return unigram_entropy_bits(self.inputs, self.tokenizer.vocab_size)

    def summary(self) -> str:
        n, k = len(self), len(self.class_names)
        parts = [f"{n} text sample{'s' if n != 1 else ''} ({self.sample}s, up to "
                 f"{self.resolution} tokens)"]
        parts.append(f"{k} class{'es' if k != 1 else ''}" if self.labels is not None
                     else "no labels")
        if self.heldout is not None:
            parts.append(f"{self.heldout.shape[0]} held out")
        if self.cut:
            parts.append(f"{self.cut} longer cut to {self.resolution} tokens")
        if self.skipped:
            parts.append(f"{len(self.skipped)} file{'s' if len(self.skipped) != 1 else ''} "
                         "skipped")
        if self.notes:
            parts.append(f"{len(self.notes)} note{'s' if len(self.notes) != 1 else ''}")
        return ", ".join(parts)


def bits(nats: float) -> float:
    """A cross-entropy in nats as bits."""
    return nats / math.log(2)
