"""Guided demos: the classic SSL experiments as one click, with a card in plain words.

A demo is a list of runs (a preset config plus the settings that make the point), a card
that says what to watch and what it means, and a conclusion written at the end from the
runs' own measurements (:class:`RunFacts`, read from their events or their run folders):
never a pre-written result, so a run that behaves unexpectedly is described as it
behaved. Demos with several runs go through the run queue (:mod:`engine.sweep`), which
runs them in sequence and keeps them together for the overlay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import events as ev
from engine.config import Config
from engine.runs import RunFolder
from engine.verdict import VERDICT_WORDS

if TYPE_CHECKING:
    from engine.sweep import QueuePlan


# ------------------------------------------------------------------ what a run measured
@dataclass
class RunFacts:
    """What one run measured, as a demo's conclusion reads it."""

    label: str
    method: str = "?"
    run_dir: str | None = None
    status: str = "running"
    steps: int = 0
    classes: int = 0
    baseline_knn: float | None = None
    final_knn: float | None = None
    best_knn: float | None = None
    #: the collapse verdict of the last report and the first step it was not healthy
    verdict: str = "healthy"
    first_collapse_step: int | None = None
    first_collapse_verdict: str | None = None
    std_ratio: float | None = None  # per-dim std over its healthy 1/sqrt(d), last report
    effective_rank: float | None = None
    dim: int = 0
    loss: float | None = None
    #: the last value of every other logged number (pretext accuracy, masked MSE,
    #: held-out bits, the unigram line...)
    last: dict[str, float] = field(default_factory=dict)

    @property
    def chance(self) -> float | None:
        return 1.0 / self.classes if self.classes > 1 else None

    @classmethod
    def from_events(cls, label: str, events: Iterable[ev.Event]) -> RunFacts:
        """Facts from a run's event stream (live, or read back from its folder)."""
        f = cls(label)
        for e in events:
            if isinstance(e, ev.RunStarted):
                f.method, f.run_dir = e.method, e.run_dir
            elif isinstance(e, ev.StepMetrics):
                f.steps = max(f.steps, e.step)
                if math.isfinite(e.loss):
                    f.loss = e.loss
                f.last.update({k: v for k, v in e.extra.items() if math.isfinite(v)})
            elif isinstance(e, ev.MonitorReport):
                f._report(e)
            elif isinstance(e, ev.Finished):
                f.status, f.run_dir = e.status, e.run_dir
                f.classes = len(e.summary.get("classes") or []) or f.classes
            elif isinstance(e, ev.Failed):
                f.status = "failed"
        return f

    def _report(self, r: ev.MonitorReport) -> None:
        if r.baseline:
            self.baseline_knn = r.knn_accuracy
            return
        self.steps = max(self.steps, r.step)
        if r.knn_accuracy is not None:
            self.final_knn = r.knn_accuracy
            self.best_knn = max(self.best_knn or 0.0, r.knn_accuracy)
        self.verdict = r.verdict
        if r.verdict != "healthy" and self.first_collapse_step is None:
            self.first_collapse_step, self.first_collapse_verdict = r.step, r.verdict
        self.std_ratio = r.std / r.std_reference if r.std_reference > 0 else None
        self.effective_rank, self.dim = r.effective_rank, r.dim
        self.last.update({k: v for k, v in r.extra.items() if math.isfinite(v)})


def facts_of_run(label: str, run_dir: str | Path) -> RunFacts:
    """:meth:`RunFacts.from_events` of a run folder's logged rows and summary."""
    run = RunFolder(run_dir)
    summary = run.read_summary()
    events: list[ev.Event] = []
    for row in run.read_metrics():
        if ev.MonitorReport.is_row(row):
            events.append(ev.MonitorReport.from_row(row))
        elif ev.StepMetrics.is_row(row):
            events.append(ev.StepMetrics.from_row(row))
    f = RunFacts.from_events(label, events)
    f.method = str(summary.get("method", f.method))
    f.run_dir = str(run.path)
    f.status = str(summary.get("status", f.status))
    f.classes = len(summary.get("classes") or [])
    return f


# ------------------------------------------------------------------ wording numbers
def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def knn_sentence(f: RunFacts) -> str:
    """'kNN accuracy went from 22.0 % (random weights) to 85.7 %' with what it means."""
    if f.final_knn is None or f.baseline_knn is None:
        return "kNN accuracy was not measured."
    gain = f.final_knn - f.baseline_knn
    how = ("a clear gain" if gain > 0.05 else "about no change" if abs(gain) <= 0.05
           else "a loss")
    return (f"kNN accuracy went from {pct(f.baseline_knn)} with random weights to "
            f"{pct(f.final_knn)} ({how}; guessing gives {pct(f.chance)}).")


def collapse_sentence(f: RunFacts) -> str:
    """What the collapse dashboard said, in words."""
    if f.first_collapse_step is None:
        bits = []
        if f.std_ratio is not None:
            bits.append(f"spread {f.std_ratio:.0%} of a healthy one")
        if f.effective_rank is not None:
            bits.append(f"{f.effective_rank:.0f} of {f.dim} directions used")
        return "The embeddings stayed healthy" + (f" ({', '.join(bits)})" if bits else "") \
            + "."
    first = VERDICT_WORDS.get(f.first_collapse_verdict or "", f.first_collapse_verdict)
    now = VERDICT_WORDS.get(f.verdict, f.verdict)
    ratio = "" if f.std_ratio is None else f"; the spread ended at {f.std_ratio:.0%} " \
        "of a healthy one"
    end = f", and at the end: {now}" if f.verdict != f.first_collapse_verdict else ""
    return f"At step {f.first_collapse_step} the dashboard called {first}{end}{ratio}."


# ------------------------------------------------------------------ the demos
@dataclass(frozen=True)
class DemoRun:
    label: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Demo:
    """One guided experiment."""

    name: str
    title: str
    #: plain-language card: what the experiment asks
    intro: str
    #: (where to look, what it means), in the order a person should look
    watch: tuple[tuple[str, str], ...]
    runs: tuple[DemoRun, ...]
    conclude: Callable[[list[RunFacts]], str]
    next: str | None = None

    def configs(self, accelerator: bool = False) -> list[tuple[str, Config]]:
        """Each run's config: the method's preset, then the demo's settings."""
        from engine.presets import default_config

        out = []
        for r in self.runs:
            cfg = default_config(r.method, accelerator)
            for key, value in r.settings.items():
                cfg.set(key, value)
            cfg.validate()
            out.append((r.label, cfg))
        return out

    def plan(self, accelerator: bool = False) -> QueuePlan:
        from engine.sweep import QueuePlan

        return QueuePlan(self.configs(accelerator), key="setting", name=f"demo-{self.name}",
                         tags={"demo": self.name})


def _by_label(facts: list[RunFacts]) -> dict[str, RunFacts]:
    return {f.label: f for f in facts}


def _conclude_learns(facts: list[RunFacts]) -> str:
    f = facts[0]
    learned = (f.final_knn is not None and f.baseline_knn is not None
               and f.final_knn > f.baseline_knn + 0.05)
    verdict = ("SimCLR learned to put images of the same shape close together without "
               "ever being told which shape is which: it only learned that two crops of one "
               "picture belong together." if learned else
               "This run did not beat its random start by much: try more steps, or watch "
               "the collapse tab for a warning.")
    return f"After {f.steps} steps: {knn_sentence(f)} {verdict}"


def _conclude_collapse(facts: list[RunFacts]) -> str:
    parts = []
    for f in facts:
        parts.append(f"<b>{f.label}</b>: {collapse_sentence(f)} {knn_sentence(f)}")
    collapsed = [f.label for f in facts if f.first_collapse_step is not None]
    healthy = [f.label for f in facts if f.first_collapse_step is None]
    if collapsed and healthy:
        why = (f"Collapsed: {', '.join(collapsed)}; healthy: {', '.join(healthy)}. Without "
               "negatives, nothing stops the network from the trivial answer of giving "
               "every image the same output, which matches any two views perfectly. The "
               "stop-gradient and the predictor are what make that answer unstable.")
    elif collapsed:
        why = "Every run collapsed this time: even with stop-gradient, a short run can dip."
    else:
        why = ("No run collapsed this time, which is unusual: compare their spread and "
               "directions above.")
    return "<br>".join(parts) + "<br>" + why


def _conclude_temperature(facts: list[RunFacts]) -> str:
    parts = [f"<b>{f.label}</b>: {knn_sentence(f)} {collapse_sentence(f)}" for f in facts]
    scored = [f for f in facts if f.final_knn is not None]
    if scored:
        best = max(scored, key=lambda f: f.final_knn or 0.0)
        parts.append(f"Best here: {best.label}. The temperature sets how sharply the loss "
                     "singles out the hardest other images: too low and every image is "
                     "pushed away from its nearest neighbours, too high and all others "
                     "count alike, so little is learned.")
    return "<br>".join(parts)


def _conclude_rotation(facts: list[RunFacts]) -> str:
    parts = []
    for f in facts:
        acc = f.last.get("pretext_accuracy")
        parts.append(f"<b>{f.label}</b>: it named the rotation of {pct(acc)} of the "
                     f"training images (guessing: 25.0 %). {knn_sentence(f)}")
    accs = {f.label: f.last.get("pretext_accuracy") for f in facts}
    vals = [a for a in accs.values() if a is not None]
    if len(vals) == len(facts) and len(vals) > 1:
        hi = max(accs, key=lambda k: accs[k] or 0.0)
        parts.append(f"The task was easiest for {hi}. Saying which way is up needs the "
                     "picture to have an up: when shapes are turned at random there is none "
                     "to find, and the pretext task teaches little.")
    return "<br>".join(parts)


def _conclude_masking(facts: list[RunFacts]) -> str:
    parts = []
    for f in facts:
        mse = f.last.get("masked_mse")
        what = "n/a" if mse is None else f"{mse:.3f}"
        parts.append(f"<b>{f.label}</b>: error on the hidden patches {what}. "
                     f"{knn_sentence(f)}")
    parts.append("The more is hidden, the harder it is to paint the missing patches from "
                 "the rest: the Sweep tab shows the runs' reconstructions side by side.")
    return "<br>".join(parts)


def _conclude_spelling(facts: list[RunFacts]) -> str:
    f = facts[0]
    bits = f.last.get("heldout_bits_per_token")
    uni = f.last.get("unigram_bits")
    if bits is None:
        return f"After {f.steps} steps the held-out score was not measured."
    line = (f"After {f.steps} steps it needs {bits:.2f} bits per character on text it never "
            "saw")
    if uni is not None:
        better = bits < uni
        line += (f", against {uni:.2f} for guessing from letter frequencies alone: "
                 + ("it has learned which letters follow which, the start of spelling "
                    "words." if better else "it has not yet beaten letter frequencies."))
    return line + " Its samples on the Predictions tab show what it writes."


DEMOS: dict[str, Demo] = {}


def _add(d: Demo) -> None:
    DEMOS[d.name] = d


_add(Demo(
    "simclr-learns", "SimCLR learns the shapes",
    "A network sees thousands of pictures of shapes and is never told their names. Its "
    "only task: recognise two random crops of the same picture among all the others. "
    "Does it learn what the shapes are anyway?",
    (("What it trains on", "two random crops of each picture: the network must say they "
      "belong together"),
     ("Training curves", "kNN accuracy (how often an image's nearest neighbours are the "
      "same shape) against the dashed line of a network with random weights"),
     ("Embedding (UMAP)", "each dot is an image; coloured by shape, clusters form as it "
      "learns")),
    (DemoRun("SimCLR", "simclr", {"optim.max_steps": 400}),),
    _conclude_learns, next="collapse"))

_add(Demo(
    "collapse", "Collapse on purpose",
    "Methods without negatives (SimSiam, BYOL) only pull two views of a picture together. "
    "That has a cheating answer: give every picture the same output. Two safety catches "
    "prevent it: the stop-gradient and the predictor. Here they are switched off, one at a "
    "time.",
    (("Collapse", "the verdict and the spread of the embeddings: a healthy spread is 100 %"
      ", a collapsed one falls towards 0"),
     ("Training curves", "the loss of a collapsed run drops to its minimum at once: a "
      "perfect score for a useless answer"),
     ("Embedding (UMAP)", "a collapsed run's map is a single blob")),
    (DemoRun("SimSiam with stop-gradient", "simsiam", {"optim.max_steps": 150}),
     DemoRun("SimSiam without stop-gradient", "simsiam",
             {"optim.max_steps": 150, "method.stop_gradient": False}),
     DemoRun("BYOL without predictor", "byol",
             {"optim.max_steps": 150, "method.use_predictor": False})),
    _conclude_collapse, next="temperature"))

_add(Demo(
    "temperature", "SimCLR's temperature",
    "SimCLR compares each picture with every other in the batch; the temperature says how "
    "much the most similar others count. Three runs: very low, the usual value, very high.",
    (("Training curves", "kNN accuracy of the three runs"),
     ("Collapse", "the spread and the number of directions used"),
     ("Results", "kNN against the temperature, one point per run")),
    (DemoRun("temperature 0.005", "simclr",
             {"optim.max_steps": 250, "method.temperature": 0.005}),
     DemoRun("temperature 0.2", "simclr", {"optim.max_steps": 250, "method.temperature": 0.2}),
     DemoRun("temperature 10", "simclr", {"optim.max_steps": 250, "method.temperature": 10.0})),
    _conclude_temperature, next="rotation"))

_add(Demo(
    "rotation", "Pretext tasks need structure",
    "Rotation prediction turns each picture by 0, 90, 180 or 270 degrees and asks the "
    "network which. That is only possible if pictures have an up. First on shapes that "
    "stand upright (with shadows below), then on shapes turned at random.",
    (("What it trains on", "the four rotated copies of each picture"),
     ("Training curves", "pretext accuracy against guessing (25 %), and kNN accuracy")),
    (DemoRun("upright shapes", "rotation", {"optim.max_steps": 250}),
     DemoRun("randomly turned shapes", "rotation",
             {"optim.max_steps": 250, "data.shapes_orientation": "any"})),
    _conclude_rotation, next="masking"))

_add(Demo(
    "masking", "Masked autoencoders: how much to hide",
    "A masked autoencoder hides part of each picture and paints it back. Hide a quarter, "
    "three quarters (the paper's choice) or almost all of it.",
    (("What it trains on", "the visible patches: the rest is what it must paint"),
     ("Predictions && reconstructions", "its paintings next to the originals")),
    (DemoRun("25 % hidden", "mae", {"optim.max_steps": 250, "method.mask_ratio": 0.25}),
     DemoRun("75 % hidden", "mae", {"optim.max_steps": 250, "method.mask_ratio": 0.75}),
     DemoRun("95 % hidden", "mae", {"optim.max_steps": 250, "method.mask_ratio": 0.95})),
    _conclude_masking, next="spelling"))

_add(Demo(
    "spelling", "A language model learns to spell",
    "A small GPT reads Python's documentation one character at a time and learns to "
    "guess the next one. Nobody tells it what a word is.",
    (("What it trains on", "the text it reads and the same text one character later"),
     ("Predictions", "what it writes from a prompt: noise first, then letters, then words"),
     ("Training curves", "bits per character on unseen text against guessing from "
      "letter frequencies")),
    (DemoRun("GPT", "gpt", {}),),
    _conclude_spelling, next=None))


#: the demos' names and titles, for a menu built before torch has loaded
DEMO_TITLES = {name: d.title for name, d in DEMOS.items()}


def get_demo(name: str) -> Demo:
    if name not in DEMOS:
        raise KeyError(f"no demo {name!r} (demos: {', '.join(DEMOS)})")
    return DEMOS[name]
