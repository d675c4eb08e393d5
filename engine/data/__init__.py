"""Datasets: built-in sets and image folders, decoded once into one uint8 tensor.

Decoding up front (and caching the result on disk) keeps data loading out of the training
loop entirely, which is what makes small-scale SSL on a laptop CPU fast. A cached set's
tensor is the memory-mapped cache file, so a set larger than memory still trains, and the
processes of one run share its pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.config import DataConfig
from engine.data import cache
from engine.data.builtin import (
    BUILTIN_DATASETS,
    SHAPE_ORIENTATIONS,
    SHAPES_VERSION,
    load_digits,
    make_shapes,
)
from engine.data.dataset import ImageDataset
from engine.data.folders import load_folder
from engine.data.source import DataSource
from engine.errors import DatasetError

__all__ = [
    "BUILTIN_DATASETS",
    "DataSource",
    "SHAPE_ORIENTATIONS",
    "ImageDataset",
    "load_configured",
    "load_dataset",
]


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
) -> ImageDataset:
    """Load a built-in dataset by name ("shapes", "digits") or an image folder by path.

    A built-in name wins over a folder of the same name in the working directory (pass
    "./shapes" for the folder); ``shapes_count``, ``seed`` and ``shapes_orientation``
    describe the generated shapes set. ``cache_dir`` defaults to the per-user cache folder;
    ``use_cache=False`` neither reads nor writes it. ``progress(done, total)`` is called
    from the calling thread while images are decoded or generated; it may raise to abort.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    name = source.strip()
    if not name:
        raise DatasetError("no dataset given: choose 'shapes', 'digits' or an image folder")
    if name == "digits":
        ds = load_digits(resolution)
        if progress is not None:
            progress(len(ds), len(ds))
        return ds
    if name == "shapes":
        return _load_shapes(shapes_count, resolution, seed, shapes_orientation, cache_dir,
                            use_cache, progress)
    return load_folder(
        source, resolution, cache_dir=cache_dir, use_cache=use_cache, progress=progress
    )


def load_configured(
    data: DataConfig,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImageDataset:
    """The dataset a run's ``[data]`` section describes."""
    return load_dataset(
        data.dataset,
        data.resolution,
        shapes_count=data.shapes_count,
        seed=data.seed,
        shapes_orientation=data.shapes_orientation,
        cache_dir=cache_dir,
        progress=progress,
        use_cache=data.disk_cache,
    )


def _load_shapes(
    count: int,
    resolution: int,
    seed: int,
    orientation: str,
    cache_dir: str | Path | None,
    use_cache: bool,
    progress: Callable[[int, int], None] | None,
) -> ImageDataset:
    if not use_cache:
        return make_shapes(count, resolution, seed, progress, orientation)
    entry = cache.entry_path(
        cache_dir if cache_dir is not None else cache.default_cache_dir(),
        stem="shapes",
        group=("shapes", count, seed, resolution, orientation, SHAPES_VERSION),
        detail="0" * 16,
    )
    hit = cache.read(entry, "shapes", resolution)
    if hit is None:
        try:
            with cache.locked(entry, progress, count):
                hit = cache.read(entry, "shapes", resolution)  # made while this one waited
                if hit is None:
                    ds = make_shapes(count, resolution, seed, progress, orientation)
                    if cache.write(entry, ds):
                        # serve the mapped copy, as every other process will: its pages
                        # are shared, the generated array is freed
                        mapped = cache.read(entry, "shapes", resolution)
                        if mapped is not None:
                            return replace(mapped, from_cache=False)
                    return ds
        except cache.CacheUnavailable:
            return make_shapes(count, resolution, seed, progress, orientation)
    if progress is not None:
        progress(len(hit), len(hit))
    return hit
