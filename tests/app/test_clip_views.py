"""The views of image-text (CLIP) runs: the Matching tab's heat map, search and curves,
and CLIP listed for captioned images.

The panel is fed constructed events (docs/ARCHITECTURE.md §4.6); the window tests use the
real registry and the built-in captioned shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from app.panels.clip_panel import MatchingPanel, similarity_of
from app.panels.preview import PreviewPanel
from engine.events import MonitorReport, MonitorSet, PreviewSnapshot, QueryResult

COLOURS = ("red", "blue", "green", "yellow", "pink", "black")
N = 6


def captions(n: int = N) -> list[str]:
    return [f"a {COLOURS[i % 6]} circle, number {i}" for i in range(n)]


def similarity_snapshot(step: int, diagonal: float = 0.6, n: int = N) -> PreviewSnapshot:
    rng = np.random.default_rng(step)
    mat = np.clip(np.eye(n) * diagonal + rng.normal(0, 0.05, (n, n)), -1, 1)
    images = np.zeros((n, 16, 16, 3), np.uint8)
    images[:, :, :, 0] = np.arange(n)[:, None, None] * 40
    return PreviewSnapshot(step=step, kind="similarity", originals=images,
                           items=({"type": "similarity", "captions": captions(n),
                                   "similarity": mat.round(4).tolist()},),
                           input_title="images", output_title="captions")


def monitor_set(n: int = 40) -> MonitorSet:
    thumbs = np.zeros((n, 32, 32, 3), np.uint8)
    return MonitorSet(indices=np.arange(n), labels=np.arange(n) % 6,
                      class_names=("circle", "square", "triangle", "star", "cross", "heart"),
                      files=tuple(f"shape_{i:05d}" for i in range(n)), thumbnails=thumbs,
                      texts=tuple(f"caption of image {i}" for i in range(n)))


def report(step: int, level: float, baseline: bool = False) -> MonitorReport:
    extra = {f"{way}_r{k}": min(1.0, level * k / 5) for way in ("image_to_text",
                                                                "text_to_image")
             for k in (1, 5, 10)}
    extra.update({f"recall_chance_r{k}": k / 120 for k in (1, 5, 10)},
                 zero_shot_accuracy=level, zero_shot_chance=1 / 6)
    return MonitorReport(step=step, epoch=0.0, baseline=baseline, knn_accuracy=0.4, std=0.05,
                         std_reference=0.088, effective_rank=20.0, dim=128,
                         backbone_rank=10.0, backbone_dim=128, extra=extra)


@pytest.fixture
def panel(qtbot):
    p = MatchingPanel()
    qtbot.addWidget(p)
    p.resize(1100, 800)
    p.show()
    return p


# the heat map -----------------------------------------------------------------------------
def test_the_heat_map_shows_the_latest_similarity_snapshot_with_thumbnails(panel):
    assert panel.current() is None and "No similarity map yet" in panel.title.text()
    panel.add_event(similarity_snapshot(0, diagonal=0.0))
    panel.add_event(similarity_snapshot(50, diagonal=0.7))
    snap = panel.current()
    assert snap is not None and snap.step == 50
    mat = panel.map.matrix
    assert mat is not None and mat.shape == (N, N)
    assert panel.map.image.image.shape == (N, N)
    assert list(panel.map.image.levels) == pytest.approx(list(panel.map.levels))
    assert len(panel.map.thumbs) == N  # each row's image beside it
    title = panel.title.text()
    assert "Step 50" in title and f"{N} of {N} images" in title
    assert panel.map.row_captions[0] == "a red circle, number 0"  # beside its row
    ticks = panel.map.plot.getAxis("right")._tickLevels[0]
    assert ticks[1][1].startswith("2. a blue circle")
    lo, hi = panel.map.levels  # the colour scale spans the run's values
    assert lo <= float(panel.map.matrix.min()) and hi >= float(panel.map.matrix.max())
    assert hi - lo < 1.5
    assert "2 / 2 · step 50 (latest)" in panel.slider_label.text()


def test_the_slider_goes_back_in_history_and_stays_there(panel):
    for step in (0, 50, 100):
        panel.add_event(similarity_snapshot(step, diagonal=step / 200))
    panel.slider.setValue(0)
    assert panel.current().step == 0 and "Step 0" in panel.title.text()
    panel.add_event(similarity_snapshot(150))  # the run goes on; the view stays at step 0
    assert panel.current().step == 0 and panel.slider.maximum() == 3
    assert "1 / 4" in panel.slider_label.text()
    panel.slider.setValue(3)
    assert panel.current().step == 150
    panel.add_event(similarity_snapshot(100))  # a resumed run redoes step 100
    assert [s.step for s in panel.snapshots] == [0, 50, 100]


def test_hovering_a_cell_names_both_captions_and_the_value(panel, qtbot):
    panel.add_event(similarity_snapshot(10))
    value = panel.map.matrix[2, 4]
    text = panel.hover_text(2, 4)
    assert "Image 3" in text and "a green circle, number 2" in text
    assert "a pink circle, number 4" in text and f"{value:.3f}" in text
    assert "its own caption" in panel.hover_text(1, 1)
    assert panel.hover_text(N, 0) == ""
    # a real mouse over the cell's centre, coming from off the cells: Qt sends no move
    # event to where its cursor already is (an earlier test may have left it there), and
    # pyqtgraph drops a move that comes within 1/mouseRateLimit s of the last one
    qtbot.mouseMove(panel.map.viewport(), QPoint(1, 1))
    qtbot.wait(50)
    qtbot.mouseMove(panel.map.viewport(), panel.map.mapFromScene(panel.map.cell_centre(2, 4)))
    qtbot.waitUntil(lambda: "a pink circle, number 4" in panel.hover.text(), timeout=3000)
    # a move at once after it (a real mouse sends one every few ms) is not dropped
    qtbot.mouseMove(panel.map.viewport(), panel.map.mapFromScene(panel.map.cell_centre(1, 1)))
    assert "its own caption" in panel.hover.text()
    assert panel.map.cell_at(panel.map.cell_centre(5, 0)) == (5, 0)


def test_other_previews_and_malformed_items_never_break_it(panel, qtbot):
    img = np.zeros((2, 8, 8, 3), np.uint8)
    panel.add_event(PreviewSnapshot(step=5, kind="reconstruction", originals=img, inputs=img,
                                    outputs=img))
    assert panel.snapshots == []
    bad = PreviewSnapshot(step=7, kind="similarity",
                          items=({"type": "similarity", "similarity": "not a matrix"},))
    panel.add_event(bad)
    assert "holds no similarity matrix" in panel.title.text() and panel.map.matrix is None
    assert similarity_of(bad) is None
    short = PreviewSnapshot(step=8, kind="similarity",  # no captions, no images
                            items=({"type": "similarity", "similarity": [[0.5, 0.1],
                                                                         [0.0, 0.4]]},))
    panel.add_event(short)
    assert panel.map.matrix.shape == (2, 2) and panel.map.thumbs == []
    assert "0.100" in panel.hover_text(0, 1)
    # the image predictions panel leaves similarity maps to this one
    images = PreviewPanel()
    qtbot.addWidget(images)
    images.add_event(similarity_snapshot(3))
    assert images.snapshots == []


# search -------------------------------------------------------------------------------------
def test_typing_a_query_asks_for_it_and_the_ranked_answer_is_drawn(panel, qtbot):
    panel.add_event(monitor_set())
    panel.search_box.setText("   ")
    panel.search()
    assert "Type a sentence" in panel.search_status.text() and panel.pending is None
    qtbot.keyClicks(panel.search_box, "a red circle")
    with qtbot.waitSignal(panel.query_requested) as got:
        qtbot.keyClick(panel.search_box, Qt.Key.Key_Return)
    assert got.args == ["a red circle"] and panel.pending == "a red circle"
    assert "Searching" in panel.search_status.text()
    panel.add_event(QueryResult(30, "a red circle", (7, 3, 12), (0.61, 0.42, 0.3)))
    assert panel.pending is None and len(panel.cards) == 3
    caps = panel.result_captions()
    assert "caption of image 7" in caps[0] and "caption of image 12" in caps[2]
    assert panel.cards[0].thumb.pixmap() is not None and not panel.cards[0].thumb.pixmap().isNull()
    assert "#1" in panel.cards[0].findChildren(type(panel.title))[0].text()
    assert "0.61" in panel.cards[0].findChildren(type(panel.title))[0].text()
    status = panel.search_status.text()
    assert "a red circle" in status and "step 30" in status and "of 40" in status


def test_messages_and_stale_answers(panel):
    panel.add_event(monitor_set())
    panel.pending = "a blue square"
    panel.add_event(QueryResult(5, "a red circle", (1,), (0.5,)))  # overtaken: ignored
    assert panel.cards == [] and panel.pending == "a blue square"
    panel.add_event(QueryResult(5, "a blue square", message="The first monitor step has "
                                "not been measured yet."))
    assert "not been measured" in panel.search_status.text() and panel.pending is None
    panel.show_message("Run x has no checkpoint yet")
    assert "no checkpoint" in panel.search_status.text()
    # without a monitor set the results still list the positions
    panel.monitor = None
    panel.add_event(QueryResult(5, "a star", (4, 2), (0.3, 0.2)))
    assert len(panel.cards) == 2 and "monitor image 4" in panel.cards[0].toolTip()


# curves ---------------------------------------------------------------------------------
def test_recall_and_zero_shot_curves_are_drawn_beside_chance(panel):
    c = panel.curves
    c.add_report(report(0, 0.05, baseline=True))
    c.add_report(report(50, 0.3))
    c.add_report(report(100, 0.5))
    c.refresh()
    for way in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            assert c.point_count(f"{way}_r{k}") == 3
            line = c.chance_lines[f"{way}_chance_r{k}"]
            assert line.isVisible() and line.value() == pytest.approx(k / 120)
    assert c.point_count("zero_shot_accuracy") == 3 and c.point_count("knn") == 3
    zs = c.chance_lines["zero_shot_chance"]
    assert zs.value() == pytest.approx(1 / 6) and "chance 16.7%" in zs.label.toPlainText()
    assert "Text → image recall" in c.t2i.titleLabel.text
    assert "chance" in c.chance_lines["text_to_image_chance_r10"].label.toPlainText()
    names = [c.curves[f"text_to_image_r{k}"].name() for k in (1, 5, 10)]
    assert names == ["@1", "@5", "@10"]
    c.reset()
    assert c.point_count("zero_shot_accuracy") == 0 and not zs.isVisible()


def test_a_saved_run_replays_from_its_folder(panel, tmp_path):
    from engine.runs import RunFolder

    run = RunFolder.create(tmp_path, "clip", "shapes")
    for step in (0, 3, 6):
        run.save_preview(similarity_snapshot(step))
        run.append_metrics(report(step, step / 10, baseline=step == 0).to_row())
    run.save_monitor_set(monitor_set())
    run.close()
    panel.load_run(str(run.path))
    assert [s.step for s in panel.snapshots] == [0, 3, 6]
    assert panel.monitor is not None and len(panel.monitor.texts) == 40
    assert panel.curves.point_count("text_to_image_r5") == 3


# the window --------------------------------------------------------------------------------
def test_clip_is_listed_for_captioned_images_only(window, qtbot):
    win = window
    qtbot.waitUntil(lambda: win.data_modality == "image" and win.data_captioned,
                    timeout=60_000)
    assert "clip" in win.listed_methods() and "simclr" in win.listed_methods()
    win.method_combo.setCurrentIndex(win.method_combo.findData("clip"))
    assert win.dataset_chooser.source == "shapes"  # choosing clip keeps the data
    assert "data.seq_len" in win.form.editors and "data.resolution" in win.form.editors
    assert "augment.crop_min_scale" in win.form.editors  # the image tower's pages too
    tabs = win.tabs
    assert tabs.isTabVisible(tabs.indexOf(win.matching))
    assert not tabs.isTabVisible(tabs.indexOf(win.preview))
    assert not tabs.isTabVisible(tabs.indexOf(win.text_preview))

    win.dataset_chooser.set_source("digits")  # no captions: clip is not offered
    qtbot.waitUntil(lambda: win.data_modality == "image" and not win.data_captioned,
                    timeout=60_000)
    assert "clip" not in win.listed_methods()
    assert win.method_combo.currentData() != "clip"
    assert "needs captioned images" in win.message_bar.text()
    assert tabs.isTabVisible(tabs.indexOf(win.preview))
    assert not tabs.isTabVisible(tabs.indexOf(win.matching))


def test_a_captioned_folder_lists_clip(window, qtbot, tmp_path):
    from PIL import Image

    folder = tmp_path / "pets"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"cat_{i}.png")
        (folder / f"cat_{i}.txt").write_text(f"a cat, number {i}")
    win = window
    qtbot.waitUntil(lambda: win.data_modality == "image", timeout=60_000)
    win.dataset_chooser.set_source(str(folder))
    qtbot.waitUntil(lambda: win.data_captioned and win.data_modality == "image",
                    timeout=60_000)
    assert "clip" in win.listed_methods()


def test_a_clip_run_fills_the_heat_map_and_answers_typed_queries(window, qtbot):
    """During the run (paused: the trainer answers between steps) and after it (from
    the saved run); then the reopened run replays the heat maps and curves."""
    from tests.app.conftest import set_fields

    win = window
    qtbot.waitUntil(lambda: win.data_captioned, timeout=60_000)
    win.method_combo.setCurrentIndex(win.method_combo.findData("clip"))
    set_fields(win, {"optim.max_steps": 6, "monitor.every_steps": 3, "optim.batch_size": 16,
                     "monitor.monitor_size": 120, "data.shapes_count": 200,
                     "backbone.width": 8, "method.dim": 32, "method.depth": 1,
                     "method.heads": 2, "data.seq_len": 48, "optim.warmup_steps": 1})
    m = win.matching
    assert win.start_run()
    qtbot.waitUntil(lambda: bool(m.snapshots), timeout=300_000)  # the random-init map
    win.toggle_pause()
    qtbot.waitUntil(lambda: win.paused or not win.running, timeout=120_000)
    assert win.paused, "the run ended before it could be paused"
    m.search_box.setText("a red circle")
    m.search_button.click()
    qtbot.waitUntil(lambda: m.pending is None, timeout=60_000)
    live = m.result
    assert live is not None and len(live.indices) == 12 and len(m.cards) == 12
    assert m.cards[0].thumb.pixmap() is not None and m.result_captions()[0]
    with qtbot.waitSignal(win.run_finished, timeout=300_000) as blocker:
        win.toggle_pause()
    qtbot.waitUntil(lambda: not win.running, timeout=60_000)
    assert blocker.args[0].status == "finished"
    assert [s.step for s in m.snapshots] == [0, 3, 6]
    assert m.map.matrix is not None and m.map.matrix.shape[0] == m.map.matrix.shape[1] > 1
    assert len(m.map.thumbs) == m.map.matrix.shape[0]
    assert "pairs/s" in win.ips_label.text() and "image-caption pairs" in win.run_label.text()
    m.curves.refresh()
    assert m.curves.point_count("text_to_image_r5") == 3  # steps 0, 3, 6
    assert m.curves.chance_lines["zero_shot_chance"].isVisible()
    assert not win.preview.snapshots  # the heat maps are not image previews

    m.search_box.setText("a blue square")  # after the run: the saved run answers
    m.search()
    qtbot.waitUntil(lambda: m.pending is None, timeout=60_000)
    assert m.result is not live and m.result.query == "a blue square"
    assert m.result.step == 6 and len(m.cards) == 12, m.search_status.text()

    run_dir = win.run_dir
    m.clear()
    assert win.open_run(run_dir)  # reopened: the same heat maps and curves
    assert [s.step for s in m.snapshots] == [0, 3, 6]
    assert m.curves.point_count("image_to_text_r1") == 3
    assert m.monitor is not None and m.monitor.thumbnails is not None
    assert win.tabs.isTabVisible(win.tabs.indexOf(m))
