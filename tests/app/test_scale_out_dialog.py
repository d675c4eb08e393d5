"""The "Run on more GPUs…" dialog: the form's config as a TOML file and the torchrun and
SLURM commands that train it, driven through the real window offscreen."""

from __future__ import annotations

import shlex

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QPushButton

from app.scale_out import ScaleOutDialog, batch_split, slurm_script, torchrun_command
from tests.app.conftest import set_fields


def _run_menu_actions(win) -> dict[str, object]:
    menus = [a.menu() for a in win.menuBar().actions() if a.menu() is not None]
    return {a.text(): a for m in menus for a in m.actions() if a.text()}


def _open(win, qtbot) -> ScaleOutDialog:
    dialog = win.open_scale_out_dialog()
    assert isinstance(dialog, ScaleOutDialog)
    qtbot.waitUntil(dialog.isVisible, timeout=5_000)
    return dialog


def _words(command: str) -> list[str]:
    """The shell words of a command continued over lines with backslashes."""
    return shlex.split(command.replace("\\\n", " "))


def test_the_run_menu_action_opens_the_dialog_with_the_forms_method(window, qtbot):
    win = window
    actions = _run_menu_actions(win)
    assert "Run on more GPUs…" in actions
    action = actions["Run on more GPUs…"]
    assert action is win.scale_out_action and action.isEnabled()
    action.trigger()
    qtbot.waitUntil(lambda: win.scale_out_dialog is not None
                    and win.scale_out_dialog.isVisible(), timeout=5_000)
    dialog = win.scale_out_dialog
    assert dialog.cfg.method_name == win.method_combo.currentData()
    assert dialog.processes.minimum() == 1 and dialog.processes.value() >= 1
    assert dialog.machines.value() == 1
    # the default file lies in the window's runs folder, named after the method
    assert dialog.config_path().parent == win.runs_dir.absolute()
    assert dialog.config_path().name == f"selfsup-{dialog.cfg.method_name}.toml"
    dialog.close()


def test_an_invalid_form_shows_its_message_instead_of_the_dialog(window):
    win = window
    win.form.editors["optim.lr"].widget.setText("-1")
    assert win.open_scale_out_dialog() is None
    assert win.scale_out_dialog is None
    assert win.message_bar.isVisible()
    assert "optim.lr" in win.message_bar.text()


def test_written_config_loads_back_to_the_forms_config(window, qtbot, tmp_path):
    from engine.presets import load_toml

    win = window
    set_fields(win, {"optim.batch_size": 96, "optim.lr": 0.01, "method.temperature": 0.3,
                     "optim.max_steps": 1234})
    expected = win.form.config(win.dataset_chooser.source)
    dialog = _open(win, qtbot)
    path = tmp_path / "my configs" / "big run.toml"  # a folder that does not exist yet
    dialog.path_edit.setText(str(path))
    dialog.write_button.click()
    assert path.is_file()
    assert "Wrote" in dialog.status_label.text()
    assert load_toml(path).to_dict() == expected.to_dict()
    dialog.close()


def test_torchrun_command_quotes_the_config_path_and_names_the_runs_folder(window, qtbot,
                                                                             tmp_path):
    win = window
    dialog = _open(win, qtbot)
    path = tmp_path / "my configs" / "run.toml"
    dialog.path_edit.setText(str(path))
    dialog.processes.setValue(3)
    command = dialog.one_machine_text.toPlainText()
    assert command == dialog.torchrun_command()
    assert "--nproc-per-node 3" in command
    assert f"-m engine train {shlex.quote(str(path))}" in command
    words = _words(command)
    assert words[:3] == ["torchrun", "--nproc-per-node", "3"]
    assert words[words.index("train") + 1] == str(path)  # one word despite the space
    assert words[words.index("--runs-dir") + 1] == str(win.runs_dir.absolute())
    assert "--nnodes" not in words
    page = dialog.tabs.widget(0)
    copy = next(b for b in page.findChildren(QPushButton) if b.text() == "Copy")
    copy.click()
    assert QGuiApplication.clipboard().text() == command
    dialog.close()


def test_slurm_script_has_the_node_count_and_a_rendezvous(window, qtbot):
    dialog = _open(window, qtbot)
    dialog.processes.setValue(4)
    dialog.machines.setValue(3)
    script = dialog.slurm_text.toPlainText()
    assert "#SBATCH --nodes=3" in script
    assert "#SBATCH --ntasks-per-node=1" in script
    assert "#SBATCH --gres=gpu:4" in script
    assert "#SBATCH --cpus-per-task=" in script
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in script
    srun = script[script.index("srun torchrun"):]
    words = _words(srun)
    assert words[words.index("--nnodes") + 1] == "$SLURM_NNODES"
    assert words[words.index("--nproc-per-node") + 1] == "4"
    assert words[words.index("--rdzv-id") + 1] == "$SLURM_JOB_ID"
    assert words[words.index("--rdzv-endpoint") + 1] == "$head_node:29500"
    assert "-m engine train" in srun and "--runs-dir" in srun
    # the command for several machines without SLURM
    several = _words(dialog.several_text.toPlainText())
    assert several[several.index("--nnodes") + 1] == "3"
    assert "--rdzv-backend" in several and "--rdzv-id" in several
    dialog.close()


def test_an_unwritable_path_is_reported_in_the_dialog(window, qtbot, tmp_path):
    dialog = _open(window, qtbot)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    dialog.path_edit.setText(str(blocker / "sub" / "config.toml"))
    assert dialog.write_config() is False  # no exception
    dialog.write_button.click()  # nor from the button (pytest-qt fails on one in a slot)
    assert dialog.isVisible()
    assert dialog.status_label.text().startswith("Cannot write")
    assert dialog.status_label.property("level") == "error"
    dialog.path_edit.setText("")
    assert dialog.write_config() is False
    assert "file name" in dialog.status_label.text()
    dialog.close()


def test_a_batch_not_divisible_by_the_processes_is_warned_about(window, qtbot):
    win = window
    set_fields(win, {"optim.batch_size": 100})
    dialog = _open(win, qtbot)
    dialog.machines.setValue(1)
    dialog.processes.setValue(4)
    assert not dialog.warning_label.isVisible()
    assert "each of the 4 processes takes 100/4 = 25" in dialog.batch_label.text()
    dialog.processes.setValue(3)
    assert dialog.warning_label.isVisible()
    assert "not divisible by 3" in dialog.warning_label.text()
    assert "99 or 102" in dialog.warning_label.text()
    dialog.processes.setValue(2)
    dialog.machines.setValue(3)  # 6 processes in all
    assert dialog.warning_label.isVisible()
    assert "not divisible by 6" in dialog.warning_label.text()
    dialog.close()


def test_command_builders_quote_every_path():
    cmd = torchrun_command("/a b/c.toml", "/runs dir", 8, nnodes=2, endpoint="h1:29500",
                           rdzv_id="job7")
    words = _words(cmd)
    assert words == ["torchrun", "--nnodes", "2", "--nproc-per-node", "8",
                     "--rdzv-backend", "c10d", "--rdzv-endpoint", "h1:29500", "--rdzv-id",
                     "job7", "-m", "engine", "train", "/a b/c.toml", "--runs-dir", "/runs dir"]
    script = slurm_script("/a b/c.toml", "/runs dir", 2, 5, job_name="x")
    assert "'/a b/c.toml'" in script and "'/runs dir'" in script
    assert script.startswith("#!/bin/bash\n")
    text, warning = batch_split(256, 4, 2)
    assert "each of the 8 processes" in text and "256/8 = 32" in text and warning == ""
    assert "learning rate" in text
    _, warning = batch_split(3, 4, 1)  # a share below one image: only the multiple above
    assert "(e.g. 4)" in warning


def test_a_relative_dataset_folder_is_written_as_an_absolute_path(qtbot, tmp_path,
                                                                  monkeypatch):
    """torchrun may start in another folder than the window: the config must still find
    the data. Built-in names stay names."""
    from app.scale_out import BUILTIN_NAMES
    from engine.config import Config
    from engine.data import BUILTIN_DATASETS
    from engine.presets import load_toml

    assert set(BUILTIN_NAMES) == set(BUILTIN_DATASETS)
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    for given, written in (("photos", str(tmp_path / "photos")), ("shapes", "shapes")):
        cfg = Config()
        cfg.data.dataset = given
        dialog = ScaleOutDialog(cfg, tmp_path / "runs")
        qtbot.addWidget(dialog)
        dialog.path_edit.setText(str(tmp_path / f"{given}.toml"))
        assert dialog.write_config()
        assert load_toml(tmp_path / f"{given}.toml").data.dataset == written
