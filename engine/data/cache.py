"""Disk cache of decoded datasets, so reopening a large image folder is instant.

An entry's file name is ``<stem>-<group>-<detail>.pt``: ``group`` hashes what identifies the
dataset (folder path, resolution, :data:`CACHE_VERSION`), ``detail`` hashes what can go
stale (the fingerprint of the files). Writing a fresh entry deletes the stale ones of the
same group, so editing a folder does not leave old copies piling up. The cache is a
convenience only: any problem reading or writing it falls back to decoding.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from engine.data.dataset import ImageDataset

# Bump whenever decoding or generation changes what ends up in the tensor.
CACHE_VERSION = 1

_STALE_TMP_SECONDS = 3600


def default_cache_dir() -> Path:
    """The per-user cache folder for decoded datasets."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("selfsup-workbench")) / "datasets"


def digest(parts: Iterable[Any]) -> str:
    """A stable hex hash of a sequence of plain values."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def entry_path(cache_dir: str | Path, stem: str, group: Iterable[Any], detail: str) -> Path:
    """Where the entry for ``group`` (with stale-able ``detail`` hash) lives."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:40] or "dataset"
    g = digest([*group, CACHE_VERSION])[:16]
    return Path(cache_dir) / f"{safe}-{g}-{detail[:16]}.pt"


def read(path: Path, name: str, resolution: int) -> ImageDataset | None:
    """The cached dataset at ``path``, or None; an unreadable entry is deleted."""
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("version") != CACHE_VERSION:
            raise ValueError("unknown cache format")
        images = d["images"]
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError("bad images")
        if images.shape[-1] != resolution:
            raise ValueError("wrong resolution")
        labels = d["labels"]
        if labels is not None and not isinstance(labels, torch.Tensor):
            raise ValueError("bad labels")
        class_names = [str(c) for c in d["class_names"]]
        files = [str(f) for f in d["files"]]
        skipped = [(str(p), str(r)) for p, r in d["skipped"]]
        return ImageDataset(
            name=name,
            images=images.contiguous(),
            labels=labels,
            class_names=class_names,
            files=files,
            skipped=skipped,
            from_cache=True,
        )
    except Exception:  # noqa: BLE001 - any corruption means "rebuild", never a crash
        _unlink(path)
        return None


def write(path: Path, ds: ImageDataset) -> bool:
    """Store ``ds`` atomically at ``path``; False (and no error) if the cache is unusable."""
    payload = {
        "version": CACHE_VERSION,
        "images": ds.images,
        "labels": ds.labels,
        "class_names": list(ds.class_names),
        "files": list(ds.files),
        "skipped": [[p, r] for p, r in ds.skipped],
    }
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
        tmp = None
    except Exception:  # noqa: BLE001 - read-only or full disk: just run without a cache
        if tmp is not None:
            _unlink(Path(tmp))
        return False
    _prune(path)
    return True


def _prune(path: Path) -> None:
    """Delete other entries of the same group and temp files left by killed writers."""
    group_prefix = path.name.rsplit("-", 1)[0] + "-"
    now = time.time()
    try:
        for other in path.parent.iterdir():
            if other == path:
                continue
            if other.name.startswith(group_prefix) and other.suffix == ".pt":
                _unlink(other)
            elif other.suffix == ".tmp":
                try:
                    if now - other.stat().st_mtime > _STALE_TMP_SECONDS:
                        _unlink(other)
                except OSError:
                    pass
    except OSError:
        pass


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
