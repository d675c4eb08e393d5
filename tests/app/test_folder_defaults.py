"""Choosing an image folder sets its resolution, crop scale and batch size on the form,
says so under the dataset summary, and keeps what the user changed."""

from __future__ import annotations

from pathlib import Path


def photo_folder(root: Path, n: int = 40, size: tuple[int, int] = (200, 150)) -> Path:
    from PIL import Image

    for i in range(n):
        d = root / ("cats" if i % 2 else "dogs")
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (5 * i % 255, 90, 30)).save(d / f"{i}.png")
    return root


def value(win, key: str):
    return win.form.editors[key].value()


def test_a_folder_of_photos_gets_its_own_defaults_and_the_summary_says_so(window, qtbot,
                                                                            tmp_path):
    win = window
    folder = photo_folder(tmp_path / "pets")
    note = win.dataset_chooser.defaults_note
    win.form.editors["optim.lr"].set_value(0.01)  # untouched by the folder's defaults
    win.dataset_chooser.set_source(str(folder))
    qtbot.waitUntil(lambda: value(win, "data.resolution") == 64, timeout=60_000)
    assert value(win, "optim.batch_size") == 16  # 40 images
    assert value(win, "augment.crop_min_scale") == 0.2
    assert value(win, "optim.lr") == 0.01
    assert not note.isHidden()
    assert "150 px" in note.text() and "40 images" in note.text()
    # another method keeps the folder's settings
    win.method_combo.setCurrentIndex(win.method_combo.findData("byol"))
    assert value(win, "data.resolution") == 64 and value(win, "optim.batch_size") == 16
    # a built-in set goes back to the preset
    win.dataset_chooser.set_source("shapes")
    qtbot.waitUntil(lambda: value(win, "data.resolution") == 32, timeout=60_000)
    assert value(win, "optim.batch_size") == 128 and value(win, "augment.crop_min_scale") == 0.4
    assert note.isHidden()


def test_a_value_the_user_set_stays_when_the_folder_is_chosen(window, qtbot, tmp_path):
    win = window
    folder = photo_folder(tmp_path / "pets")
    win.form.editors["optim.batch_size"].set_value(8)
    win.dataset_chooser.set_source(str(folder))
    qtbot.waitUntil(lambda: value(win, "data.resolution") == 64, timeout=60_000)
    assert value(win, "optim.batch_size") == 8
    assert "batch" not in win.dataset_chooser.defaults_note.text()
