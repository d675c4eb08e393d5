"""A byte-level BPE trained on the corpus (Hugging Face ``tokenizers``), optional.

Byte level underneath (GPT-2's scheme) means every text still encodes, nothing maps to an
unknown token, and decoding gives the text back exactly; merges learned on the corpus make
sequences several times shorter than bytes, so ``seq_len`` tokens hold more text. The
special tokens keep the ids of :mod:`engine.data.tokens` (PAD 0, MASK 1, CLS 2, SEP 3), and
text that happens to spell ``[MASK]`` is encoded as plain text, never as the special.

``tokenizers`` is an optional dependency (``pip install tokenizers``, or the ``text``
extra); it is imported only when a BPE is trained or reopened, and its absence is a
:class:`~engine.errors.ConfigError` naming the setting and the command.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from functools import cache as memoize
from pathlib import Path
from typing import IO, Any

import torch

from engine.data import cache
from engine.data.tokens import PAD, SPECIALS
from engine.errors import ConfigError

#: bump when training changes, so cached tokenizers of the old recipe are not served
BPE_VERSION = 1
_MIN_FREQUENCY = 2  # a merge must occur at least twice: no merges for one-off strings
_NAMES = {v: k for k, v in SPECIALS.items()}


def _hf() -> Any:
    """The ``tokenizers`` module, or a ConfigError saying how to get it."""
    try:
        return importlib.import_module("tokenizers")
    except ImportError as e:
        raise ConfigError(
            "data.tokenizer = 'bpe' needs the Hugging Face 'tokenizers' package, which is "
            "not installed: run `pip install tokenizers` (or `pip install "
            "'selfsup-workbench[text]'`), or set data.tokenizer = 'byte'"
        ) from e


def available() -> bool:
    """Whether a BPE can be trained here (``tokenizers`` imports)."""
    try:
        _hf()
    except ConfigError:
        return False
    return True


@memoize
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted: how byte-level tokens spell
    their bytes (the table ``tokenizers``' ByteLevel pre-tokenizer uses)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class BPETokenizer:
    """A trained byte-level BPE with the workbench's special ids; same methods as
    :class:`~engine.data.tokens.ByteTokenizer`."""

    kind = "bpe"

    def __init__(self, hf_tokenizer: Any) -> None:
        self._tok = hf_tokenizer
        # "[MASK]" in a document is text, not the mask token (tokenizers >= 0.15.1)
        if hasattr(hf_tokenizer, "encode_special_tokens"):
            hf_tokenizer.encode_special_tokens = True
        for name, i in SPECIALS.items():
            if hf_tokenizer.token_to_id(name) != i:
                raise ValueError(f"BPE vocabulary has {name} at "
                                 f"{hf_tokenizer.token_to_id(name)}, not {i}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """Learn ``vocab_size`` tokens (specials and the 256 bytes included) from ``texts``."""
        hf = _hf()
        tok = hf.Tokenizer(hf.models.BPE())
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=_MIN_FREQUENCY,
            special_tokens=list(SPECIALS),  # in id order: they take ids 0-3
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> BPETokenizer:
        """A tokenizer from ``tokenizers``' own JSON serialisation."""
        return cls(_hf().Tokenizer.from_str(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPETokenizer:
        """The tokenizer :meth:`to_dict` described."""
        return cls.from_json(json.dumps(d["tokenizers"]))

    def to_json(self) -> str:
        return str(self._tok.to_str())

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """:meth:`encode` of many texts at once (in parallel threads)."""
        return [list(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int] | torch.Tensor, specials: bool = False) -> str:
        """The text of ``ids``; special tokens are dropped, or shown as ``[MASK]`` etc.
        with ``specials``; ids outside the vocabulary likewise (as ``[id]``)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        n = self.vocab_size
        out: list[str] = []
        run: list[int] = []
        for i in ids:
            if len(SPECIALS) <= i < n:
                run.append(i)
                continue
            if run:
                out.append(self._tok.decode(run, skip_special_tokens=False))
                run = []
            if specials and i != PAD:
                out.append(_NAMES.get(i, f"[{i}]"))
        if run:
            out.append(self._tok.decode(run, skip_special_tokens=False))
        return "".join(out)

    def token_text(self, i: int) -> str:
        """One token as a reader sees it: ``␣the``, ``\\n``; bytes that are part of a
        character show as ``<xNN>``."""
        if i < len(SPECIALS):
            return _NAMES.get(i, f"[{i}]")
        piece = self._tok.id_to_token(i)
        if piece is None:
            return f"[{i}]"
        table = _byte_of_char()
        raw = bytes(table.get(c, 63) for c in piece)  # 63: "?" for a non-byte-level piece
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "".join(chr(b) if 32 < b < 127 else
                           {32: "␣", 10: "\\n", 9: "\\t"}.get(b, f"<x{b:02X}>") for b in raw)
        return text.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t")

    def to_dict(self) -> dict[str, Any]:
        """Self-contained: the whole vocabulary and merges (``tokenizers``' JSON)."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "specials": SPECIALS,
                "tokenizers": json.loads(self.to_json())}


def trained(texts: list[str], vocab_size: int, *, identity: tuple[Any, ...],
            cache_dir: str | Path | None, use_cache: bool = True) -> BPETokenizer:
    """The BPE of ``texts``: from the cache when these exact texts were trained on before
    at this vocabulary size, else trained now (and cached). ``identity`` names the corpus
    (a folder path), so retraining after an edit replaces the old entry."""
    _hf()  # the ConfigError first, before any work
    if not use_cache:
        return BPETokenizer.train(texts, vocab_size)
    entry = cache.entry_path(
        cache_dir if cache_dir is not None else cache.default_cache_dir(),
        stem="bpe",
        group=("bpe", *identity, vocab_size, BPE_VERSION),
        detail=cache.digest(texts),
    ).with_suffix(".json")
    try:
        return BPETokenizer.from_json(entry.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - missing or unreadable entry: train again
        pass
    tok = BPETokenizer.train(texts, vocab_size)
    data = tok.to_json().encode("utf-8")

    def save(f: IO[bytes]) -> None:
        f.write(data)

    cache.write_file(entry, save)
    return tok
