"""Defaults in one place: every default the GUI shows comes from the engine's declarations.

The evaluation tab reads EvalOptions' field specs, the dataset chooser DataConfig, the
form's tooltips the method's preset (``default_config``), the window DEFAULT_METHOD.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.forms import ConfigForm, _format
from app.panels.dataset_chooser import DatasetChooser
from app.panels.evaluate import EDITABLE_OPTIONS, EvaluatePanel
from engine.config import DataConfig, FieldSpec, field_specs


def eval_specs() -> list[FieldSpec]:
    from engine.evaluate import EvalOptions

    return field_specs(EvalOptions(), "eval")


def test_evaluate_spin_boxes_take_default_range_and_help_from_eval_options(qtbot):
    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    specs = {s.name: s for s in eval_specs()}
    panel.set_option_specs(list(specs.values()))
    assert set(panel.spins) == set(EDITABLE_OPTIONS) == {"knn_k", "finetune_steps"}
    for name, box in panel.spins.items():
        spec = specs[name]
        assert box.value() == spec.default, name
        assert (box.minimum(), box.maximum()) == (spec.min, spec.max), name
        assert spec.help in box.toolTip() and f"Default: {_format(spec.default)}" in \
            box.toolTip(), name


def test_changed_eval_option_declarations_reach_the_spin_boxes_and_the_options(qtbot):
    """Nothing in the panel repeats a number: other declarations give other boxes."""
    from engine.evaluate import EvalOptions

    changed = {"knn_k": dict(default=7, min=2, max=50, help="Seven voters."),
               "finetune_steps": dict(default=33, min=3, max=999, help="A few steps.")}
    specs = [dataclasses.replace(s, **changed.get(s.name, {})) for s in eval_specs()]
    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    panel.set_option_specs(specs)
    for name, want in changed.items():
        box = panel.spins[name]
        assert (box.value(), box.minimum(), box.maximum()) == (want["default"], want["min"],
                                                                want["max"])
        assert want["help"] in box.toolTip()
    options = EvalOptions(**panel.option_values())
    assert (options.knn_k, options.finetune_steps) == (7, 33)


def test_evaluating_before_the_engine_loaded_still_uses_eval_options_defaults(qtbot):
    from engine.evaluate import EvalOptions

    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    assert panel.spins == {}  # EvalOptions lives beside torch: no boxes before the engine
    panel._ensure_option_specs()
    defaults = EvalOptions()
    assert panel.option_values() == {name: getattr(defaults, name) for name in EDITABLE_OPTIONS}


def test_dataset_chooser_starts_from_data_config_defaults(qtbot):
    chooser = DatasetChooser()
    qtbot.addWidget(chooser)
    d = DataConfig()
    assert chooser.source == d.dataset
    assert chooser.resolution == d.resolution
    assert chooser.shapes_count == d.shapes_count
    assert chooser.shapes_seed == d.seed
    assert chooser.shapes_orientation == d.shapes_orientation


def test_form_tooltips_name_the_preset_default_not_the_dataclass_default(qtbot):
    from engine.config import OptimConfig
    from engine.presets import default_config

    preset = default_config("simsiam")
    dataclass_lr = OptimConfig().lr
    assert preset.optim.lr != dataclass_lr  # the preset overrides it: the case under test
    form = ConfigForm()
    qtbot.addWidget(form)
    form.set_config(preset, defaults=preset)
    editor = form.editors["optim.lr"]
    assert editor.default == preset.optim.lr
    assert f"Default: {_format(preset.optim.lr)}" in editor.widget.toolTip()
    assert f"Default: {_format(dataclass_lr)}" not in editor.widget.toolTip()


def test_form_tooltips_follow_defaults_given_apart_from_the_values(qtbot):
    """A form showing other values (a run's config) still names the preset's default."""
    from engine.presets import default_config

    preset = default_config("mae")
    shown = preset.copy()
    shown.set("optim.weight_decay", 0.3)
    form = ConfigForm()
    qtbot.addWidget(form)
    form.set_config(shown, defaults=preset)
    editor = form.editors["optim.weight_decay"]
    assert editor.value() == 0.3
    assert editor.default == preset.optim.weight_decay == 0.05
    assert editor.widget.toolTip().endswith(f"Default: {_format(0.05)}")


def test_window_uses_default_method_presets_and_eval_specs(qtbot, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    import app.main_window as main_window
    from engine.presets import default_config

    # another default method: the window must follow DEFAULT_METHOD, not a literal
    monkeypatch.setattr(main_window, "DEFAULT_METHOD", "simsiam")
    win = main_window.MainWindow(runs_dir=tmp_path)
    win.show()
    try:
        qtbot.waitUntil(lambda: bool(win.methods), timeout=120_000)
        assert win.method_combo.currentData() == "simsiam"
        assert win.dataset_chooser.source == DataConfig().dataset
        specs = {s.name: s for s in eval_specs()}
        for name, box in win.evaluate.spins.items():
            assert box.value() == specs[name].default, name

        for method in ("simsiam", "mae", "dino"):
            win.method_combo.setCurrentIndex(win.method_combo.findData(method))
            preset = default_config(method, accelerator=win.accelerator)
            for key, editor in win.form.editors.items():
                assert editor.default == preset.get(key), (method, key)
                assert f"Default: {_format(preset.get(key))}" in editor.widget.toolTip(), \
                    (method, key)
        win.method_combo.setCurrentIndex(win.method_combo.findData("simsiam"))
        tip = win.form.editors["optim.lr"].widget.toolTip()
        lr = default_config("simsiam", accelerator=win.accelerator).optim.lr
        assert f"Default: {_format(lr)}" in tip and "Default: 0.002" not in tip
    finally:
        win.close()
        win.deleteLater()


def test_a_text_method_form_shows_no_image_fields_and_keeps_their_values(qtbot):
    """Text methods read no augmentation, backbone or image data fields: the form hides
    them (images' forms hide the text fields) and the config it returns keeps them."""
    from engine.presets import default_config

    form = ConfigForm()
    qtbot.addWidget(form)
    gpt = default_config("gpt")
    form.set_config(gpt, defaults=gpt, modality="text")
    titles = {form.toolbox.itemText(i) for i in range(form.toolbox.count())}
    assert "Augmentation" not in titles and "Backbone" not in titles
    assert {"data.seq_len", "data.text_sample"} <= set(form.editors)
    assert not {"data.resolution", "data.shapes_count", "augment.crop_min_scale",
                "backbone.name"} & set(form.editors)
    cfg = form.config("pydocs")
    assert cfg.data.resolution == gpt.data.resolution and cfg.data.seq_len == 64

    simclr = default_config("simclr")
    form.set_config(simclr, defaults=simclr, modality="image")
    assert {"data.resolution", "augment.crop_min_scale", "backbone.name"} <= set(form.editors)
    assert not {"data.seq_len", "data.text_sample", "data.tokenizer"} & set(form.editors)
