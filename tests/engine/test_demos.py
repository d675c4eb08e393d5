"""Guided demos: every demo's runs validate and train, and the closing text is written
from what the runs measured (change the events, the text changes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine import events as ev
from engine.demos import DEMO_TITLES, DEMOS, RunFacts, facts_of_run, get_demo
from engine.sweep import Sweep
from tests.engine.conftest import SMALL


def report(step: int, knn: float, std: float = 0.08, verdict: str = "healthy",
           baseline: bool = False, **extra: float) -> ev.MonitorReport:
    return ev.MonitorReport(step=step, epoch=0.0, baseline=baseline, knn_accuracy=knn,
                            std=std, std_reference=0.0884, effective_rank=40.0, dim=128,
                            backbone_rank=20.0, backbone_dim=64, verdict=verdict,
                            extra=dict(extra))


def finished(classes: int = 6) -> ev.Finished:
    return ev.Finished(status="finished", step=100, run_dir="/x",
                       summary={"classes": [f"c{i}" for i in range(classes)]})


def run_events(knn_end: float, verdict_at: int | None = None) -> list[ev.Event]:
    evs: list[ev.Event] = [report(0, 0.22, baseline=True)]
    for step in (25, 50, 75, 100):
        bad = verdict_at is not None and step >= verdict_at
        evs.append(report(step, knn_end if step == 100 else 0.3,
                          std=0.005 if bad else 0.08,
                          verdict="complete" if bad else "healthy"))
    evs.append(finished())
    return evs


def test_the_conclusion_is_built_from_the_measurements():
    demo = get_demo("simclr-learns")
    good = demo.conclude([RunFacts.from_events("SimCLR", run_events(0.857))])
    assert "22.0 %" in good and "85.7 %" in good and "16.7 %" in good  # chance of 6
    assert "learned" in good
    other = demo.conclude([RunFacts.from_events("SimCLR", run_events(0.240))])
    assert "24.0 %" in other and "did not beat" in other and other != good


def test_the_collapse_card_names_the_run_that_collapsed_and_when():
    demo = get_demo("collapse")
    facts = [RunFacts.from_events("with stop-gradient", run_events(0.5)),
             RunFacts.from_events("without stop-gradient", run_events(0.2, verdict_at=50))]
    text = demo.conclude(facts)
    assert "At step 50 the dashboard called complete collapse" in text
    assert "Collapsed: without stop-gradient; healthy: with stop-gradient" in text
    # the same runs, but nothing collapsed: the text says so instead
    calm = demo.conclude([RunFacts.from_events("a", run_events(0.5)),
                          RunFacts.from_events("b", run_events(0.4))])
    assert "No run collapsed" in calm and "Collapsed:" not in calm


def test_rotation_and_spelling_read_the_methods_own_metrics():
    up = run_events(0.6)
    up.insert(2, ev.StepMetrics(step=99, epoch=1.0, time=1.0, loss=0.1, lr=0.1,
                                images_per_sec=1.0, extra={"pretext_accuracy": 0.97}))
    turned = run_events(0.3)
    turned.insert(2, ev.StepMetrics(step=99, epoch=1.0, time=1.0, loss=1.3, lr=0.1,
                                    images_per_sec=1.0, extra={"pretext_accuracy": 0.31}))
    text = get_demo("rotation").conclude([RunFacts.from_events("upright", up),
                                          RunFacts.from_events("turned", turned)])
    assert "97.0 %" in text and "31.0 %" in text and "easiest for upright" in text
    gpt = [report(0, 0.1, baseline=True),
           report(200, 0.2, heldout_bits_per_token=1.9, unigram_bits=4.6), finished()]
    spell = get_demo("spelling").conclude([RunFacts.from_events("GPT", gpt)])
    assert "1.90 bits" in spell and "4.60" in spell and "learned which letters" in spell


@pytest.mark.parametrize("name", list(DEMOS))
def test_every_demo_validates_and_its_runs_train(name, tmp_path):
    """Each demo's configs (the preset plus the demo's settings) run a few steps through
    the queue, and the facts read back from the run folders conclude the demo."""
    demo = get_demo(name)
    plan = demo.plan()
    assert [label for label, _ in plan.runs] == [r.label for r in demo.runs]
    for (_, cfg), run in zip(plan.runs, demo.runs, strict=True):
        for key, value in run.settings.items():
            if key != "optim.max_steps":
                assert cfg.get(key) == value  # the demo's point survives into the config
        tiny = {k: v for k, v in SMALL.items() if cfg.method_name != "gpt"
                or not k.startswith(("data.shapes", "backbone"))}
        for key, value in {**tiny, "optim.max_steps": 3, "monitor.every_steps": 3}.items():
            cfg.set(key, value)
        if cfg.method_name == "gpt":
            for key, value in {"method.dim": 32, "method.depth": 1, "method.heads": 2,
                               "data.seq_len": 32}.items():
                cfg.set(key, value)
    result = Sweep.create_queue(plan, tmp_path / "runs").run()
    assert [r.status for r in result.rows] == ["finished"] * len(demo.runs)
    facts = [facts_of_run(str(r.value), r.run_dir) for r in result.rows]
    assert all(f.steps == 3 and f.baseline_knn is not None for f in facts)
    text = demo.conclude(facts)
    assert text and "n/a" not in text.split("guessing")[0]


def test_demo_titles_load_without_torch():
    """The Demos menu is built before torch has loaded."""
    code = ("import sys, engine.demos as d; assert d.DEMO_TITLES; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(DEMO_TITLES) == set(DEMOS)
