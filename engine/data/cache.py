"""Disk cache of decoded datasets: memory-mapped, shared by processes, resumable to build.

An entry is two files named ``<stem>-<group>-<detail>``: ``.npy`` holds the images (uint8
``(N, 3, R, R)``, a plain NumPy file) and ``.json`` the small rest (labels, class names,
files, skipped files, :data:`CACHE_VERSION`; captions with their generator's version
where the set has them: an entry without them still reads, its captions None).
``group`` hashes what identifies the dataset (folder path, resolution, version),
``detail`` what can go stale (the files' fingerprint). Readers map the ``.npy``
copy-on-write (nothing writes it, so every process of a run shares the same page-cache
pages and touches only the pages of its batches) and take no lock: the ``.npy`` is
renamed into place before the ``.json``, and the ``.json`` is what makes an entry exist.

Building an entry is guarded by an OS file lock per group (``<stem>-<group>.lock``), so
when every rank of a torchrun job opens the same uncached folder at once, one decodes and
the others wait and then map its result. A folder is decoded into a *partial* entry
(``.partial.npy`` plus a ``.partial.log`` of the chunks done and their failures) that a
later load of the same files resumes. Writing a fresh entry deletes stale entries (and
partial entries) of the same group, so editing a folder does not leave old copies piling
up. The cache is a convenience only: any problem reading or writing it falls back to
decoding in memory, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from engine.data.dataset import ImageDataset

# Bump whenever decoding, generation or the entry format changes.
# 2: memory-mapped .npy + .json entries (1 was a single torch .pt file).
CACHE_VERSION = 2

_STALE_TMP_SECONDS = 3600
_LOCK_POLL_SECONDS = 0.25
_SYNC_SECONDS = 1.0  # without a boot id, how often the partial file is fsynced
_COPY_BYTES = 32 * 2**20  # bytes read at once while compacting a partial entry
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation

Progress = Callable[[int, int], None]


class CacheUnavailable(Exception):
    """The cache cannot be used here (read-only or full disk, ...): decode without it."""


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
    """The ``.npy`` of the entry for ``group`` (with stale-able ``detail`` hash); the
    entry's other files are named after it."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem)[:40] or "dataset"
    g = digest([*group, CACHE_VERSION])[:16]
    return Path(cache_dir) / f"{safe}-{g}-{detail[:16]}.npy"


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name[: -len(".npy")] + suffix)


def meta_path(path: Path) -> Path:
    return _sibling(path, ".json")


def partial_path(path: Path) -> Path:
    return _sibling(path, ".partial.npy")


def log_path(path: Path) -> Path:
    return _sibling(path, ".partial.log")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name.rsplit("-", 1)[0] + ".lock")


# --------------------------------------------------------------------------- reading


def read(path: Path, name: str, resolution: int, captions_version: int | None = None
         ) -> ImageDataset | None:
    """The cached dataset at ``path`` with its images mapped, or None if it is missing or
    unreadable (a builder then rewrites it). Reads only the metadata and the ``.npy``
    header: no image page is touched. Its captions are the stored ones when they were
    written with ``captions_version``, else None (stale or absent: the caller makes them
    again)."""
    try:
        with open(meta_path(path), encoding="utf-8") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
            return None
        n = int(meta["n"])
        # copy-on-write: a writable array (torch needs one) whose pages stay shared
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
        if (not isinstance(arr, np.ndarray) or arr.dtype != np.uint8
                or arr.shape != (n, 3, resolution, resolution) or not arr.flags.c_contiguous):
            return None
        raw = meta["labels"]
        labels = None if raw is None else torch.tensor(raw, dtype=torch.int64)
        captions = meta.get("captions")
        if (captions_version is None or meta.get("captions_version") != captions_version
                or not isinstance(captions, list) or len(captions) != n
                or not all(isinstance(c, str) for c in captions)):
            captions = None
        return ImageDataset(
            name=name,
            images=torch.from_numpy(arr),
            labels=labels,
            class_names=[str(c) for c in meta["class_names"]],
            files=[str(f) for f in meta["files"]],
            skipped=[(str(p), str(r)) for p, r in meta["skipped"]],
            from_cache=True,
            captions=captions,
        )
    except Exception:  # noqa: BLE001 - any corruption means "rebuild", never a crash
        return None


# --------------------------------------------------------------------------- locking


@contextmanager
def locked(path: Path, progress: Progress | None = None, total: int = 0) -> Iterator[None]:
    """Hold the build lock of ``path``'s group. While another process holds it, report
    its progress (from its partial log) through ``progress``, which may raise to abort.
    Raises :class:`CacheUnavailable` when the lock file cannot be created."""
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | _BINARY, 0o666)
    except OSError as e:
        raise CacheUnavailable(str(e)) from e
    try:
        shown = 0
        while not _try_lock(fd):
            if progress is not None:
                shown = max(shown, min(partial_progress(path), total))
                progress(shown, total)
            time.sleep(_LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; True also where locks are unsupported."""
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    else:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # e.g. a network file system without locks: go on unguarded
            return True


def _unlock(fd: int) -> None:
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


# --------------------------------------------------------------------------- writing


def write(path: Path, ds: ImageDataset, captions_version: int | None = None) -> bool:
    """Store the in-memory ``ds`` as the entry at ``path`` (call it holding
    :func:`locked`), its captions with ``captions_version`` where it has them; False (and
    no error) if the cache is unusable."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp(path)
        fd = os.open(tmp, os.O_WRONLY | _BINARY)
        with os.fdopen(fd, "wb") as f:
            np.save(f, ds.images.numpy(), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _write_meta(path, ds.images.shape[0], ds.labels, ds.class_names, ds.files, ds.skipped,
                    ds.captions, captions_version)
    except Exception:  # noqa: BLE001 - read-only or full disk: just run without a cache
        if tmp is not None:
            _unlink(tmp)
        return False
    _prune(path)
    return True


def write_captions(path: Path, captions: Sequence[str], version: int) -> bool:
    """Add (or replace) the captions of the existing entry at ``path``, so an entry made
    before captions existed, or by an older generator, needs them made only once. The
    images are untouched; False (and no error) if the entry or the cache is unusable."""
    try:
        with open(meta_path(path), encoding="utf-8") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or int(meta["n"]) != len(captions):
            return False
        meta["captions"] = list(captions)
        meta["captions_version"] = int(version)
        _replace_meta(path, meta)
    except Exception:  # noqa: BLE001 - read-only or full disk: make them again next time
        return False
    return True


def write_file(path: Path, save: Callable[[BinaryIO], None]) -> bool:
    """Store an entry of another kind than images (a text dataset, a trained tokenizer)
    as the one file ``path`` (any suffix after the entry name): ``save(f)`` writes it to
    a temp file that is then renamed into place, so readers see it whole or not at all.
    Other entries of its group are pruned. False (and no error) if the cache is
    unusable."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp(path)
        with open(tmp, "wb") as f:
            save(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except Exception:  # noqa: BLE001 - read-only or full disk: just run without a cache
        if tmp is not None:
            _unlink(tmp)
        return False
    _prune(path)
    return True


def _write_meta(path: Path, n: int, labels: torch.Tensor | Sequence[int] | None,
                class_names: Sequence[str], files: Sequence[str],
                skipped: Sequence[tuple[str, str]], captions: Sequence[str] | None = None,
                captions_version: int | None = None) -> None:
    """Write the ``.json`` atomically: from this moment the entry exists."""
    if isinstance(labels, torch.Tensor):
        labels = labels.tolist()
    meta = {
        "version": CACHE_VERSION,
        "n": int(n),
        "labels": None if labels is None else [int(x) for x in labels],
        "class_names": list(class_names),
        "files": list(files),
        "skipped": [[p, r] for p, r in skipped],
    }
    if captions is not None and captions_version is not None:
        meta["captions"] = list(captions)
        meta["captions_version"] = int(captions_version)
    _replace_meta(path, meta)


def _replace_meta(path: Path, meta: dict[str, Any]) -> None:
    target = meta_path(path)
    tmp = _temp(target)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


def _temp(target: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(name)


class Partial:
    """An entry being built: a ``.npy`` of every candidate file (failures stay zero) and an
    append-only log, one JSON line per finished chunk with its failures.

    Worker threads :meth:`write` decoded chunks with positional writes (never through a
    writable mapping, whose written pages would all count as the builder's resident
    memory); the calling thread :meth:`record`\\ s each chunk after its bytes are written.
    A process kill loses nothing recorded: the written bytes are in the page cache. A
    crash of the machine may lose them, so a partial log remembers the boot it was written
    in and is trusted only in the same boot (or, where the boot cannot be told, the image
    file is fsynced before each record).
    """

    def __init__(self, path: Path, n: int, resolution: int, batch: int) -> None:
        self.path = path
        self.n = n
        self.resolution = resolution
        self.batch = batch
        self.image_bytes = 3 * resolution * resolution
        self.done: dict[int, list[tuple[int, str]]] = {}
        self._boot = _boot_id()
        self._pending: list[str] = []
        self._last_sync = time.monotonic()
        self._io_lock = threading.Lock()  # only for platforms without pwrite
        self._fd = -1
        self._log: Any = None
        self._offset = 0

    @classmethod
    def open(cls, path: Path, n: int, resolution: int, batch: int) -> Partial:
        """Resume the partial entry of ``path`` if it matches, else start a new one.
        Raises :class:`CacheUnavailable` when it cannot be created."""
        p = cls(path, n, resolution, batch)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not p._resume():
                p._create()
            p._fd = os.open(partial_path(path), os.O_RDWR | _BINARY)
            p._log = open(log_path(path), "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except (OSError, ValueError) as e:
            p.close()
            raise CacheUnavailable(str(e)) from e
        return p

    def _header(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "n": self.n, "resolution": self.resolution,
                "batch": self.batch, "boot": self._boot}

    def _resume(self) -> bool:
        """Load the record of a previous attempt; False if there is none worth keeping."""
        lines = _read_log(log_path(self.path))
        if not lines or lines[0] != self._header():
            return False
        try:
            arr = np.load(partial_path(self.path), mmap_mode="r", allow_pickle=False)
            ok = arr.dtype == np.uint8 and arr.shape == (self.n, 3, self.resolution,
                                                          self.resolution)
            self._offset = int(arr.offset)
            del arr
        except Exception:  # noqa: BLE001 - unreadable partial: start over
            return False
        if not ok:
            return False
        chunks = range(-(-self.n // self.batch))
        for rec in lines[1:]:
            try:
                c = int(rec["c"])
                failures = [(int(i), str(r)) for i, r in rec["f"]]
            except (KeyError, TypeError, ValueError):
                continue
            if c in chunks and all(i in self.chunk_range(c) for i, _ in failures):
                self.done[c] = failures
        with open(log_path(self.path), "rb+") as f:  # end a line torn by a kill
            f.seek(-1, os.SEEK_END)  # the header line is there: never empty
            if f.read(1) != b"\n":
                f.write(b"\n")
        return True

    def _create(self) -> None:
        _unlink(log_path(self.path))
        target = partial_path(self.path)
        _unlink(target)
        shape = (self.n, 3, self.resolution, self.resolution)
        mm = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape)
        self._offset = int(mm.offset)
        del mm  # created sparse: nothing is written until a chunk is
        with open(log_path(self.path), "w", encoding="utf-8") as f:
            f.write(json.dumps(self._header()) + "\n")

    def chunk_range(self, c: int) -> range:
        return range(c * self.batch, min(self.n, (c + 1) * self.batch))

    def write(self, start: int, images: np.ndarray) -> None:
        """Write decoded ``images`` (uint8 ``(k, 3, R, R)``) at index ``start`` (any
        thread). Raises :class:`CacheUnavailable` on a write error (a full disk)."""
        try:
            _write_at(self._fd, np.ascontiguousarray(images).data,
                      self._offset + start * self.image_bytes, self._io_lock)
        except OSError as e:
            raise CacheUnavailable(str(e)) from e

    def record(self, c: int, failures: list[tuple[int, str]]) -> None:
        """Mark chunk ``c`` done (its bytes are written) with its failures."""
        self.done[c] = failures
        self._pending.append(json.dumps({"c": c, "f": failures}) + "\n")
        self.flush(force=self._boot is not None)

    def flush(self, force: bool = False) -> None:
        """Append the pending records to the log (after an fsync where the boot cannot be
        told, at most once a second unless ``force``)."""
        if not self._pending or self._log is None:
            return
        try:
            if self._boot is None:
                if not force and time.monotonic() - self._last_sync < _SYNC_SECONDS:
                    return
                os.fsync(self._fd)
                self._last_sync = time.monotonic()
            self._log.write("".join(self._pending))
            self._log.flush()
            self._pending.clear()
        except OSError as e:
            raise CacheUnavailable(str(e)) from e

    def close(self) -> None:
        """Write what is pending and close the files; the partial entry stays to resume."""
        try:
            self.flush(force=True)
        except CacheUnavailable:
            pass
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def discard(self) -> None:
        """Close and delete the partial entry (unusable, or not worth resuming)."""
        self.close()
        _unlink(partial_path(self.path))
        _unlink(log_path(self.path))

    def finish(self, drop: Sequence[int], labels: Sequence[int] | None,
               class_names: Sequence[str], files: Sequence[str],
               skipped: Sequence[tuple[str, str]]) -> None:
        """Turn the partial entry into the final one: compact out the images at ``drop``
        (chunk-wise, bounded memory), rename the images into place, then write the
        metadata, delete the partial files and prune stale entries.
        Raises :class:`CacheUnavailable` on an I/O error."""
        try:
            self.flush(force=True)
            if drop:
                tmp = self._compact(set(drop))
                os.replace(tmp, self.path)
            else:
                os.fsync(self._fd)
                self.close()
                os.replace(partial_path(self.path), self.path)
            self.close()
            _write_meta(self.path, self.n - len(drop), labels, class_names, files, skipped)
        except (OSError, ValueError) as e:
            self.close()
            raise CacheUnavailable(str(e)) from e
        self.discard()
        _prune(self.path)

    def _compact(self, drop: set[int]) -> Path:
        keep = np.array([i not in drop for i in range(self.n)])
        shape = (int(keep.sum()), 3, self.resolution, self.resolution)
        tmp = _temp(self.path)
        try:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            out_offset = int(mm.offset)
            del mm
            fd = os.open(tmp, os.O_RDWR | _BINARY)
            try:
                step = max(1, _COPY_BYTES // self.image_bytes)
                pos = 0
                for s in range(0, self.n, step):
                    e = min(self.n, s + step)
                    raw = _read_at(self._fd, (e - s) * self.image_bytes,
                                   self._offset + s * self.image_bytes, self._io_lock)
                    block = np.frombuffer(raw, dtype=np.uint8).reshape(e - s, -1)[keep[s:e]]
                    _write_at(fd, block.data, out_offset + pos * self.image_bytes,
                              self._io_lock)
                    pos += block.shape[0]
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink(tmp)
            raise
        return tmp


def partial_progress(path: Path) -> int:
    """How many images the partial entry of ``path`` has decoded (0 if none)."""
    lines = _read_log(log_path(path))
    if not lines:
        return 0
    try:
        n, batch = int(lines[0]["n"]), int(lines[0]["batch"])
        chunks = {int(rec["c"]) for rec in lines[1:]}
    except (KeyError, TypeError, ValueError):
        return 0
    return sum(max(0, min(n, (c + 1) * batch) - c * batch) for c in chunks)


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a partial log; a torn last line (a killed writer) is ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _boot_id() -> str | None:
    """This boot's id (Linux): page-cache data written in it survives a process kill."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _write_at(fd: int, data: memoryview, offset: int, lock: threading.Lock) -> None:
    view = memoryview(data).cast("B")
    if hasattr(os, "pwrite"):
        while view:
            k = os.pwrite(fd, view, offset)
            view, offset = view[k:], offset + k
        return
    with lock:  # no positional writes (Windows): seek and write, one thread at a time
        os.lseek(fd, offset, os.SEEK_SET)
        while view:
            k = os.write(fd, view)
            view = view[k:]


def _read_at(fd: int, size: int, offset: int, lock: threading.Lock) -> bytes:
    chunks = []
    while size > 0:
        if hasattr(os, "pread"):
            b = os.pread(fd, size, offset)
        else:
            with lock:
                os.lseek(fd, offset, os.SEEK_SET)
                b = os.read(fd, size)
        if not b:
            raise OSError(f"unexpected end of the partial cache file at {offset}")
        chunks.append(b)
        size, offset = size - len(b), offset + len(b)
    return b"".join(chunks)


# --------------------------------------------------------------------------- pruning


def _prune(path: Path) -> None:
    """Delete other entries of the same group (final and partial), entries of the old
    ``.pt`` format, and temp files left by killed writers."""
    base = path.name.split(".", 1)[0]  # entry names have no dots before the suffix
    group_prefix = base.rsplit("-", 1)[0] + "-"
    now = time.time()
    try:
        for other in path.parent.iterdir():
            name = other.name
            if name.startswith(group_prefix) and not name.startswith(base + "."):
                _unlink(other)
            elif other.suffix == ".pt":
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
