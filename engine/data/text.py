"""Text datasets from documents: samples, tokens, the held-out split and the disk cache.

Every text source (a folder of ``.txt`` / ``.md`` files, the built-in ``pydocs`` corpus)
reads its documents and hands them to :func:`build`, which makes the
:class:`~engine.data.tokens.TextDataset` the same way for all:

- a sample is a whole document, a paragraph (blocks separated by blank lines) or a
  window of ``seq_len`` tokens (consecutive, not overlapping, never crossing documents);
- documents and paragraphs shorter than :data:`MIN_CHARS` characters or
  :data:`MIN_TOKENS` tokens are dropped, longer ones keep their first ``seq_len`` tokens
  (counted in ``TextDataset.cut``); a trailing window is kept if it has two tokens and
  :data:`MIN_CHARS` characters;
- a BPE tokenizer is trained on all documents before the split (the held-out samples'
  text shapes the vocabulary, not the model), the byte tokenizer needs nothing;
- :func:`heldout_split` sets aside ``heldout_fraction`` of the samples, per class where
  there are labels, drawn with a generator seeded from ``data.seed``.

The tokenised result is cached as one small compressed ``.npz`` per dataset and settings
(:func:`load_cached`), next to the image entries and named the same way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from engine.config import DataConfig
from engine.data import cache
from engine.data.folders import labels_from_keys
from engine.data.tokens import PAD, ByteTokenizer, TextDataset, Tokenizer, tokenizer_from_dict
from engine.errors import ConfigError, DatasetError

#: bump when reading, sampling or the entry format changes (cached entries are rebuilt)
TEXT_VERSION = 1
MIN_CHARS = 16  # shorter documents, paragraphs and trailing windows are not samples
MIN_TOKENS = 2  # the data contract: every row holds at least two real tokens
SAMPLE_MODES = ("document", "paragraph", "window")
TOKENIZERS = ("byte", "bpe")
HELDOUT_SEED = 0x4E1D  # mixed with data.seed: the split's own stream, not the run's

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TextSettings:
    """The ``[data]`` fields that shape a text dataset (defaults: :class:`DataConfig`'s)."""

    sample: str = DataConfig.text_sample
    seq_len: int = DataConfig.seq_len
    tokenizer: str = DataConfig.tokenizer
    bpe_vocab_size: int = DataConfig.bpe_vocab_size
    heldout_fraction: float = DataConfig.heldout_fraction
    seed: int = DataConfig.seed

    def validate(self) -> None:
        """ConfigError naming the field, for callers that bypass the config's checks."""
        if self.sample not in SAMPLE_MODES:
            raise ConfigError(f"data.text_sample must be one of {', '.join(SAMPLE_MODES)}, "
                              f"got {self.sample!r}")
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"data.tokenizer must be one of {', '.join(TOKENIZERS)}, got "
                              f"{self.tokenizer!r}")
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) \
                or self.seq_len < MIN_TOKENS:
            raise ConfigError(f"data.seq_len must be an int of at least {MIN_TOKENS}, got "
                              f"{self.seq_len!r}")
        if self.tokenizer == "bpe" and self.bpe_vocab_size < 300:
            raise ConfigError("data.bpe_vocab_size must be at least 300 (the 256 bytes, "
                              f"the specials and some merges), got {self.bpe_vocab_size}")
        if not 0.0 <= self.heldout_fraction <= 0.5:
            raise ConfigError("data.heldout_fraction must be between 0 and 0.5, got "
                              f"{self.heldout_fraction}")

    def key(self) -> tuple[Any, ...]:
        """What a cache entry depends on (the BPE size only where a BPE is used)."""
        vocab = self.bpe_vocab_size if self.tokenizer == "bpe" else 0
        return (self.sample, self.seq_len, self.tokenizer, vocab,
                float(self.heldout_fraction), self.seed)


@dataclass(frozen=True)
class Document:
    """One document as read: a file's text, or one docstring."""

    name: str  # display name: a relative path, or "path:qualname"
    text: str
    label: str  # its class; engine.data.folders.ROOT_CLASS when it has none
    source: str = ""  # the file named in ``skipped`` if it gives no sample ("" for none)


# --------------------------------------------------------------------------- building


def make_tokenizer(settings: TextSettings, texts: list[str], *, identity: tuple[Any, ...],
                   cache_dir: str | Path | None, use_cache: bool) -> Tokenizer:
    """The byte tokenizer, or the BPE trained on ``texts`` (cached)."""
    if settings.tokenizer == "bpe":
        from engine.data import bpe

        return bpe.trained(texts, settings.bpe_vocab_size, identity=identity,
                           cache_dir=cache_dir, use_cache=use_cache)
    return ByteTokenizer()


def _encode_all(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    batch = getattr(tok, "encode_batch", None)
    if batch is not None and texts:
        return list(batch(texts))
    return [tok.encode(t) for t in texts]


def _pieces(doc: Document, sample: str) -> list[tuple[str, str]]:
    """(name suffix, text) of a document's candidate samples (document/paragraph modes)."""
    if sample == "document":
        return [("", doc.text.strip())]
    return [(f"#p{i + 1}", p.strip()) for i, p in enumerate(_PARAGRAPH_BREAK.split(doc.text))]


def build(
    name: str,
    docs: Sequence[Document],
    settings: TextSettings,
    *,
    skipped: Sequence[tuple[str, str]] = (),
    notes: Sequence[tuple[str, str]] = (),
    identity: tuple[Any, ...] = (),
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    nothing: Callable[[list[tuple[str, str]]], str] | None = None,
) -> TextDataset:
    """The dataset of ``docs`` under ``settings`` (see the module docstring).

    ``skipped`` and ``notes`` are the reader's reports (a document's ``source`` that gives
    no sample is added to ``skipped``); ``identity`` names the corpus for the BPE cache;
    ``nothing(skipped)`` gives the DatasetError's message when no sample is left.
    """
    settings.validate()
    L = settings.seq_len
    tok = make_tokenizer(settings, [d.text for d in docs], identity=identity,
                         cache_dir=cache_dir, use_cache=use_cache)
    rows: list[list[int]] = []
    keys: list[str] = []
    files: list[str] = []
    texts: list[str] = []
    cut = 0
    produced = [0] * len(docs)

    def add(d: int, suffix: str, ids: list[int], text: str) -> None:
        rows.append(ids)
        keys.append(docs[d].label)
        files.append(docs[d].name + suffix)
        texts.append(text)
        produced[d] += 1

    if settings.sample == "window":
        whole = [d.text.strip() for d in docs]
        long_enough = [i for i, t in enumerate(whole) if len(t) >= MIN_CHARS]
        encoded = _encode_all(tok, [whole[i] for i in long_enough])
        for d, ids in zip(long_enough, encoded, strict=True):
            for k, s in enumerate(range(0, len(ids), L)):
                w = ids[s:s + L]
                text = tok.decode(w)
                if len(w) >= MIN_TOKENS and (len(w) == L or len(text.strip()) >= MIN_CHARS):
                    add(d, f"#w{k + 1}", w, text)
    else:
        owners: list[tuple[int, str, str]] = []
        for d, doc in enumerate(docs):
            owners += [(d, suffix, t) for suffix, t in _pieces(doc, settings.sample)
                       if len(t) >= MIN_CHARS]
        encoded = _encode_all(tok, [t for _, _, t in owners])
        for (d, suffix, text), ids in zip(owners, encoded, strict=True):
            if len(ids) < MIN_TOKENS:
                continue
            if len(ids) > L:
                cut += 1
                ids = ids[:L]
                text = tok.decode(ids)
            add(d, suffix, ids, text)

    skipped = list(skipped)
    for d, doc in enumerate(docs):
        if doc.source and not produced[d]:
            n = len(doc.text.strip())
            skipped.append((doc.source, f"no text sample: too short ({n} character"
                            f"{'s' if n != 1 else ''}; a sample needs {MIN_CHARS})"))
    skipped.sort()
    if not rows:
        raise DatasetError(nothing(skipped) if nothing is not None else
                           f"{name}: no document gives a text sample of {MIN_CHARS} "
                           "characters")

    arr = np.full((len(rows), L), PAD, dtype=np.int64)
    for i, ids in enumerate(rows):
        arr[i, : len(ids)] = ids
    inputs = torch.from_numpy(arr)
    labels, class_names = labels_from_keys(keys)
    held = heldout_split(len(rows), labels, settings.heldout_fraction, settings.seed)
    heldout = None
    if held is not None:
        keep = torch.ones(len(rows), dtype=torch.bool)
        keep[held] = False
        heldout = inputs[held].contiguous()
        inputs = inputs[keep].contiguous()
        labels = None if labels is None else labels[keep]
        kept = keep.tolist()
        files = [f for f, k in zip(files, kept, strict=True) if k]
        texts = [t for t, k in zip(texts, kept, strict=True) if k]
    return TextDataset(
        name=name, inputs=inputs, labels=labels, class_names=class_names, files=files,
        texts=texts, tokenizer=tok, skipped=skipped, heldout=heldout,
        sample=settings.sample, notes=list(notes), cut=cut,
    )


def heldout_split(n: int, labels: torch.Tensor | None, fraction: float,
                  seed: int) -> torch.Tensor | None:
    """Sorted indices of the held-out samples: ``fraction`` of each class (of all samples
    without labels), rounded, every class keeping at least one training sample; drawn
    with a generator of its own seeded from ``seed``. None when nothing would be held out
    (fraction 0, or too few samples)."""
    if fraction <= 0 or n < 2:
        return None
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + HELDOUT_SEED) % 2**63)
    strata = [torch.arange(n)] if labels is None else [
        torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    held = []
    for idx in strata:
        k = min(math.floor(len(idx) * fraction + 0.5), len(idx) - 1)
        # one draw per stratum even when k is 0: each class's pick is independent of others
        perm = torch.randperm(len(idx), generator=g)
        if k > 0:
            held.append(idx[perm[:k]])
    if not held:
        return None
    out = torch.cat(held).sort().values
    return out if n - len(out) >= 2 else None


# --------------------------------------------------------------------------- cache


def _save(ds: TextDataset, f: IO[bytes]) -> None:
    meta = {
        "version": TEXT_VERSION,
        "class_names": ds.class_names, "files": ds.files, "texts": ds.texts,
        "skipped": [[p, r] for p, r in ds.skipped], "notes": [[p, r] for p, r in ds.notes],
        "sample": ds.sample, "cut": ds.cut, "tokenizer": ds.tokenizer.to_dict(),
    }
    arrays = {
        # ids fit in int32 (vocabularies are far below 2**31): half the file
        "inputs": ds.inputs.numpy().astype(np.int32),
        "meta": np.frombuffer(json.dumps(meta, separators=(",", ":")).encode("utf-8"),
                              dtype=np.uint8),
    }
    if ds.labels is not None:
        arrays["labels"] = ds.labels.numpy()
    if ds.heldout is not None:
        arrays["heldout"] = ds.heldout.numpy().astype(np.int32)
    np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def read_entry(path: Path, name: str, seq_len: int) -> TextDataset | None:
    """The cached dataset at ``path``, or None if missing, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("version") != TEXT_VERSION:
                return None
            inputs = torch.from_numpy(z["inputs"].astype(np.int64))
            labels = torch.from_numpy(z["labels"].astype(np.int64)) if "labels" in z.files \
                else None
            heldout = torch.from_numpy(z["heldout"].astype(np.int64)) \
                if "heldout" in z.files else None
        if inputs.dim() != 2 or inputs.shape[1] != seq_len:
            return None
        return TextDataset(
            name=name, inputs=inputs, labels=labels,
            class_names=[str(c) for c in meta["class_names"]],
            files=[str(f) for f in meta["files"]], texts=[str(t) for t in meta["texts"]],
            tokenizer=tokenizer_from_dict(meta["tokenizer"]),
            skipped=[(str(p), str(r)) for p, r in meta["skipped"]],
            heldout=heldout, sample=str(meta["sample"]),
            notes=[(str(p), str(r)) for p, r in meta["notes"]], cut=int(meta["cut"]),
            from_cache=True,
        )
    except Exception:  # noqa: BLE001 - any corruption means "rebuild", never a crash
        return None


def load_cached(
    make: Callable[[], TextDataset],
    *,
    name: str,
    stem: str,
    group: tuple[Any, ...],
    detail: str,
    settings: TextSettings,
    cache_dir: str | Path | None,
    use_cache: bool,
    progress: Progress | None,
    total: int,
) -> TextDataset:
    """``make()``'s dataset, from the cache entry of (``group``, settings, ``detail``) when
    there is one, else made and stored. ``group`` identifies the corpus, ``detail`` is the
    fingerprint of its files. The cache is a convenience: if it fails, ``make()`` alone."""
    settings.validate()
    if not use_cache:
        return make()
    entry = cache.entry_path(
        cache_dir if cache_dir is not None else cache.default_cache_dir(),
        stem=stem,
        group=("text", *group, *settings.key(), TEXT_VERSION),
        detail=detail,
    ).with_suffix(".npz")
    hit = read_entry(entry, name, settings.seq_len)
    if hit is None:
        try:
            with cache.locked(entry, progress, total):
                hit = read_entry(entry, name, settings.seq_len)  # made while this one waited
                if hit is None:
                    ds = make()
                    cache.write_file(entry, lambda f: _save(ds, f))
                    return ds
        except cache.CacheUnavailable:
            return make()
    if progress is not None:
        progress(total, total)
    return hit
