"""'Use settings' in the runs tab: the form takes a saved run's method, dataset and every
setting, so the run can be trained again with one thing changed."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QPushButton

from engine.presets import default_config
from tests.app.test_folder_defaults import photo_folder, value


def saved_run(runs_dir: Path, name: str, toml: str) -> Path:
    """A run folder as the trainer leaves it, as far as its settings go."""
    run = runs_dir / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(toml, encoding="utf-8")
    (run / "summary.json").write_text('{"method": "byol", "status": "finished"}',
                                      encoding="utf-8")
    return run


def test_the_form_takes_a_runs_method_data_and_settings(window, qtbot, tmp_path):
    win = window
    folder = photo_folder(tmp_path / "pets")  # its defaults: 64 px, batch 16, crop 0.2
    cfg = default_config("byol")
    for key, v in {"data.dataset": str(folder), "data.resolution": 32,  # not the folder's
                   "optim.batch_size": 16, "optim.lr": 0.0123, "run.seed": 7,
                   "method.base_momentum": 0.95, "augment.crop_min_scale": 0.3}.items():
        cfg.set(key, v)
    run = saved_run(Path(win.runs_dir), "20261202-byol-a", cfg.to_toml())
    assert win.method_combo.currentData() == "simclr"
    # the folder is already chosen, its defaults known and on the form
    win.dataset_chooser.set_source(str(folder))
    qtbot.waitUntil(lambda: value(win, "data.resolution") == 64, timeout=60_000)
    win.tabs.setCurrentWidget(win.runs)
    win.runs.select(str(run))
    assert win.runs.settings_button.isEnabled()
    win.runs.settings_button.click()
    assert win.method_combo.currentData() == "byol"
    assert win.dataset_chooser.source == str(folder)
    qtbot.waitUntil(lambda: win.dataset_chooser.folder_stats is not None
                    and win.data_modality == "image", timeout=60_000)
    qtbot.wait(50)
    # the folder's defaults do not overwrite what the run trained with
    assert value(win, "data.resolution") == 32 and value(win, "augment.crop_min_scale") == 0.3
    assert value(win, "optim.lr") == 0.0123 and value(win, "method.base_momentum") == 0.95
    assert "filled in from run 20261202-byol-a" in win.dataset_chooser.defaults_note.text()
    assert win.form.config(win.dataset_chooser.source).to_dict() == cfg.to_dict()
    assert "settings of run 20261202-byol-a" in win.message_bar.text()
    assert win.form.editors["optim.lr"].findChild(QPushButton, "lrSuggest") is not None
    # choosing another method goes back to its preset, with the folder's defaults again
    win.method_combo.setCurrentIndex(win.method_combo.findData("simclr"))
    assert value(win, "data.resolution") == 64 and value(win, "optim.lr") == \
        default_config("simclr").optim.lr


def test_a_broken_run_config_is_named_and_the_form_stays(window, tmp_path):
    win = window
    win.form.editors["optim.lr"].set_value(0.02)
    bad = saved_run(Path(win.runs_dir), "20261202-broken", "[optim]\nlr = 'fast'\n")
    assert not win.use_run_settings(str(bad))
    text = win.message_bar.text()
    assert "Cannot use the settings of 20261202-broken" in text and "lr" in text
    assert win.method_combo.currentData() == "simclr" and value(win, "optim.lr") == 0.02
    missing = saved_run(Path(win.runs_dir), "20261202-empty", "")
    (missing / "config.toml").unlink()
    assert not win.use_run_settings(str(missing))
    assert "config file not found" in win.message_bar.text()
