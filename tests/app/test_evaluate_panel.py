"""The Evaluate tab on its own: an image-text run's zero-shot and retrieval rows, the
zero-shot templates line."""

from __future__ import annotations

from app.panels.evaluate import EvaluatePanel


def paired_evaluation() -> dict:
    """What evaluate_run returns for a CLIP run (only the parts the tab reads)."""
    from engine.evaluate import EvalOptions

    def retrieval(r: float) -> dict:
        out = {f"{way}_r{k}": r for way in ("image_to_text", "text_to_image")
               for k in (1, 5, 10)}
        return {**out, **{f"recall_chance_r{k}": k / 40 for k in (1, 5, 10)}, "pairs": 40}

    return {"settings": EvalOptions().to_dict(), "checkpoint_step": 4,
            "split": {"train": 160, "val": 40},
            "results": {"knn": {"trained": {"accuracy": 0.5}, "random_init": {"accuracy": 0.3},
                                "seconds": 0.1},
                        "zeroshot": {"trained": {"accuracy": 0.45, "chance": 1 / 6,
                                                 "templates": 4},
                                     "random_init": {"accuracy": 0.2, "chance": 1 / 6,
                                                     "templates": 4}, "seconds": 0.2},
                        "retrieval": {"trained": retrieval(0.25),
                                      "random_init": retrieval(0.05), "seconds": 0.1}}}


def test_an_image_text_evaluation_shows_zero_shot_and_retrieval_rows(qtbot):
    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    panel.show_results(paired_evaluation())
    t = panel.table
    names = [t.item(r, 0).text() for r in range(t.rowCount())]
    assert t.rowCount() == 1 + 1 + 6
    row = next(r for r, n in enumerate(names) if n.startswith("zero-shot from prompts"))
    assert "chance 16.7%" in names[row]
    assert [t.item(row, c).text() for c in (1, 2, 3)] == ["45.0%", "20.0%", "+25.0 pt"]
    assert sum(n.startswith(("image→text recall@", "text→image recall@")) for n in names) == 6


def test_the_templates_line_reaches_the_options(qtbot):
    from engine.evaluate import EvalOptions

    panel = EvaluatePanel()
    qtbot.addWidget(panel)
    assert panel.eval_options().zeroshot_templates == EvalOptions().zeroshot_templates
    assert panel.templates_edit.text() == EvalOptions().zeroshot_templates  # the default
    panel.templates_edit.setText("  a photo of a {}.|a {}  ")
    assert panel.eval_options().templates() == ("a photo of a {}.", "a {}")
    panel.templates_edit.setText("")
    assert panel.eval_options().zeroshot_templates == EvalOptions().zeroshot_templates
