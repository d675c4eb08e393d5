"""A user's image folder gets a resolution, crop scale and batch size of its own size."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data import folder_defaults as fd
from engine.presets import default_config


def make_folder(root: Path, n: int, size: tuple[int, int]) -> Path:
    from PIL import Image

    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (i % 255, 10, 20)).save(d / f"{i}.png")
    return root


def values(suggestions: list[fd.Suggestion]) -> dict:
    return {s.key: s.value for s in suggestions}


def test_stats_count_the_images_and_read_the_median_short_side(tmp_path):
    root = make_folder(tmp_path / "f", 9, (120, 90))
    (root / "a" / "broken.png").write_bytes(b"not a png")
    stats = fd.folder_stats(root)
    assert stats.images == 10 and stats.median_side == 90


def test_large_photos_train_at_64_px_on_cpu_and_128_with_an_accelerator():
    preset = default_config("simclr")
    cpu = values(fd.suggest(fd.FolderStats(5000, 480), preset, accelerator=False))
    assert cpu == {"data.resolution": 64, "augment.crop_min_scale": 0.2}
    gpu = values(fd.suggest(fd.FolderStats(5000, 480), preset, accelerator=True))
    assert gpu["data.resolution"] == 128 and gpu["augment.crop_min_scale"] == 0.2


def test_small_images_are_never_enlarged_and_keep_the_32_px_preset():
    preset = default_config("simclr")
    assert fd.suggest(fd.FolderStats(5000, 32), preset) == []
    assert fd.suggest(fd.FolderStats(5000, 20), preset) == []  # 32 px is the floor
    mid = values(fd.suggest(fd.FolderStats(5000, 50), preset))
    assert mid == {"data.resolution": 48, "augment.crop_min_scale": 0.3}


def test_a_small_folder_gets_a_batch_of_a_tenth_of_it():
    preset = default_config("simclr")  # batch 128
    assert values(fd.suggest(fd.FolderStats(400, 32), preset)) == {"optim.batch_size": 32}
    assert values(fd.suggest(fd.FolderStats(60, 32), preset)) == {"optim.batch_size": 16}
    assert "optim.batch_size" not in values(fd.suggest(fd.FolderStats(3000, 32), preset))


def test_apply_keeps_the_users_settings_and_a_methods_own_rule():
    cfg = default_config("mae")
    cfg.set("backbone.patch_size", 32)  # does not divide 48: the resolution stays
    got = fd.apply(cfg, fd.suggest(fd.FolderStats(400, 50), default_config("mae")),
                   keep=frozenset({"optim.batch_size"}))
    assert cfg.data.resolution == 32 and cfg.augment.crop_min_scale == 0.3
    assert [s.key for s in got] == ["augment.crop_min_scale"]
    assert cfg.optim.batch_size == default_config("mae").optim.batch_size


def test_describe_names_every_setting_and_why():
    text = fd.describe(fd.suggest(fd.FolderStats(300, 500), default_config("simclr")))
    assert "resolution 64 px" in text and "500 px" in text
    assert "batch 16" in text and "300 images" in text and "crop scale" in text


@pytest.mark.parametrize("source,want", [("shapes", False), ("pydocs", False)])
def test_built_in_sets_get_no_folder_defaults(source, want):
    assert fd.is_image_folder(source) is want


def test_the_cli_sets_a_folders_defaults_unless_set(tmp_path, capsys):
    from engine.__main__ import _build_config, _parser

    root = make_folder(tmp_path / "photos", 40, (200, 160))
    cfg = _build_config(_parser().parse_args(["train", "--dataset", str(root)]))
    assert (cfg.data.resolution, cfg.optim.batch_size, cfg.augment.crop_min_scale) == (
        64, 16, 0.2)
    assert "Set for this folder" in capsys.readouterr().err
    cfg = _build_config(_parser().parse_args(
        ["train", "--dataset", str(root), "--set", "data.resolution=32"]))
    assert cfg.data.resolution == 32 and cfg.optim.batch_size == 16
    # a built-in set keeps its preset
    cfg = _build_config(_parser().parse_args(["train", "--dataset", "shapes"]))
    assert cfg.data.resolution == 32 and cfg.optim.batch_size == 128


def test_a_method_with_its_own_crop_scale_keeps_it():
    preset = default_config("relative_patch")  # crop_min_scale 0.6: the task needs the image
    got = values(fd.suggest(fd.FolderStats(5000, 480), preset))
    assert got.get("data.resolution") == 64 and "augment.crop_min_scale" not in got
