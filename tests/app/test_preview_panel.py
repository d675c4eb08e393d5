"""The preview panel on its own, fed fake snapshots (docs/ARCHITECTURE.md §4.6)."""

from __future__ import annotations

import numpy as np

from app.panels.preview import PreviewPanel
from engine.events import PreviewSnapshot, RunStarted, StepMetrics


def recon(step: int, value: int, n: int = 4) -> PreviewSnapshot:
    img = np.full((n, 16, 16, 3), value, np.uint8)
    return PreviewSnapshot(step=step, kind="reconstruction", originals=img, inputs=img // 2,
                           outputs=img, input_title="masked", output_title="reconstruction")


def grab_pixel(panel: PreviewPanel, row: int, col: int) -> tuple[int, int, int]:
    rect = panel.view.cell_rects()[row][col]
    c = panel.view.grab().toImage().pixelColor(rect.center())
    return c.red(), c.green(), c.blue()


def test_reconstruction_grid_is_painted_and_follows_the_run(qtbot):
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    panel.add_snapshot(recon(0, 200))
    rects = panel.view.cell_rects()
    assert len(rects) == 3 and all(len(r) == 4 for r in rects)  # original, input, output
    assert grab_pixel(panel, 0, 0) == (200, 200, 200)
    assert grab_pixel(panel, 1, 2) == (100, 100, 100)  # what the model saw
    panel.add_snapshot(recon(25, 60))
    assert panel.current().step == 25  # at the newest snapshot it follows the run
    assert grab_pixel(panel, 2, 3) == (60, 60, 60)

    panel.slider.setValue(0)  # scroll back: stays there while new snapshots arrive
    panel.add_snapshot(recon(50, 90))
    assert panel.current().step == 0 and panel.slider.maximum() == 2
    assert "1 / 3" in panel.slider_label.text()
    panel.slider.setValue(2)
    assert panel.current().step == 50 and "latest" in panel.slider_label.text()


def test_resumed_run_replaces_snapshots_from_its_step(qtbot):
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    for s in (0, 25, 50):
        panel.add_snapshot(recon(s, 10))
    panel.add_snapshot(recon(25, 99))
    assert [s.step for s in panel.snapshots] == [0, 25]


def test_classification_shows_labels_and_accuracy_against_chance(qtbot):
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    panel.add_event(RunStarted(run_id="r", run_dir="/tmp/r", method="rotation", device="cpu",
                               backbone="small_cnn", feature_dim=8, n_images=10,
                               total_steps=10, start_step=0, steps_per_epoch=1, config={},
                               pretext_chance=0.25))
    assert panel.acc_plot.isVisibleTo(panel) and panel.chance_line.value() == 0.25
    for step in range(1, 11):
        panel.add_event(StepMetrics(step=step, epoch=0.0, time=0.0, loss=1.0, lr=0.1,
                                    images_per_sec=1.0, extra={"pretext_accuracy": step / 10}))
    panel.refresh()
    x, y = panel.acc_curve.getData()
    assert len(x) == 10 and y[-1] == 1.0
    img = np.zeros((3, 16, 16, 3), np.uint8)
    panel.add_snapshot(PreviewSnapshot(step=10, kind="classification", originals=img,
                                       inputs=img, predicted=("90°", "0°", "180°"),
                                       true=("90°", "90°", "180°"), input_title="rotated"))
    assert len(panel.view.cell_rects()) == 1  # inputs only, labels under them
    assert "2 of 3" in panel.title.text()
    # the first prediction is right (green), the second wrong (red)
    image = panel.view.grab().toImage()

    def has_colour(rect, colour):
        for x in range(rect.left(), rect.right()):
            for y in range(rect.bottom() + 2, rect.bottom() + 18):
                c = image.pixelColor(x, y)
                if abs(c.red() - colour[0]) < 40 and abs(c.green() - colour[1]) < 40 and \
                        abs(c.blue() - colour[2]) < 40:
                    return True
        return False

    rects = panel.view.cell_rects()[0]
    assert has_colour(rects[0], (44, 160, 44)) and not has_colour(rects[0], (214, 39, 40))
    assert has_colour(rects[1], (214, 39, 40))


def test_empty_panel_explains_itself(qtbot):
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert panel.view.cell_rects() == [] and not panel.acc_plot.isVisibleTo(panel)
