"""The "What it trains on" tab: live before Start, redrawn by every form change."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtWidgets import QLabel, QPushButton

from engine.views import SAMPLES


def pictures(panel) -> list[QLabel]:
    labels = [panel.grid.itemAt(i).widget() for i in range(panel.grid.count())]
    return [w for w in labels if isinstance(w, QLabel) and w.pixmap() is not None
            and not w.pixmap().isNull()]


def texts(panel) -> list[str]:
    labels = [panel.grid.itemAt(i).widget() for i in range(panel.grid.count())]
    return [w.text() for w in labels if isinstance(w, QLabel) and w.objectName() == "viewText"]


def type_into(qtbot, win, key: str, text: str) -> None:
    """Type ``text`` over field ``key`` as a user would (each key press edits the form)."""
    box = win.form.editors[key].widget
    box.selectAll()
    qtbot.keyClicks(box, text)


def choose(win, qtbot, method: str) -> None:
    qtbot.waitUntil(lambda: win.method_combo.findData(method) >= 0, timeout=60_000)
    win.method_combo.setCurrentIndex(win.method_combo.findData(method))
    qtbot.waitUntil(lambda: win.views.drawing is not None
                    and win.views.drawing.method == method, timeout=60_000)


def test_the_tab_shows_the_default_methods_views_before_start(window, qtbot):
    win = window
    assert win.tabs.currentWidget() is win.views
    choose(win, qtbot, "simclr")
    d = win.views.drawing
    assert [v.title for v in d.views] == ["view 1", "view 2"]
    # a picture per sample and column: the sample, view 1, view 2
    qtbot.waitUntil(lambda: len(pictures(win.views)) == 3 * SAMPLES, timeout=10_000)
    assert "drawn in" in win.views.timing.text()


def test_a_form_change_redraws_at_once(window, qtbot):
    win = window
    choose(win, qtbot, "simclr")
    before = win.views.drawing.views[0].images
    with qtbot.waitSignal(win.views.drawn, timeout=5_000):
        type_into(qtbot, win, "augment.crop_min_scale", "0.95")
    after = win.views.drawing.views[0].images
    assert not torch.equal(before, after)
    # a new draw: the same settings, other random crops
    with qtbot.waitSignal(win.views.drawn, timeout=5_000):
        win.views.new_draw.click()
    assert win.views.drawing.draw == 1
    assert not torch.equal(win.views.drawing.views[0].images, after)


def test_pretext_and_masking_methods_show_their_own_inputs(window, qtbot):
    win = window
    choose(win, qtbot, "rotation")
    assert len(win.views.drawing.views) == 4
    choose(win, qtbot, "mae")
    titles = [v.title for v in win.views.drawing.views]
    assert "visible patches" in titles
    with qtbot.waitSignal(win.views.drawn, timeout=5_000):
        type_into(qtbot, win, "method.mask_ratio", "0.25")  # each key redraws, coalesced
    qtbot.wait(50)
    cap = next(v.caption for v in win.views.drawing.views if v.title == "visible patches")
    assert cap.startswith("48 of 64")  # 75 % of the 8x8 patches kept


def test_a_bad_field_names_the_problem_and_the_window_survives(window, qtbot):
    win = window
    choose(win, qtbot, "simclr")
    win.form.editors["optim.lr"].widget.setText("-1")
    win.views.redraw()
    assert win.views.message.isVisible()
    assert "optim.lr" in win.views.message.text()
    win.form.editors["optim.lr"].widget.setText("0.01")
    win.views.redraw()
    assert not win.views.message.isVisible()


def test_colorization_on_grey_digits_says_why_before_start(window, qtbot):
    """Digits have no colour: the tab says so (and what to choose) instead of drawing,
    and draws again for a dataset in colour."""
    win = window
    choose(win, qtbot, "simclr")
    win.dataset_chooser.set_source("digits")
    win.method_combo.setCurrentIndex(win.method_combo.findData("colorization"))
    qtbot.waitUntil(lambda: win.views.message.isVisible()
                    and "needs colour images" in win.views.message.text(), timeout=60_000)
    assert "another method" in win.views.message.text()
    assert not pictures(win.views)  # not the last method's pictures of another dataset
    win.dataset_chooser.set_source("shapes")
    qtbot.waitUntil(lambda: win.views.drawing is not None
                    and win.views.drawing.method == "colorization"
                    and not win.views.message.isVisible(), timeout=60_000)


def test_text_methods_show_their_masked_and_shifted_rows(window, qtbot):
    win = window
    win.dataset_chooser.set_source("pydocs")
    choose(win, qtbot, "mlm")
    qtbot.waitUntil(lambda: any("[MASK]" in t for t in texts(win.views)), timeout=60_000)
    choose(win, qtbot, "gpt")
    d = win.views.drawing
    assert [v.title for v in d.views] == ["input", "target"]
    assert d.views[0].texts[0][1:] == d.views[1].texts[0][:-1]


def test_start_shows_the_curves(window, qtbot):
    from tests.app.conftest import FAST, set_fields

    win = window
    choose(win, qtbot, "simclr")
    set_fields(win, {**FAST, "optim.max_steps": 2})
    assert win.start_run()
    assert win.tabs.currentWidget() is win.plots


def test_what_is_this_explains_the_tab_in_view(window, qtbot):
    win = window
    for tab in (win.collapse, win.plots, win.views):
        win.tabs.setCurrentWidget(tab)
        win.help_button.click()
        label = win.tabs.tabText(win.tabs.currentIndex())
        from engine.glossary import entries_for

        text = win.help_dialog.text()
        for title, body in entries_for(label):
            assert title in text and body[:40] in text, (label, title)
    win.tabs.setCurrentWidget(win.collapse)
    win.help_button.click()
    assert "Complete collapse" in win.help_dialog.text()
    assert win.help_dialog.isVisible()


def test_suggest_fills_the_learning_rate_from_a_range_test(window, qtbot):
    from tests.app.conftest import FAST, set_fields

    win = window
    choose(win, qtbot, "simclr")
    set_fields(win, FAST)
    assert win.form.editors["optim.lr"].findChild(QPushButton, "lrSuggest") is not None
    dlg = win.suggest_lr(steps=12)
    with qtbot.waitSignal(dlg.finished_test, timeout=120_000) as got:
        pass
    result = got.args[0]
    assert result is not None and result.suggestion is not None
    assert dlg.use_button.isEnabled() and "Suggested learning rate" in dlg.status.text()
    dlg.use_button.click()
    assert win.form.editors["optim.lr"].value() == pytest.approx(
        float(f"{result.suggestion:.3g}"))
