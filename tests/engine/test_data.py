"""Datasets: folder scanning and labels, robust decoding, errors, the disk cache, built-ins."""

from __future__ import annotations

import os
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
    assert len(list(cache_dir.glob("*.pt"))) == 1

    _png(root / "y" / "new.png")
    fourth = _load(root, tmp_path)
    assert not fourth.from_cache and len(fourth) == len(first) + 1

    # A different resolution is a different entry.
    other = load_dataset(str(root), R * 2, cache_dir=cache_dir)
    assert not other.from_cache and other.resolution == R * 2


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "a" / "1.png")
    first = _load(root, tmp_path)
    entries = list((tmp_path / "cache").glob("*.pt"))
    assert len(entries) == 1
    entries[0].write_bytes(b"\x00garbage" * 10)
    again = _load(root, tmp_path)
    assert not again.from_cache
    _assert_same(first, again)
    assert _load(root, tmp_path).from_cache  # rewritten properly


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
    assert set(BUILTIN_DATASETS) == {"shapes", "digits"}
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
