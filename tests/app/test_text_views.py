"""The views of text runs: predictions, held-out curves, text hover, methods by data.

The panels are fed fake events (docs/ARCHITECTURE.md §4.6); the window tests use the real
registry and the built-in text corpus.
"""

from __future__ import annotations

import html

import numpy as np

from app.panels.embedding import EmbeddingPanel
from app.panels.text_preview import GOOD, TextPreviewPanel
from app.panels.training_plots import TrainingPlots
from engine.events import MonitorReport, MonitorSet, PreviewSnapshot, StepMetrics
from tests.app.test_embedding_panel import FakeWorker


def continuation(prompt: str = "def add(a, b):", greedy: str = "\n    return a + b") -> dict:
    return {"type": "continuation", "prompt": prompt, "greedy": greedy,
            "sampled": " # adds two numbers", "temperature": 0.8}


def masked() -> dict:
    tokens = list("The ␣cat") + ["[MASK]"]  # T h e ␣ c a t [MASK]
    tokens[4] = "[MASK]"
    return {"type": "masked", "tokens": tokens, "masks": [
        {"position": 4, "true": "c", "top5": ["c", "b", "h", "m", "r"],
         "probs": [0.61, 0.1, 0.05, 0.04, 0.02], "correct": True},
        {"position": 8, "true": "s", "top5": ["␣", ".", "s", "e", "!"],
         "probs": [0.4, 0.2, 0.15, 0.1, 0.05], "correct": False}]}


def order(true: str = "in order", predicted: str = "swapped") -> dict:
    return {"type": "order", "a": "Return the sum.", "b": "Raise on overflow.",
            "true": true, "predicted": predicted, "confidence": 0.73}


def text_snapshot(step: int, *items: dict) -> PreviewSnapshot:
    return PreviewSnapshot(step=step, kind="text", items=tuple(items))


def report(step: int, extra: dict, baseline: bool = False) -> MonitorReport:
    return MonitorReport(step=step, epoch=0.0, baseline=baseline, knn_accuracy=0.3, std=0.05,
                         std_reference=0.088, effective_rank=20.0, dim=128,
                         backbone_rank=10.0, backbone_dim=128, extra=extra)


# the predictions panel -------------------------------------------------------------------
def test_predictions_panel_renders_each_item_type_and_goes_back_in_history(qtbot):
    panel = TextPreviewPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.show()
    assert "No predictions yet" in panel.text()
    panel.add_event(text_snapshot(0, continuation(greedy=" pass"), masked(), order()))
    text = panel.text()
    assert "def add(a, b):" in text and " pass" in text and "adds two numbers" in text
    assert "temperature 0.8" in text
    assert "mask 1" in text and "mask 2" in text and "61%" in text and "15%" in text
    assert "✓" in text and "✗" in text
    assert "Return the sum." in text and "Raise on overflow." in text
    assert "swapped" in text and "in order" in text and "73%" in text
    html = panel.view.toHtml()
    assert GOOD in html  # the right guess is marked green
    title = panel.title.text()
    assert "Step 0" in title and "1 of 2 masked tokens" in title and "0 of 1 segment" in title

    panel.add_event(text_snapshot(100, continuation(greedy=" return a + b"),
                                  order(predicted="in order")))
    assert panel.current().step == 100 and "return a + b" in panel.text()
    assert "1 of 1 segment" in panel.title.text() and "latest" in panel.slider_label.text()
    panel.slider.setValue(0)  # back in history; stays there while the run goes on
    assert panel.current().step == 0 and " pass" in panel.text()
    panel.add_event(text_snapshot(200, continuation()))
    assert panel.current().step == 0 and panel.slider.maximum() == 2
    assert "1 / 3" in panel.slider_label.text()
    panel.slider.setValue(2)
    assert panel.current().step == 200


def test_predictions_panel_takes_only_text_snapshots_and_resumed_steps_replace(qtbot):
    panel = TextPreviewPanel()
    qtbot.addWidget(panel)
    img = np.zeros((2, 8, 8, 3), np.uint8)
    panel.add_event(PreviewSnapshot(step=5, kind="reconstruction", originals=img, inputs=img,
                                    outputs=img))
    assert panel.snapshots == []
    for step in (0, 100, 200):
        panel.add_event(text_snapshot(step, continuation()))
    panel.add_event(text_snapshot(100, continuation()))  # a resumed run redoes step 100
    assert [s.step for s in panel.snapshots] == [0, 100]


def test_unknown_item_types_and_keys_are_shown_not_fatal(qtbot):
    panel = TextPreviewPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.add_event(text_snapshot(
        7,
        {"type": "haiku", "lines": ["old pond", "frog"], "score": 0.5},  # an unknown type
        {"prompt": "no type at all"},
        {**continuation(), "beam_width": 4},  # a known type with a new key
        {"type": "masked", "tokens": "not a list", "masks": [{"position": "x"}, 3]},
        {"type": "masked", "tokens": ["a", "[MASK]"], "masks": [
            {"position": 1, "true": "b", "top5": ["b", "c"], "probs": None, "correct": True}]},
        {"type": "order"},  # every key missing
        {"type": "continuation", "prompt": None, "greedy": 3},
    ))
    text = panel.text()
    assert "haiku" in text and "old pond" in text and "score" in text
    assert "no type at all" in text
    assert "beam_width" in text and "4" in text
    assert "Step 7" in panel.title.text()


# held-out plots ------------------------------------------------------------------------
def test_heldout_bits_are_drawn_against_the_unigram_entropy_line(qtbot):
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.show()
    assert w.heldout_plot is None
    w.add_event(report(0, {"unigram_bits": 4.6, "heldout_bits_per_token": 8.1,
                           "heldout_loss": 5.6}, baseline=True))
    for step in (100, 200, 300):
        w.add_event(report(step, {"unigram_bits": 4.6, "heldout_bits_per_token": 8 - step / 60,
                                  "heldout_loss": 1.0}))
    w.refresh()
    assert w.heldout_plot is not None and "bits per token" in w.heldout_plot.titleLabel.text
    assert w.point_count("heldout:heldout_bits_per_token") == 4
    assert w.heldout_line.isVisible() and w.heldout_line.value() == 4.6
    assert "unigram entropy 4.60" in w.heldout_line.label.toPlainText()
    # the y range shows the line even while the curve is still far above it
    def line_in_view() -> bool:
        low, high = w.heldout_plot.getViewBox().viewRange()[1]
        return low <= 4.6 <= high and high >= 8.0

    qtbot.waitUntil(line_in_view, timeout=2000)
    w.clear()
    assert w.heldout_plot is None and "heldout:heldout_bits_per_token" not in w.curves


def test_heldout_masked_accuracy_has_the_majority_baseline_and_replays(qtbot):
    rows = [{"step": 0, "std": 0.07, "std_reference": 0.088, "effective_rank": 9,
             "backbone_rank": 6, "baseline": True, "heldout_masked_accuracy": 0.01,
             "heldout_majority_accuracy": 0.16, "heldout_sentence_accuracy": 0.5},
            {"step": 1, "loss": 5.0, "masked_accuracy": 0.02, "sentence_accuracy": 0.5},
            {"step": 2, "loss": 4.0, "masked_accuracy": 0.1, "sentence_accuracy": 0.6},
            {"step": 2, "std": 0.08, "effective_rank": 10, "backbone_rank": 7,
             "heldout_masked_accuracy": 0.2, "heldout_majority_accuracy": 0.16,
             "heldout_sentence_accuracy": 0.6}]
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.show()
    w.load_rows(rows)  # a reopened run: metrics.jsonl rows
    w.refresh()
    assert "masked-token accuracy" in w.heldout_plot.titleLabel.text
    assert w.point_count("heldout:heldout_masked_accuracy") == 2
    assert w.point_count("heldout:heldout_sentence_accuracy") == 2
    assert abs(w.heldout_line.value() - 0.16) < 1e-9
    assert "most-frequent-token baseline 16.0%" in w.heldout_line.label.toPlainText()
    # the method metrics streamed per step have readable names
    assert w.point_count("extra:masked_accuracy") == 2
    assert w.curves["extra:masked_accuracy"].name() == "masked-token accuracy"


def test_text_method_metrics_are_plotted_with_readable_names(qtbot):
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.show()
    for i in range(1, 6):
        w.add_event(StepMetrics(step=i, epoch=0.0, time=0.0, loss=3.0, lr=1e-3,
                                images_per_sec=10.0,
                                extra={"bits_per_token": 4.3, "positive_similarity": 0.9,
                                       "negative_similarity": 0.1}))
    w.refresh()
    assert w.point_count("extra:bits_per_token") == 5
    names = {k: w.curves[k].name() for k in w.curves if k.startswith("extra:")}
    assert names["extra:bits_per_token"] == "bits per token (training batches)"
    assert "similarity" in names["extra:positive_similarity"]
    assert "_" not in "".join(names.values())


def test_method_and_heldout_plots_share_the_bottom_row(qtbot):
    w = TrainingPlots()
    qtbot.addWidget(w)
    w.resize(1000, 800)
    w.show()
    w.add_event(report(0, {"unigram_bits": 4.6, "heldout_bits_per_token": 8.1}, True))
    w.add_event(StepMetrics(step=1, epoch=0.0, time=0.0, loss=3.0, lr=1e-3,
                            images_per_sec=10.0, extra={"bits_per_token": 7.0}))
    qtbot.wait(50)
    held = w.heldout_plot.sceneBoundingRect()
    method = w.method_plot.sceneBoundingRect()
    assert abs(held.top() - method.top()) < 2 and held.right() <= method.left() + 1


# embedding hover -----------------------------------------------------------------------
def test_hovering_a_text_point_shows_its_text_label_and_file(qtbot):
    from engine.events import EmbeddingSnapshot

    panel = EmbeddingPanel(worker=FakeWorker())
    qtbot.addWidget(panel)
    panel.resize(900, 600)
    panel.show()
    n = 60
    texts = tuple(f"Docstring number {i}: return the <value> of x." for i in range(n))
    long = "Parse " + "a_very_long_identifier_" * 10 + " and more words " * 40
    texts = (long, *texts[1:])
    rng = np.random.default_rng(0)
    panel.add_event(MonitorSet(indices=np.arange(n), labels=np.arange(n) % 3,
                               class_names=("asyncio", "email", "json"),
                               files=tuple(f"json/decoder.py#{i}" for i in range(n)),
                               thumbnails=None, texts=texts))
    assert not panel.thumb.isVisibleTo(panel) and "read its text" in panel.info.text()
    panel.add_event(EmbeddingSnapshot(step=0, features=rng.normal(size=(n, 8)),
                                      projections=rng.normal(size=(n, 8))))
    panel.show_point(5)
    info = panel.info.text().replace("\u200b", "")
    assert "json/decoder.py#5" in info and "label: json" in info
    assert "Docstring number 5: return the &lt;value&gt; of x." in info  # escaped
    panel.show_point(0)
    info = panel.info.text()
    assert "…" in info and len(info) < 1000  # shortened
    assert "a_very_long_identifier_" * 3 not in info  # the long identifier can wrap
    assert panel.info.width() <= 300  # and does not widen the side column


# the window: methods for the chosen data -------------------------------------------------
def text_method_names() -> set[str]:
    from engine.registry import available_methods

    return {m.name for m in available_methods() if m.modality == "text"}


def test_choosing_pydocs_lists_only_text_methods_and_shapes_brings_images_back(window, qtbot):
    win = window
    names = text_method_names()
    assert {"gpt", "mlm", "simcse"} <= names  # the text methods are registered
    qtbot.waitUntil(lambda: win.data_modality == "image", timeout=60_000)
    assert not set(win.listed_methods()) & names and "simclr" in win.listed_methods()

    win.dataset_chooser.set_source("pydocs")
    qtbot.waitUntil(lambda: win.data_modality == "text", timeout=60_000)
    assert set(win.listed_methods()) == names
    assert win.method_combo.currentData() in names
    assert "switched the method" in win.message_bar.text()
    assert "standard library" in win.dataset_chooser.description.text()  # its description
    assert "data.seq_len" in win.form.editors and "data.resolution" not in win.form.editors
    # the summary counts samples at the chosen method's sequence length
    win.method_combo.setCurrentIndex(win.method_combo.findData("gpt"))
    qtbot.waitUntil(lambda: "up to 64 tokens" in win.dataset_chooser.info.text(),
                    timeout=60_000)
    field = win.form.editors["data.seq_len"].widget
    field.selectAll()
    qtbot.keyClicks(field, "96")  # typed, as a user does
    qtbot.waitUntil(lambda: "up to 96 tokens" in win.dataset_chooser.info.text(),
                    timeout=60_000)
    # the text predictions tab replaces the image one
    tabs = win.tabs
    assert tabs.isTabVisible(tabs.indexOf(win.text_preview))
    assert not tabs.isTabVisible(tabs.indexOf(win.preview))

    win.dataset_chooser.set_source("shapes")
    qtbot.waitUntil(lambda: win.data_modality == "image", timeout=60_000)
    assert win.method_combo.currentData() == "simclr"  # back to the method used on images
    assert tabs.isTabVisible(tabs.indexOf(win.preview))


def test_a_folder_of_text_files_is_text_data(window, qtbot, tmp_path):
    win = window
    folder = tmp_path / "notes"
    for pkg in ("a", "b"):
        (folder / pkg).mkdir(parents=True)
        for i in range(3):
            (folder / pkg / f"{i}.txt").write_text(f"Note {i} about {pkg}.\n\nMore text.\n")
    qtbot.waitUntil(lambda: win.data_modality == "image", timeout=60_000)
    win.dataset_chooser.set_source(str(folder))
    qtbot.waitUntil(lambda: win.data_modality == "text", timeout=60_000)
    assert set(win.listed_methods()) == text_method_names()


def test_a_text_method_asked_for_brings_its_dataset(qtbot, tmp_path):
    from app.main_window import MainWindow

    win = MainWindow(runs_dir=tmp_path, method="gpt")  # no dataset: shapes by default
    win.show()
    try:
        qtbot.waitUntil(lambda: win.data_modality == "text", timeout=120_000)
        assert win.dataset_chooser.source == "pydocs"  # gpt's preset dataset
        assert win.method_combo.currentData() == "gpt"
        assert "switched the dataset to pydocs" in win.message_bar.text()
    finally:
        win.close()


def test_text_previews_go_to_the_text_panel_in_the_window(window):
    win = window
    img = np.zeros((2, 8, 8, 3), np.uint8)
    win.on_event(text_snapshot(10, continuation()))
    win.on_event(PreviewSnapshot(step=10, kind="reconstruction", originals=img, inputs=img,
                                 outputs=img))
    assert [s.kind for s in win.text_preview.snapshots] == ["text"]
    assert [s.kind for s in win.preview.snapshots] == ["reconstruction"]


def test_a_gpt_run_fills_the_text_views_and_reopens(window, qtbot):
    from tests.app.conftest import set_fields

    win = window
    win.dataset_chooser.set_source("pydocs")
    qtbot.waitUntil(lambda: win.data_modality == "text", timeout=60_000)
    win.method_combo.setCurrentIndex(win.method_combo.findData("gpt"))
    set_fields(win, {"optim.max_steps": 6, "monitor.every_steps": 3, "optim.batch_size": 8,
                     "optim.warmup_steps": 1, "monitor.monitor_size": 100,
                     "data.seq_len": 48, "method.dim": 32, "method.depth": 1,
                     "method.heads": 2})
    with qtbot.waitSignal(win.run_finished, timeout=300_000) as blocker:
        assert win.start_run()
    qtbot.waitUntil(lambda: not win.running, timeout=60_000)
    assert blocker.args[0].status == "finished"
    assert "text samples" in win.run_label.text() and "samples/s" in win.ips_label.text()
    snap = win.text_preview.current()
    assert snap is not None and snap.step == 6 and not win.preview.snapshots
    assert snap.items[0]["type"] == "continuation" and "most likely" in win.text_preview.text()
    win.plots.refresh()
    assert win.plots.point_count("heldout:heldout_bits_per_token") == 3  # steps 0, 3, 6
    assert win.plots.heldout_line.isVisible() and win.plots.point_count(
        "extra:bits_per_token") == 6
    ms = win.embedding.monitor
    assert ms is not None and ms.thumbnails is None and len(ms.texts) == len(ms.files)
    win.embedding.show_point(0)
    first_word = html.escape(ms.texts[0].split()[0][:20], quote=False)
    assert first_word in win.embedding.info.text()

    run_dir = win.run_dir
    win.plots.clear()
    win.text_preview.clear()
    assert win.open_run(run_dir)  # reopened: the same curves and predictions
    assert win.plots.point_count("heldout:heldout_bits_per_token") == 3
    assert [s.step for s in win.text_preview.snapshots] == [0, 3, 6]
    tabs = win.tabs
    assert tabs.isTabVisible(tabs.indexOf(win.text_preview))
