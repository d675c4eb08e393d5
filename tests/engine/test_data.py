"""Datasets: folder scanning and labels, robust decoding, errors, the disk cache, built-ins."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import BUILTIN_DATASETS, ImageDataset, load_dataset
from engine.data.builtin import SHAPE_CLASSES, shape_poses
from engine.errors import DatasetError

R = 16


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size=(20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _load(path: Path, tmp_path: Path, **kw) -> ImageDataset:
    kw.setdefault("cache_dir", tmp_path / "cache")
    return load_dataset(str(path), R, **kw)


# --------------------------------------------------------------------------- folders


def test_labels_from_first_level_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _png(root / "cat" / "a.png")
    _png(root / "cat" / "deep" / "er" / "b.png")  # nested: still a "cat"
    _png(root / "dog" / "c.PNG")  # extension in any case
    Image.new("RGB", (9, 9)).save(root / "dog" / "d.JpEg", format="JPEG")
    _png(root / "dog" / ".hidden.png")  # hidden file
    _png(root / ".thumbs" / "x.png")  # hidden folder
    (root / "dog" / "notes.txt").write_text("not an image")

    ds = _load(root, tmp_path)
    assert ds.name == str(root)
    assert ds.class_names == ["cat", "dog"]
    assert ds.files == ["cat/a.png", "cat/deep/er/b.png", "dog/c.PNG", "dog/d.JpEg"]
    assert ds.labels is not None and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.class_counts() == [2, 2]
    assert ds.images.shape == (4, 3, R, R) and ds.images.dtype == torch.uint8
    assert ds.images.is_contiguous() and ds.resolution == R
    assert ds.skipped == [] and not ds.from_cache
    assert ds.summary() == "4 images, 2 classes (cat 2, dog 2)"


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "flat" / f"{i}.png")
    ds = _load(tmp_path / "flat", tmp_path)
    assert ds.labels is None and ds.class_names == [] and ds.class_counts() == []
    assert len(ds) == 3
    assert ds.summary() == "3 images, no labels"


def test_root_images_beside_subfolders_get_root_class(tmp_path: Path) -> None:
    _png(tmp_path / "m" / "top.png")
    _png(tmp_path / "m" / "cls" / "x.png")
    ds = _load(tmp_path / "m", tmp_path)
    assert ds.class_names == ["(root)", "cls"]
    assert ds.labels is not None and ds.labels.tolist() == [1, 0]  # files: cls/x.png, top.png


def test_single_class_keeps_labels(tmp_path: Path) -> None:
    _png(tmp_path / "one" / "only" / "a.png")
    ds = _load(tmp_path / "one", tmp_path)
    assert ds.class_names == ["only"] and ds.labels is not None


def test_corrupt_files_are_skipped_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _png(root / "a" / "good.png")
    _png(root / "b" / "good2.png")
    (root / "a" / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "b" / "empty.png").write_bytes(b"")
    good = Image.new("RGB", (50, 50))
    good.save(root / "b" / "truncated.png")
    data = (root / "b" / "truncated.png").read_bytes()
    (root / "b" / "truncated.png").write_bytes(data[: len(data) // 2])

    ds = _load(root, tmp_path)
    assert ds.files == ["a/good.png", "b/good2.png"]
    skipped = {Path(p).name: reason for p, reason in ds.skipped}
    assert set(skipped) == {"bad.jpg", "empty.png", "truncated.png"}
    assert all(Path(p).is_absolute() and Path(p).exists() for p, _ in ds.skipped)
    assert all(reason for reason in skipped.values())
    assert ds.summary().endswith("3 files skipped")


def test_modes_and_sizes_all_become_rgb_squares(tmp_path: Path) -> None:
    root = tmp_path / "modes"
    root.mkdir()
    Image.new("RGBA", (40, 30), (255, 0, 0, 255)).save(root / "rgba.png")
    Image.new("L", (17, 50), 200).save(root / "gray.png")
    pal = Image.new("P", (30, 30), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(root / "pal.gif")
    big = np.zeros((600, 800, 3), np.uint8)
    big[:, :, 2] = 255
    Image.fromarray(big).save(root / "big.jpg", quality=95)
    Image.fromarray(np.full((20, 20), 65535, np.uint16)).save(root / "deep16.png")
    Image.new("RGB", (12, 12), (10, 20, 30)).save(root / "x.bmp")
    Image.new("RGB", (12, 12), (10, 20, 30)).save(root / "x.tif")
    Image.new("RGB", (12, 12), (10, 20, 30)).save(root / "x.webp", lossless=True)

    ds = _load(root, tmp_path)
    assert ds.skipped == []
    assert ds.images.shape == (8, 3, R, R) and ds.images.dtype == torch.uint8
    px = {f: ds.images[i, :, R // 2, R // 2].tolist() for i, f in enumerate(ds.files)}
    assert px["rgba.png"] == [255, 0, 0]
    assert px["gray.png"] == [200, 200, 200]
    assert px["pal.gif"] == [0, 255, 0]
    assert px["big.jpg"][2] > 240 and max(px["big.jpg"][:2]) < 15
    assert px["deep16.png"] == [255, 255, 255]  # 16-bit rescaled, not clipped garbage
    assert px["x.webp"] == [10, 20, 30]


def test_transparent_pixels_become_black(tmp_path: Path) -> None:
    im = Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    im.paste((0, 0, 255, 255), (0, 0, 20, 10))
    _png(tmp_path / "t" / "dummy.png")
    im.save(tmp_path / "t" / "alpha.png")
    ds = _load(tmp_path / "t", tmp_path)
    a = ds.images[ds.files.index("alpha.png")]
    assert a[:, 1, R // 2].tolist() == [0, 0, 255]
    assert a[:, -2, R // 2].tolist() == [0, 0, 0]


def test_aspect_ratio_kept_by_centre_crop(tmp_path: Path) -> None:
    # A wide image with red side bands: the centre crop keeps only the green middle.
    im = Image.new("RGB", (300, 100), (0, 255, 0))
    im.paste((255, 0, 0), (0, 0, 90, 100))
    im.paste((255, 0, 0), (210, 0, 300, 100))
    _png(tmp_path / "w" / "dummy.png")
    im.save(tmp_path / "w" / "wide.png")
    ds = _load(tmp_path / "w", tmp_path)
    a = ds.images[ds.files.index("wide.png")]
    assert int(a[0].max()) < 30 and int(a[1].min()) > 225


def test_progress_reports_to_the_end(tmp_path: Path) -> None:
    for i in range(70):
        _png(tmp_path / "p" / f"{i:03d}.png")
    calls: list[tuple[int, int]] = []
    _load(tmp_path / "p", tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (70, 70)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _png(tmp_path / "pics" / "a.png")
    ds = load_dataset("~/pics", R, cache_dir=tmp_path / "cache")
    assert len(ds) == 1 and ds.name == "~/pics"


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path: Path) -> None:
    p = tmp_path / "nope"
    with pytest.raises(DatasetError, match="not found") as e:
        _load(p, tmp_path)
    assert str(p) in str(e.value)


def test_file_instead_of_folder(tmp_path: Path) -> None:
    p = _png(tmp_path / "single.png")
    with pytest.raises(DatasetError, match="not a folder") as e:
        _load(p, tmp_path)
    assert str(p) in str(e.value)


def test_empty_folder(tmp_path: Path) -> None:
    p = tmp_path / "empty"
    p.mkdir()
    (p / "readme.txt").write_text("hi")
    _png(p / ".hidden.png")
    with pytest.raises(DatasetError, match="no images found") as e:
        _load(p, tmp_path)
    assert str(p) in str(e.value) and ".jpg" in str(e.value)


def test_only_corrupt_files(tmp_path: Path) -> None:
    p = tmp_path / "broken"
    p.mkdir()
    for i in range(5):
        (p / f"b{i}.png").write_bytes(b"nope" * i)
    with pytest.raises(DatasetError) as e:
        _load(p, tmp_path)
    msg = str(e.value)
    assert str(p) in msg and "5" in msg and "b0.png" in msg


def test_blank_source() -> None:
    with pytest.raises(DatasetError):
        load_dataset("  ", R)


# --------------------------------------------------------------------------- cache


def _assert_same(a: ImageDataset, b: ImageDataset) -> None:
    assert torch.equal(a.images, b.images)
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None and b.labels is not None:
        assert torch.equal(a.labels, b.labels)
    assert a.class_names == b.class_names and a.files == b.files and a.skipped == b.skipped


def test_cache_hit_and_invalidation(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for c in ("x", "y"):
        for i in range(3):
            _png(root / c / f"{i}.png", colour=(i * 50, 10, 10))
    (root / "x" / "bad.png").write_bytes(b"junk")
    cache_dir = tmp_path / "cache"

    first = _load(root, tmp_path)
    second = _load(root, tmp_path)
    assert not first.from_cache and second.from_cache
    _assert_same(first, second)
    assert second.name == str(root) and len(second.skipped) == 1

    # Touching a file changes its mtime: the entry is stale, and replaced (not piled up).
    f = root / "x" / "0.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = _load(root, tmp_path)
    assert not third.from_cache
    assert _entry_files(cache_dir) == ["json", "npy"]

    _png(root / "y" / "new.png")
    fourth = _load(root, tmp_path)
    assert not fourth.from_cache and len(fourth) == len(first) + 1

    # A different resolution is a different entry.
    other = load_dataset(str(root), R * 2, cache_dir=cache_dir)
    assert not other.from_cache and other.resolution == R * 2


def _entry_files(cache_dir: Path) -> list[str]:
    """The cache folder's files by kind (lock files aside)."""
    return sorted(p.name.split(".", 1)[1] for p in cache_dir.iterdir() if p.suffix != ".lock")


def _mapped_file(t: torch.Tensor) -> str | None:
    """The file whose mapping holds ``t``'s memory (Linux), or None if it is anonymous."""
    ptr = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= ptr < hi:
            return parts[5].strip() if len(parts) > 5 and parts[5].startswith("/") else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_cached_images_are_the_memory_mapped_entry(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i in range(5):
        _png(root / "a" / f"{i}.png", colour=(i * 40, 0, 0))
    (root / "a" / "bad.png").write_bytes(b"junk")
    cache_dir = tmp_path / "cache"
    first = _load(root, tmp_path)
    second = _load(root, tmp_path)
    assert not first.from_cache and second.from_cache
    assert _entry_files(cache_dir) == ["json", "npy"]  # partial files gone
    (npy,) = cache_dir.glob("*.npy")
    assert np.load(npy).shape == (5, 3, R, R)  # the failure compacted out
    # Both loads serve the file's pages, not a copy decoded into memory.
    assert _mapped_file(first.images) == str(npy)
    assert _mapped_file(second.images) == str(npy)
    assert second.images.is_contiguous() and second.images[3, 0, 0, 0] == 120
    reference = _load(root, tmp_path, use_cache=False)
    assert _mapped_file(reference.images) is None
    _assert_same(reference, second)


@pytest.mark.parametrize("damage", ["garbage npy", "truncated npy", "garbage json",
                                    "missing npy"])
def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "data"
    for i in range(3):
        _png(root / "a" / f"{i}.png", colour=(10, i * 60, 0))
    _load(root, tmp_path)  # builds the entry (and maps it: dropped before damaging it)
    (npy,) = (tmp_path / "cache").glob("*.npy")
    meta = npy.with_suffix(".json")
    data = npy.read_bytes()
    npy.unlink()  # a new file, not the mapped inode rewritten in place
    if damage == "garbage npy":
        npy.write_bytes(b"\x00garbage" * 10)
    elif damage == "truncated npy":
        npy.write_bytes(data[: len(data) - 100])
    elif damage == "garbage json":
        npy.write_bytes(data)
        meta.write_text("{not json")
    again = _load(root, tmp_path)
    assert not again.from_cache
    _assert_same(_load(root, tmp_path, use_cache=False), again)
    assert _load(root, tmp_path).from_cache  # rewritten properly


def test_old_format_entries_are_ignored_and_pruned(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "a.png")
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    old = cache_dir / "data-0123456789abcdef-0123456789abcdef.pt"
    old.write_bytes(b"a version 1 entry")
    assert not _load(root, tmp_path).from_cache
    assert not old.exists() and _entry_files(cache_dir) == ["json", "npy"]


def _many(root: Path, n: int, bad: tuple[int, ...] = ()) -> None:
    """``n`` small distinct PNGs in two classes; the indices in ``bad`` are corrupt."""
    for i in range(n):
        p = root / ("even" if i % 2 == 0 else "odd") / f"{i:04d}.png"
        if i in bad:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"not a png")
        else:
            _png(p, colour=(i % 256, (7 * i) % 256, (13 * i) % 256), size=(12, 10))


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Small tasks, 2 workers, and a counter of decode_image calls (from any thread)."""
    from engine.data import folders

    monkeypatch.setattr(folders, "_BATCH", 4)
    monkeypatch.setattr(folders, "_num_workers", lambda: 2)
    calls = [0]
    lock = threading.Lock()
    real = folders.decode_image

    def counting(path: str | Path, resolution: int) -> np.ndarray:
        with lock:
            calls[0] += 1
        return real(path, resolution)

    monkeypatch.setattr(folders, "decode_image", counting)
    return calls


class _Abort(Exception):
    pass


def test_interrupted_decode_resumes_where_it_stopped(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    n = 200
    root = tmp_path / "data"
    _many(root, n, bad=(5, 17, 150))
    reference = _load(root, tmp_path, use_cache=False)
    calls = _count_decodes(monkeypatch)

    def abort_at_half(done: int, total: int) -> None:
        if done >= total // 2:
            raise _Abort

    with pytest.raises(_Abort):
        _load(root, tmp_path, progress=abort_at_half)
    first = calls[0]
    assert n // 2 <= first < n
    assert _entry_files(tmp_path / "cache") == ["partial.log", "partial.npy"]

    seen: list[tuple[int, int]] = []
    ds = _load(root, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert not ds.from_cache
    # Every image is decoded exactly once over both loads: the second did only the rest.
    assert first + (calls[0] - first) == n and calls[0] - first <= n // 2
    assert seen[0] == (0, n) and seen[1][0] >= n // 2 and seen[-1] == (n, n)
    _assert_same(reference, ds)  # failures of the first half were remembered too
    assert len(ds.skipped) == 3
    assert _entry_files(tmp_path / "cache") == ["json", "npy"]
    assert _load(root, tmp_path).from_cache and calls[0] == n


def test_changed_folder_does_not_resume_a_stale_partial(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    _many(root, 40)
    calls = _count_decodes(monkeypatch)

    def abort(done: int, total: int) -> None:
        if done >= 8:
            raise _Abort

    with pytest.raises(_Abort):
        _load(root, tmp_path, progress=abort)
    _png(root / "even" / "new.png")  # a new fingerprint: a new entry of the same group
    calls[0] = 0
    ds = _load(root, tmp_path)
    assert calls[0] == 41 and len(ds) == 41
    assert _entry_files(tmp_path / "cache") == ["json", "npy"]  # the stale partial pruned


_CHILD_PRELUDE = """
import hashlib, json, os, signal, sys, time
from pathlib import Path
from engine.data import folders, load_dataset
folder, cache_dir, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
"""

_REPO = Path(__file__).resolve().parents[2]


def _child(code: str, *args: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(_REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", _CHILD_PRELUDE + code, *map(str, args)],
                            cwd=_REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_decode_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 200
    root = tmp_path / "data"
    _many(root, n, bad=(3,))
    kill_at_half = """
folders._BATCH = 4
folders._num_workers = lambda: 2
def progress(done, total):
    if done >= total // 2:
        os.kill(os.getpid(), signal.SIGKILL)
load_dataset(folder, 16, cache_dir=cache_dir, progress=progress)
"""
    proc = _child(kill_at_half, root, tmp_path / "cache", tmp_path / "unused")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    calls = _count_decodes(monkeypatch)
    ds = _load(root, tmp_path)
    assert 0 < calls[0] <= n // 2  # what the killed process recorded was kept
    _assert_same(_load(root, tmp_path, use_cache=False), ds)


def test_two_processes_load_the_same_uncached_folder_at_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _many(root, 300, bad=(10,))
    load = """
go.with_name(go.name + f".ready{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.002)
ds = load_dataset(folder, 16, cache_dir=cache_dir)
h = hashlib.sha256(ds.images.numpy().tobytes())
h.update(ds.labels.numpy().tobytes())
h.update(json.dumps([ds.files, ds.skipped]).encode())
print(json.dumps({"from_cache": ds.from_cache, "digest": h.hexdigest()}))
"""
    go = tmp_path / "go"
    procs = [_child(load, root, tmp_path / "cache", go) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready*"))) < 2:  # both imported torch: start at once
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    ref = _load(root, tmp_path, use_cache=False)
    h = hashlib.sha256(ref.images.numpy().tobytes())
    assert ref.labels is not None
    h.update(ref.labels.numpy().tobytes())
    h.update(json.dumps([ref.files, [list(s) for s in ref.skipped]]).encode())
    assert [r["digest"] for r in results] == [h.hexdigest()] * 2
    assert sorted(r["from_cache"] for r in results) == [False, True]  # exactly one decoded
    assert _entry_files(tmp_path / "cache") == ["json", "npy"]


def _deny_writes(monkeypatch: pytest.MonkeyPatch, d: Path) -> None:
    """Make ``d`` read-only: by its mode, and, as root (whom modes do not stop), by
    failing every call that would create, change or delete something in it."""
    for p in [d, *d.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    if os.name != "posix" or os.geteuid() != 0:
        return
    import builtins

    def inside(path: str | os.PathLike[str]) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(d.resolve())
        except (TypeError, ValueError):
            return False

    def denied(path: object) -> PermissionError:
        return PermissionError(13, "Read-only (test)", str(path))

    real_open, real_os_open = builtins.open, os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def os_open(path, flags, *a, **k):  # noqa: ANN001, ANN202
        if flags & writes and inside(path):
            raise denied(path)
        return real_os_open(path, flags, *a, **k)

    def open_(file, mode="r", *a, **k):  # noqa: ANN001, ANN202
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") \
                and inside(file):
            raise denied(file)
        return real_open(file, mode, *a, **k)

    def refuse(real):  # noqa: ANN001, ANN202
        def wrapper(src, *a, **k):  # noqa: ANN001, ANN202
            if inside(src) or (a and inside(a[0])):
                raise denied(src)
            return real(src, *a, **k)
        return wrapper

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    for name in ("replace", "rename", "unlink", "mkdir"):
        monkeypatch.setattr(os, name, refuse(getattr(os, name)))


def test_read_only_cache_dir_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    for i in range(4):
        _png(root / "k" / f"{i}.png", colour=(i * 50, 0, 9))
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    reference = load_dataset(str(root), R, cache_dir=warm)
    cold.mkdir()
    before = _entry_files(warm)
    try:
        _deny_writes(monkeypatch, warm)
        _deny_writes(monkeypatch, cold)
        hit = load_dataset(str(root), R, cache_dir=warm)  # a shared, prepared cache
        assert hit.from_cache
        _assert_same(reference, hit)
        for _ in range(2):
            miss = load_dataset(str(root), R, cache_dir=cold)
            assert not miss.from_cache
            _assert_same(reference, miss)
        shapes = load_dataset("shapes", R, shapes_count=12, cache_dir=cold)
        assert len(shapes) == 12 and not shapes.from_cache
    finally:
        monkeypatch.undo()
        for p in (warm, cold):
            p.chmod(0o755)
    assert list(cold.iterdir()) == [] and _entry_files(warm) == before


def test_unwritable_cache_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "a.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    for _ in range(2):
        ds = load_dataset(str(root), R, cache_dir=blocker / "sub")
        assert len(ds) == 1 and not ds.from_cache


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    _png(tmp_path / "d" / "a.png")
    load_dataset(str(tmp_path / "d"), R, cache_dir=tmp_path / "cache", use_cache=False)
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- built-ins


def test_builtin_names() -> None:
    assert set(BUILTIN_DATASETS) == {"shapes", "digits", "pydocs"}
    assert all(isinstance(v, str) and v for v in BUILTIN_DATASETS.values())


def test_shapes_deterministic_balanced_and_cached(tmp_path: Path) -> None:
    kw = {"shapes_count": 604, "cache_dir": tmp_path / "cache"}
    a = load_dataset("shapes", 32, seed=3, use_cache=False, **kw)
    b = load_dataset("shapes", 32, seed=3, **kw)
    c = load_dataset("shapes", 32, seed=4, **kw)
    assert a.images.shape == (604, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.images.is_contiguous()
    _assert_same(a, b)
    assert not torch.equal(a.images, c.images)
    assert a.class_names == ["circle", "square", "triangle", "star", "cross", "ring"]
    assert a.class_counts() == [101, 101, 101, 101, 100, 100]
    assert a.files[0].startswith(f"shapes/{a.class_names[int(a.labels[0])]}/")
    cached = load_dataset("shapes", 32, seed=3, **kw)
    assert cached.from_cache and cached.name == "shapes"
    _assert_same(a, cached)
    if Path("/proc/self/maps").exists():  # generated once, then served from the mapped file
        npys = {str(p) for p in (tmp_path / "cache").glob("shapes-*.npy")}
        assert len(npys) == 2
        assert _mapped_file(b.images) in npys and _mapped_file(cached.images) in npys
        assert _mapped_file(a.images) is None  # use_cache=False: in memory


def test_shapes_colour_carries_little_label_information() -> None:
    ds = load_dataset("shapes", 32, shapes_count=3000, seed=1, use_cache=False)
    assert ds.labels is not None
    x = ds.images.float().mean(dim=(2, 3))  # per-image mean RGB
    y = ds.labels
    train, test = slice(0, 2000), slice(2000, None)
    centroids = torch.stack([x[train][y[train] == c].mean(0) for c in range(6)])
    pred = torch.cdist(x[test], centroids).argmin(1)
    acc = (pred == y[test]).float().mean().item()
    assert acc < 0.4, acc
    # ...while the images are not blank: the shape differs from its background.
    assert ds.images.float().std(dim=(2, 3)).mean() > 10


def test_digits() -> None:
    ds = load_dataset("digits", 24)
    assert len(ds) == 1797 and ds.images.shape == (1797, 3, 24, 24)
    assert ds.images.dtype == torch.uint8 and ds.class_names == [str(i) for i in range(10)]
    assert ds.labels is not None and sorted(set(ds.labels.tolist())) == list(range(10))
    assert ds.files[17].startswith(f"digits/{int(ds.labels[17])}/")
    assert int(ds.images.max()) > 200 and int(ds.images[:, :, 0, 0].max()) < 30
    assert torch.equal(ds.images[:, 0], ds.images[:, 1])


def test_dataset_validates_shapes() -> None:
    with pytest.raises(ValueError):
        ImageDataset("x", torch.zeros(2, 3, 4, 5, dtype=torch.uint8), None, [], ["a", "b"], [])


def test_upright_poses_point_up_with_the_shadow_below_and_any_poses_do_not() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(SHAPE_CLASSES)), 500)
    angle, light = shape_poses(rng, labels, "upright")
    assert np.all(np.abs(light - np.pi / 2) <= np.radians(15))  # shadows fall downwards
    for c, name in enumerate(SHAPE_CLASSES):
        a = angle[labels == c]
        # The drawn triangle and star have a vertex at angle 0: turned by -90°, it points up.
        up = -np.pi / 2 if name in ("triangle", "star") else 0.0
        assert np.all(np.abs(a - up) <= np.radians(15)), name
        assert a.std() > np.radians(5), name  # jittered, not all identical
    angle, light = shape_poses(rng, labels, "any")
    for x in (angle, light):  # spread round the whole circle: no direction is "up"
        hist = np.histogram(np.mod(x, 2 * np.pi), bins=4, range=(0, 2 * np.pi))[0]
        assert hist.min() > 0.2 * len(x), hist


def test_shapes_orientation_is_a_separate_cached_set_and_is_validated(tmp_path: Path) -> None:
    kw = {"shapes_count": 120, "seed": 2, "cache_dir": tmp_path}
    upright = load_dataset("shapes", 32, **kw)
    anyway = load_dataset("shapes", 32, shapes_orientation="any", **kw)
    assert not anyway.from_cache and not torch.equal(upright.images, anyway.images)
    assert torch.equal(upright.labels, anyway.labels)  # the same classes, posed differently
    again = load_dataset("shapes", 32, shapes_orientation="any", **kw)
    assert again.from_cache and torch.equal(again.images, anyway.images)
    with pytest.raises(ValueError, match="orientation must be one of upright, any"):
        load_dataset("shapes", 32, shapes_orientation="sideways", **kw)
