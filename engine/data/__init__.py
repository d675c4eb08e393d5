"""Datasets: built-in sets, image folders and text, each loaded once into one tensor.

Decoding up front (and caching the result on disk) keeps data loading out of the training
loop entirely, which is what makes small-scale SSL on a laptop CPU fast. A cached image
set's tensor is the memory-mapped cache file, so a set larger than memory still trains,
and the processes of one run share its pages. Text (the built-in ``pydocs`` corpus, a
folder of ``.txt`` / ``.md`` files) becomes a :class:`TextDataset` of token rows.

A folder holding both images and text files is an image folder (as it always was): it is
read as text only when it has no image at all. Its ``.txt`` files are read as captions
only by :func:`load_paired` (paired image-text data for CLIP), which image methods never
call; :func:`has_captions` tells whether a source has them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from engine.config import DataConfig
from engine.data.builtin import (
    BUILTIN_DATASETS,
    SHAPE_ORIENTATIONS,
    SHAPES_VERSION,  # noqa: F401 - re-exported, as before load_shapes moved
    load_digits,
    load_shapes,
    make_shapes,  # noqa: F401 - re-exported
)
from engine.data.dataset import ImageDataset
from engine.data.folders import IMAGE_EXTENSIONS, has_files, load_folder
from engine.data.paired import PAIRED_MODALITY, PairedDataset, Pairs, has_captions, load_paired
from engine.data.pydocs import load_pydocs
from engine.data.source import DataSource
from engine.data.text import TextSettings
from engine.data.text_folders import TEXT_EXTENSIONS, load_text_folder, scan_text
from engine.data.tokens import TextDataset
from engine.errors import DatasetError

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_MODALITY",
    "DataSource",
    "PAIRED_MODALITY",
    "SHAPE_ORIENTATIONS",
    "ImageDataset",
    "PairedDataset",
    "Pairs",
    "TextDataset",
    "TextSettings",
    "dataset_modality",
    "has_captions",
    "load_configured",
    "load_dataset",
    "load_paired",
]

#: the kind of data of each built-in dataset (engine.registry.MODALITIES)
BUILTIN_MODALITY = {"shapes": "image", "digits": "image", "pydocs": "text"}


def dataset_modality(source: str) -> str:
    """'image' or 'text': what ``source`` would load as, from names and a scan only
    (nothing is decoded; an image folder is told at its first image). A source that
    does not exist, or holds neither, says 'image' (loading it reports the problem)."""
    name = source.strip()
    if name in BUILTIN_MODALITY:
        return BUILTIN_MODALITY[name]
    try:
        root = Path(name).expanduser()
        if not name or not root.is_dir() or has_files(root, IMAGE_EXTENSIONS):
            return "image"
        return "text" if has_files(root, TEXT_EXTENSIONS) else "image"
    except OSError:
        return "image"


def load_dataset(
    source: str,
    resolution: int,
    *,
    shapes_count: int = DataConfig.shapes_count,  # the config's defaults, not copies
    seed: int = DataConfig.seed,
    shapes_orientation: str = DataConfig.shapes_orientation,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
    text_sample: str = DataConfig.text_sample,
    seq_len: int = DataConfig.seq_len,
    tokenizer: str = DataConfig.tokenizer,
    bpe_vocab_size: int = DataConfig.bpe_vocab_size,
    heldout_fraction: float = DataConfig.heldout_fraction,
) -> ImageDataset | TextDataset:
    """Load a built-in dataset by name ("shapes", "digits", "pydocs"), or a folder by path:
    an image folder, or a text folder when it has no images.

    A built-in name wins over a folder of the same name in the working directory (pass
    "./shapes" for the folder); ``shapes_count``, ``seed`` and ``shapes_orientation``
    describe the generated shapes set. Text takes ``text_sample``, ``seq_len``,
    ``tokenizer``, ``bpe_vocab_size`` and ``heldout_fraction`` (drawn with ``seed``), and
    ignores ``resolution``. ``cache_dir`` defaults to the per-user cache folder;
    ``use_cache=False`` neither reads nor writes it. ``progress(done, total)`` is called
    from the calling thread while images are decoded or generated or text files read; it
    may raise to abort.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    name = source.strip()
    if not name:
        raise DatasetError("no dataset given: choose 'shapes', 'digits', 'pydocs', or an "
                           "image or text folder")
    text = TextSettings(sample=text_sample, seq_len=seq_len, tokenizer=tokenizer,
                        bpe_vocab_size=bpe_vocab_size, heldout_fraction=heldout_fraction,
                        seed=seed)
    if name == "digits":
        ds = load_digits(resolution)
        if progress is not None:
            progress(len(ds), len(ds))
        return ds
    if name == "shapes":
        return load_shapes(shapes_count, resolution, seed, shapes_orientation, cache_dir,
                           use_cache, progress)
    if name == "pydocs":
        return load_pydocs(text, cache_dir=cache_dir, use_cache=use_cache, progress=progress)
    root = Path(os.path.abspath(Path(source).expanduser()))
    if root.is_dir() and not has_files(root, IMAGE_EXTENSIONS):  # stops at the first image
        texts = scan_text(root)
        exts = ", ".join(IMAGE_EXTENSIONS)
        no_images = f"no images found in {root} (looked for {exts}, in any letter case)"
        if not texts:
            raise DatasetError(f"{no_images}, and no text files "
                               f"({', '.join(TEXT_EXTENSIONS)})")
        return load_text_folder(source, text, cache_dir=cache_dir, use_cache=use_cache,
                                progress=progress, candidates=texts,
                                nothing_prefix=f"{no_images}; read as text, ")
    return load_folder(
        source, resolution, cache_dir=cache_dir, use_cache=use_cache, progress=progress
    )


def load_configured(
    data: DataConfig,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    modality: str = "image",
) -> ImageDataset | TextDataset | PairedDataset:
    """The dataset a run's ``[data]`` section describes, as a method of ``modality``
    reads it: image-text ("paired") methods get the images with their captions
    (:func:`load_paired`), the others what the source is."""
    if modality == PAIRED_MODALITY:
        return load_paired(data, cache_dir, progress)
    return load_dataset(
        data.dataset,
        data.resolution,
        shapes_count=data.shapes_count,
        seed=data.seed,
        shapes_orientation=data.shapes_orientation,
        cache_dir=cache_dir,
        progress=progress,
        use_cache=data.disk_cache,
        text_sample=data.text_sample,
        seq_len=data.seq_len,
        tokenizer=data.tokenizer,
        bpe_vocab_size=data.bpe_vocab_size,
        heldout_fraction=data.heldout_fraction,
    )
