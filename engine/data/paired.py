"""Paired image-text data for image-text methods (CLIP): images with their captions.

A :class:`PairedDataset` is a dataset source (:class:`engine.data.DataSource`) whose
``inputs`` is a :class:`Pairs`: the images (uint8 ``(N, 3, R, R)``) and their captions'
token rows (int64 ``(N, L)``, right-padded with :data:`~engine.data.tokens.PAD`) side by
side. ``Pairs`` answers every operation the trainer, the monitor and evaluation do on
``inputs`` (indexing by index tensors and slices, ``.to``, ``pin_memory``,
``tensor_split``, ``shape[0]``, ``numel() * element_size()`` as its bytes), so they cut,
move and split batches of pairs without knowing there are two tensors; only the methods
look inside (``batch.images``, ``batch.tokens``).

:func:`load_paired` reads the built-in shapes with their generated captions
(:mod:`engine.data.captions`) or a captioned image folder
(:mod:`engine.data.captioned`); other data are refused with what is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from engine.config import DataConfig
from engine.data.builtin import BUILTIN_DATASETS, load_shapes
from engine.data.captioned import WHAT_IS_LOOKED_FOR, folder_has_captions, load_captioned_folder
from engine.data.dataset import ImageDataset, check_labels, summary_line, thumbnails_of
from engine.data.text import TextSettings, make_tokenizer
from engine.data.tokens import PAD, Tokenizer
from engine.errors import DatasetError

#: the kind of data a PairedDataset is (a method's modality for image-text methods)
PAIRED_MODALITY = "paired"
ACCEPTED = ("'shapes' (the built-in shapes, captioned from how each was drawn) or an image "
            f"folder with captions: {WHAT_IS_LOOKED_FOR}")

Progress = Callable[[int, int], None]
Index = torch.Tensor | slice | Sequence[int]


class Pairs:
    """Images and their token rows, indexed together: what a batch of pairs is cut from.

    Behaves like the one tensor a source's ``inputs`` usually is wherever the engine
    handles ``inputs`` without looking inside; ``numel()`` counts bytes (and
    ``element_size()`` is 1) so ``numel() * element_size()`` is the memory of both.
    """

    __slots__ = ("images", "tokens")

    def __init__(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        if images.dim() != 4:
            raise ValueError(f"pair images must be (N, 3, R, R), got {tuple(images.shape)}")
        if tokens.dim() != 2:
            raise ValueError(f"pair tokens must be (N, L), got {tuple(tokens.shape)}")
        if images.shape[0] != tokens.shape[0]:
            raise ValueError(f"{images.shape[0]} images and {tokens.shape[0]} token rows")
        self.images = images
        self.tokens = tokens

    # --- what a tensor of items answers
    @property
    def shape(self) -> torch.Size:
        """The images' shape: ``shape[0]`` is the number of pairs."""
        return self.images.shape

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, idx: Index) -> Pairs:
        """The pairs at ``idx``: an index or bool tensor (on any device), a slice or a list.
        A plain int is refused: a Pairs is always a batch."""
        if isinstance(idx, int | bool) or (isinstance(idx, torch.Tensor) and idx.dim() == 0):
            raise TypeError("index a Pairs with a slice or an index tensor (it is a batch; "
                            "use pairs[i : i + 1] for one pair)")
        if isinstance(idx, torch.Tensor):
            return Pairs(self.images[idx.to(self.images.device)],
                         self.tokens[idx.to(self.tokens.device)])
        return Pairs(self.images[idx], self.tokens[idx])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def is_cuda(self) -> bool:
        return self.images.is_cuda

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Pairs:
        return Pairs(self.images.to(device, non_blocking=non_blocking),
                     self.tokens.to(device, non_blocking=non_blocking))

    def cpu(self) -> Pairs:
        return self.to("cpu")

    def pin_memory(self) -> Pairs:
        return Pairs(self.images.pin_memory(), self.tokens.pin_memory())

    def is_pinned(self) -> bool:
        return self.images.is_pinned() and self.tokens.is_pinned()

    def contiguous(self) -> Pairs:
        return Pairs(self.images.contiguous(), self.tokens.contiguous())

    def numel(self) -> int:
        """Bytes of both tensors (see the class docstring)."""
        return (self.images.numel() * self.images.element_size()
                + self.tokens.numel() * self.tokens.element_size())

    def element_size(self) -> int:
        return 1

    def tensor_split(self, sections: int | Sequence[int]) -> list[Pairs]:
        """As ``torch.tensor_split`` along the first dimension (ranks' shares)."""
        return [Pairs(i, t) for i, t in zip(self.images.tensor_split(sections),
                                           self.tokens.tensor_split(sections), strict=True)]

    def split(self, size: int | Sequence[int]) -> list[Pairs]:
        """As ``torch.split`` along the first dimension (chunks of ``size``)."""
        return [Pairs(i, t) for i, t in zip(self.images.split(size),
                                           self.tokens.split(size), strict=True)]

    @staticmethod
    def cat(parts: Sequence[Pairs]) -> Pairs:
        """The pairs of ``parts`` one after another (token rows must have one length)."""
        return Pairs(torch.cat([p.images for p in parts]), torch.cat([p.tokens for p in parts]))

    def __repr__(self) -> str:
        return (f"Pairs(images={tuple(self.images.shape)} {self.images.dtype}, "
                f"tokens={tuple(self.tokens.shape)} {self.tokens.dtype}, device={self.device})")


def tokenize(captions: Sequence[str], tokenizer: Tokenizer, seq_len: int
             ) -> tuple[torch.Tensor, int]:
    """int64 ``(N, seq_len)`` rows of the captions' tokens, right-padded with PAD, and how
    many captions were longer and cut to ``seq_len``."""
    batch = getattr(tokenizer, "encode_batch", None)
    ids = list(batch(list(captions))) if batch is not None and captions else [
        tokenizer.encode(c) for c in captions]
    lens = np.array([min(len(r), seq_len) for r in ids], dtype=np.int64)
    flat = np.fromiter(chain.from_iterable(r[:seq_len] for r in ids), dtype=np.int64,
                       count=int(lens.sum()))
    out = np.full((len(ids), seq_len), PAD, dtype=np.int64)
    out[np.arange(seq_len)[None, :] < lens[:, None]] = flat  # row-major: row by row
    return torch.from_numpy(out), sum(len(r) > seq_len for r in ids)


@dataclass(eq=False)  # tensors have no single truth value, so compare by identity
class PairedDataset:
    """Images with one caption each, tokenised: the paired image-text data source."""

    name: str
    images: torch.Tensor  # (N, 3, R, R) uint8 (possibly the memory-mapped cache entry)
    tokens: torch.Tensor  # (N, L) int64, PAD-padded on the right
    captions: list[str]
    labels: torch.Tensor | None  # shape classes, subfolder labels, or None
    class_names: list[str]
    files: list[str]
    tokenizer: Tokenizer
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False
    #: (file, what happened) for captions read with a caveat: not UTF-8, truncated, ...
    notes: list[tuple[str, str]] = field(default_factory=list)
    cut: int = 0  # captions longer than seq_len tokens, cut to it

    def __post_init__(self) -> None:
        Pairs(self.images, self.tokens)  # the shape checks
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.tokens.dtype != torch.int64:
            raise ValueError("paired data needs uint8 images and int64 tokens")
        if len(self.captions) != n or len(self.files) != n:
            raise ValueError(f"{len(self.captions)} captions and {len(self.files)} names "
                             f"for {n} images")
        check_labels(self.labels, self.class_names, n)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def inputs(self) -> Pairs:
        """What a batch is cut from: images and token rows together."""
        return Pairs(self.images, self.tokens)

    @property
    def resolution(self) -> int:
        """The images' side in pixels."""
        return int(self.images.shape[-1])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def modality(self) -> str:
        return PAIRED_MODALITY

    @property
    def texts(self) -> list[str]:
        """Each pair's text (exports write it beside the embedding)."""
        return self.captions

    def class_counts(self) -> list[int]:
        if self.labels is None:
            return []
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def thumbnails(self, indices: torch.Tensor, size: int = 64) -> torch.Tensor | None:
        return thumbnails_of(self.images, indices, size)

    def sample_texts(self, indices: torch.Tensor, limit: int = 300) -> list[str]:
        """The captions of some pairs, cut to ``limit`` characters (hover, exports)."""
        out = []
        for i in indices.tolist():
            t = self.captions[i]
            out.append(t if len(t) <= limit else t[: limit - 1] + "…")
        return out

    def summary(self) -> str:
        """One line, e.g. '6000 captioned images, 6 classes (circle 1000, ...)'."""
        n = len(self)
        extra = [f"captions up to {self.seq_len} tokens"]
        if self.cut:
            extra.append(f"{self.cut} longer cut to {self.seq_len}")
        if self.notes:
            extra.append(f"{len(self.notes)} note{'s' if len(self.notes) != 1 else ''}")
        return summary_line(f"{n} captioned image{'s' if n != 1 else ''}",
                            self.labels is not None, self.class_names, self.class_counts(),
                            len(self.skipped), tuple(extra))


def paired_from_images(ds: ImageDataset, tokenizer: Tokenizer, seq_len: int,
                       notes: list[tuple[str, str]] | None = None) -> PairedDataset:
    """The pairs of an image set that has captions."""
    if ds.captions is None:
        raise DatasetError(f"{ds.name} has no captions: CLIP needs captioned images, "
                           f"{ACCEPTED}")
    tokens, cut = tokenize(ds.captions, tokenizer, seq_len)
    return PairedDataset(name=ds.name, images=ds.images, tokens=tokens,
                         captions=list(ds.captions), labels=ds.labels,
                         class_names=list(ds.class_names), files=list(ds.files),
                         tokenizer=tokenizer, skipped=list(ds.skipped),
                         from_cache=ds.from_cache, notes=list(notes or []), cut=cut)


def has_captions(source: str) -> bool:
    """Whether ``source`` (a dataset name or folder path) would load as paired data, from
    names and a scan only: the shapes always; a folder with a captions.csv or any image
    with a caption file beside it."""
    name = source.strip()
    if name == "shapes":
        return True
    if not name or name in BUILTIN_DATASETS:
        return False
    try:
        root = Path(os.path.abspath(Path(name).expanduser()))
        return root.is_dir() and folder_has_captions(root)
    except OSError:
        return False


def load_paired(data: DataConfig, cache_dir: str | Path | None = None,
                progress: Progress | None = None) -> PairedDataset:
    """The paired data a run's ``[data]`` section describes: captioned shapes or a
    captioned folder, captions tokenised to rows of ``data.seq_len`` with
    ``data.tokenizer`` (a BPE is trained on the captions). Anything else raises
    :class:`DatasetError` saying what CLIP accepts."""
    settings = TextSettings(seq_len=data.seq_len, tokenizer=data.tokenizer,
                            bpe_vocab_size=data.bpe_vocab_size, seed=data.seed)
    settings.validate()
    name = data.dataset.strip()
    if not name:
        raise DatasetError(f"no dataset given: CLIP needs captioned images, {ACCEPTED}")
    notes: list[tuple[str, str]] = []
    if name == "shapes":
        ds = load_shapes(data.shapes_count, data.resolution, data.seed,
                         data.shapes_orientation, cache_dir, data.disk_cache, progress)
        identity: tuple[object, ...] = ("paired", "shapes", data.shapes_count, data.seed,
                                        data.shapes_orientation)
    elif name in BUILTIN_DATASETS:
        kind = "text" if name == "pydocs" else "images without captions"
        raise DatasetError(f"{name!r} is {kind}: CLIP needs captioned images, {ACCEPTED}")
    else:
        root = Path(os.path.abspath(Path(data.dataset).expanduser()))
        try:
            ds, notes = load_captioned_folder(data.dataset, data.resolution,
                                              cache_dir=cache_dir, use_cache=data.disk_cache,
                                              progress=progress)
        except DatasetError as e:
            said = WHAT_IS_LOOKED_FOR in str(e)
            raise DatasetError(f"CLIP needs captioned images: {e}"
                               + ("" if said else f"; accepted: {ACCEPTED}")) from e
        identity = ("paired", "folder", str(root))
    tokenizer = make_tokenizer(settings, list(ds.captions or []), identity=identity,
                               cache_dir=cache_dir, use_cache=data.disk_cache)
    return paired_from_images(ds, tokenizer, data.seq_len, notes)
