"""The honest verdict on learning: a run whose kNN stays at the BatchNorm-calibrated random
encoder's after a fair share of its steps is told so, in plain words."""

from __future__ import annotations

from engine import events as ev
from engine.runs import RunFolder
from engine.train import Trainer
from engine.verdict import FAIR_SHARE, not_learning_message
from tests.engine.conftest import small_config


def test_too_early_or_above_the_baseline_says_nothing():
    assert not_learning_message(0.5, 0.5, int(FAIR_SHARE * 100) - 1, 100) is None
    assert not_learning_message(0.5, 0.52, 50, 100) is None
    assert not_learning_message(None, 0.4, 50, 100) is None
    text = not_learning_message(0.5, 0.49, 50, 100)
    assert text is not None and "50 of 100 steps" in text and "49.0%" in text
    assert "50.0%" in text and "BatchNorm" in text and "crop_min_scale" in text
    assert "linear probe" not in text and "longer schedule" in text


def test_pretext_and_reconstruction_runs_are_pointed_to_the_linear_probe():
    """Their kNN can stay below the random encoder's while a linear probe gains (jigsaw and
    denoising on digits, README): the message says where to look."""
    for family in ("pretext", "reconstruction"):
        text = not_learning_message(0.5, 0.4, 50, 100, family)
        assert text is not None and "--protocols linear" in text and family in text
        # more steps sharpened their task and moved their kNN further down on digits
        assert "Try a longer schedule" not in text and "joint-embedding method" in text
    for family in ("contrastive", "non-contrastive"):
        text = not_learning_message(0.5, 0.4, 50, 100, family)
        assert text is not None and "linear probe" not in text


def test_a_collapsed_run_is_told_the_collapse_is_why():
    """BYOL without its predictor (the collapse demo) stays at the random encoder's kNN
    because it collapsed: advice to train longer would send the user the wrong way."""
    for verdict, words in (("complete", "nearly the same embedding"),
                           ("dimensional", "only a few directions")):
        text = not_learning_message(0.22, 0.18, 50, 150, "non-contrastive", verdict)
        assert text is not None and words in text and "Collapse tab" in text
        assert "Try a longer schedule" not in text
    assert "Collapse tab" not in not_learning_message(0.22, 0.18, 50, 150, "contrastive")


def test_a_run_that_does_not_learn_is_told_once(tmp_path):
    # a learning rate too small to move the weights of a ViT (no BatchNorm, whose running
    # statistics would move the features anyway): kNN stays at the random encoder's
    cfg = small_config("mae", 10, **{"optim.lr": 1e-9, "monitor.every_steps": 4})
    events = list(Trainer(cfg, tmp_path).run())
    said = [e.message for e in events if isinstance(e, ev.RunWarning)
            and e.message.startswith("Not learning yet")]
    assert len(said) == 1, said
    assert "--protocols linear" in said[0]  # MAE is a reconstruction method
    assert isinstance(events[-1], ev.Finished)
    assert RunFolder(events[-1].run_dir).read_summary()["not_learning_at"] == 4


def test_a_run_that_learns_is_not(tmp_path):
    cfg = small_config("rotation", 30, **{"monitor.every_steps": 10})
    events = list(Trainer(cfg, tmp_path).run())
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    said = [e for e in events if isinstance(e, ev.RunWarning)
            and e.message.startswith("Not learning yet")]
    base, last = reports[0].knn_accuracy, reports[-1].knn_accuracy
    assert (last > base + 0.01) == (not said)  # told exactly when it did not beat it
