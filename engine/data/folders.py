"""Image folders: scan, label by subfolder, decode once into a uint8 tensor.

With the cache on, decoding writes chunk by chunk into a memory-mapped cache entry (see
:mod:`engine.data.cache`): memory stays bounded however large the folder, an interrupted
decode resumes where it stopped, and the dataset's images are the mapped file.

Label rule: the label of an image is the name of its first-level subfolder under the root,
however deep it sits (``root/cat/a/b/x.png`` is a "cat"). If every image sits directly in
the root there are no labels. If some do and some are in subfolders, the ones in the root
get the class "(root)". A single class still counts as labels. Classes come from the images
that decoded, so a subfolder whose files are all unreadable adds no empty class.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from engine.data import cache
from engine.data.dataset import ImageDataset
from engine.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ROOT_CLASS = "(root)"

_BATCH = 32  # images per decode task: amortises task overhead, keeps progress smooth
_TASK_BYTES = 4 * 2**20  # at most this much decoded data per task (large resolutions)
_IN_FLIGHT_PER_WORKER = 4  # tasks submitted ahead per worker: bounds pending buffers
_EXIF_ORIENTATION = 0x0112

Progress = Callable[[int, int], None]
Sink = Callable[[int, np.ndarray], None]  # (first index, decoded (k, 3, R, R) uint8)


@dataclass(frozen=True)
class Candidate:
    """A file that looks like an image, with what the cache fingerprint needs."""

    rel: str  # relative path with "/" separators
    size: int
    mtime_ns: int


def walk_files(root: Path, extensions: tuple[str, ...]) -> Iterator[Candidate]:
    """Files under ``root`` whose names end in ``extensions`` (lower case), recursively,
    hidden entries skipped, in no particular order: a generator, so a caller that only
    asks whether there are any stops at the first."""
    seen_dirs: set[tuple[int, int]] = set()

    def walk(d: Path, prefix: str) -> Iterator[Candidate]:
        try:
            st = d.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen_dirs:  # symlink loop
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    yield from walk(Path(e.path), prefix + e.name + "/")
                elif e.is_file() and e.name.lower().endswith(extensions):
                    s = e.stat()
                    yield Candidate(prefix + e.name, s.st_size, s.st_mtime_ns)
            except OSError:
                continue

    yield from walk(root, "")


def scan(root: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Candidate]:
    """All image files (or files ending in ``extensions``) under ``root``, recursively,
    hidden entries skipped, sorted by path."""
    return sorted(walk_files(root, extensions), key=lambda c: c.rel)


def has_files(root: Path, extensions: tuple[str, ...]) -> bool:
    """Whether ``root`` holds any file ending in ``extensions`` (stops at the first)."""
    return next(walk_files(root, extensions), None) is not None


def fingerprint(candidates: list[Candidate]) -> str:
    """Hash of every candidate's path, size and mtime: changes when any file changes."""
    return cache.digest((c.rel, c.size, c.mtime_ns) for c in candidates)


def decode_image(path: str | Path, resolution: int) -> np.ndarray:
    """One image as (R, R, 3) uint8: shorter side resized to R, then centre-cropped.

    Alpha is composited over black, GIFs and other animations give their first frame,
    EXIF rotation is applied, and large JPEGs decode at reduced size (``draft``).
    """
    with Image.open(path) as im:
        if im.format == "JPEG":
            # DCT scaling: decodes at 1/2, 1/4 or 1/8 size while staying >= R on each side.
            im.draft("RGB", (resolution, resolution))
        im.load()
        out = _to_l_or_rgb(im)
        if _orientation(im) != 1:
            out = ImageOps.exif_transpose(out)
        w, h = out.size
        s = min(w, h)
        left, top = (w - s) / 2, (h - s) / 2
        out = out.resize(
            (resolution, resolution),
            Image.Resampling.BICUBIC,
            box=(left, top, left + s, top + s),
            reducing_gap=3.0,  # fast integer box-reduce first, then bicubic
        )
        if out.mode != "RGB":
            out = out.convert("RGB")
        return np.asarray(out)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF must not lose an otherwise good image
        return 1


def _to_l_or_rgb(im: Image.Image) -> Image.Image:
    """Normalise any PIL mode to "L" or "RGB" (resizing "P" would otherwise be nearest)."""
    mode = im.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (0, 0, 0))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if mode in ("L", "RGB"):
        return im
    if mode.startswith("I") or mode == "F":  # 16/32-bit greyscale: rescale, don't clip
        a = np.asarray(im, dtype=np.float32)
        if mode.startswith("I;16"):
            a = a / 257.0
        else:
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 255:
                a = (a - lo) * (255.0 / max(hi - lo, 1e-12))
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")


def _reason(e: BaseException) -> str:
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _num_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


def _batch_size(resolution: int) -> int:
    """Images per decode task: up to :data:`_BATCH`, fewer for large images so the
    in-flight buffers stay small."""
    return max(1, min(_BATCH, _TASK_BYTES // (3 * resolution * resolution)))


def _decode_chunk(
    paths: list[str], start: int, resolution: int, sink: Sink
) -> list[tuple[int, str]]:
    """Decode ``paths`` (images ``start``...) into one buffer, hand it to ``sink``; return
    (index, reason) of the failures, whose rows stay zero."""
    buf = np.zeros((len(paths), 3, resolution, resolution), dtype=np.uint8)
    failed = []
    for j, p in enumerate(paths):
        try:
            buf[j] = decode_image(p, resolution).transpose(2, 0, 1)
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, not fatal
            failed.append((start + j, _reason(e)))
    sink(start, buf)
    return failed


def _decode_chunks(
    paths: list[str],
    resolution: int,
    batch: int,
    chunks: list[int],
    sink: Sink,
    on_chunk: Callable[[int, list[tuple[int, str]]], None],
    progress: Progress | None,
    done: int,
) -> None:
    """Decode the chunks ``chunks`` (of ``batch`` images) in parallel threads (PIL drops
    the GIL), at most a few per worker in flight, so memory stays bounded however many
    files there are. ``on_chunk(c, failures)`` and ``progress(done, total)`` run in the
    calling thread; when ``progress`` raises, the chunks already running finish and are
    reported before the error propagates (so a resumed load need not redo them)."""
    n = len(paths)
    workers = _num_workers()
    todo = iter(chunks)
    pending: dict[Future[list[tuple[int, str]]], int] = {}
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    def submit() -> None:
        c = next(todo, None)
        if c is not None:
            s, e = c * batch, min(n, (c + 1) * batch)
            pending[ex.submit(_decode_chunk, paths[s:e], s, resolution, sink)] = c

    def size(c: int) -> int:
        return min(n, (c + 1) * batch) - c * batch

    try:
        for _ in range(workers * _IN_FLIGHT_PER_WORKER):
            submit()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                c = pending.pop(fut)
                on_chunk(c, fut.result())
                done += size(c)
                submit()
            if progress is not None:
                progress(done, n)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        for fut, c in pending.items():  # aborted: keep the work that was finished anyway
            if not fut.cancelled() and fut.exception() is None:
                try:
                    on_chunk(c, fut.result())
                except Exception:  # noqa: BLE001 - best effort; the original error wins
                    break


def decode_all(
    root: Path, rels: list[str], resolution: int, progress: Progress | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """Decode every file into one in-memory (N, 3, R, R) array (the path without a cache).

    ``progress(done, total)`` is called from the calling thread; it may raise to abort.
    """
    n = len(rels)
    out = np.zeros((n, 3, resolution, resolution), dtype=np.uint8)
    failures: dict[int, str] = {}

    def sink(start: int, images: np.ndarray) -> None:
        out[start : start + len(images)] = images

    if progress is not None:
        progress(0, n)
    batch = _batch_size(resolution)
    _decode_chunks([str(root / r) for r in rels], resolution, batch,
                   list(range(-(-n // batch))), sink,
                   lambda _c, failed: failures.update(failed), progress, 0)
    return out, failures


def _decode_to_cache(
    entry: Path, root: Path, source: str, rels: list[str], resolution: int,
    progress: Progress | None,
) -> ImageDataset:
    """Decode into the partial entry of ``entry`` (resuming it), then make it final.

    Memory stays bounded: decoded chunks go straight to the file and compaction copies
    chunk-wise. Raises :class:`cache.CacheUnavailable` if the cache fails on the way.
    """
    n = len(rels)
    batch = _batch_size(resolution)
    part = cache.Partial.open(entry, n, resolution, batch)
    try:
        failures = {i: r for fl in part.done.values() for i, r in fl}
        todo = [c for c in range(-(-n // batch)) if c not in part.done]
        done = n - sum(len(part.chunk_range(c)) for c in todo)
        if progress is not None:
            progress(0, n)
            if done:
                progress(done, n)

        def on_chunk(c: int, failed: list[tuple[int, str]]) -> None:
            failures.update(failed)
            part.record(c, failed)

        _decode_chunks([str(root / r) for r in rels], resolution, batch, todo, part.write,
                       on_chunk, progress, done)
        part.flush(force=True)
    except cache.CacheUnavailable:
        part.discard()
        raise
    except BaseException:
        part.close()  # interrupted: the partial entry stays, the next load resumes it
        raise
    if len(failures) == n:
        part.discard()
        raise _nothing_readable(root, rels, failures)
    drop = sorted(failures)
    kept = [r for i, r in enumerate(rels) if i not in failures]
    labels, class_names = _labels(kept)
    try:
        part.finish(drop, None if labels is None else labels.tolist(), class_names, kept,
                    [(str(root / rels[i]), failures[i]) for i in drop])
    except cache.CacheUnavailable:
        part.discard()
        raise
    ds = cache.read(entry, source, resolution)
    if ds is None:
        raise cache.CacheUnavailable(f"the entry just written is unreadable: {entry}")
    return replace(ds, from_cache=False)


def _nothing_readable(root: Path, rels: list[str], failures: dict[int, str]) -> DatasetError:
    first = "; ".join(f"{rels[i]} ({failures[i]})" for i in sorted(failures)[:3])
    more = f"; and {len(rels) - 3} more" if len(rels) > 3 else ""
    return DatasetError(
        f"none of the {len(rels)} image files in {root} could be read: {first}{more}"
    )


def load_folder(
    source: str,
    resolution: int,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> ImageDataset:
    """Load an image folder (see the module docstring for the label rule)."""
    root = Path(os.path.abspath(Path(source).expanduser()))
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is a file, not a folder: {root}")
    candidates = scan(root)
    if not candidates:
        exts = ", ".join(IMAGE_EXTENSIONS)
        raise DatasetError(f"no images found in {root} (looked for {exts}, in any letter case)")
    rels = [c.rel for c in candidates]

    if use_cache:
        entry = cache.entry_path(
            cache_dir if cache_dir is not None else cache.default_cache_dir(),
            stem=root.name,
            group=("folder", str(root), resolution),
            detail=fingerprint(candidates),
        )
        hit = cache.read(entry, source, resolution)
        if hit is None:
            try:
                with cache.locked(entry, progress, len(rels)):
                    # another process may have built it while this one waited
                    hit = cache.read(entry, source, resolution)
                    if hit is None:
                        return _decode_to_cache(entry, root, source, rels, resolution,
                                                progress)
            except cache.CacheUnavailable:
                hit = None  # decode in memory below
        if hit is not None:
            if progress is not None:
                progress(len(hit), len(hit))
            return hit

    arr, failures = decode_all(root, rels, resolution, progress)
    skipped = [(str(root / rels[i]), failures[i]) for i in sorted(failures)]
    if len(failures) == len(rels):
        raise _nothing_readable(root, rels, failures)
    if failures:
        keep = np.array([i not in failures for i in range(len(rels))])
        arr = arr[keep]
        rels = [r for r, k in zip(rels, keep, strict=True) if k]

    labels, class_names = _labels(rels)
    return ImageDataset(
        name=source,
        images=torch.from_numpy(arr),
        labels=labels,
        class_names=class_names,
        files=rels,
        skipped=skipped,
    )


def label_of(rel: str) -> str:
    """The class of the file at relative path ``rel``: its first-level subfolder."""
    return rel.split("/", 1)[0] if "/" in rel else ROOT_CLASS


def labels_from_keys(keys: list[str]) -> tuple[torch.Tensor | None, list[str]]:
    """Labels for items of classes ``keys`` (names; :data:`ROOT_CLASS` for items in the
    root): none when every item is in the root, else indices into the sorted names."""
    if all(t == ROOT_CLASS for t in keys):
        return None, []
    class_names = sorted(set(keys))
    index = {c: i for i, c in enumerate(class_names)}
    return torch.tensor([index[t] for t in keys], dtype=torch.int64), class_names


def _labels(rels: list[str]) -> tuple[torch.Tensor | None, list[str]]:
    return labels_from_keys([label_of(r) for r in rels])
