"""The TensorBoard mirror: a run's metrics and embeddings as event files TensorBoard reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine import events as ev
from engine.__main__ import main as cli
from engine.tensorboard import TB_DIR, mirror_run
from engine.train import Trainer
from tests.engine.conftest import small_config


def scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory) -> tuple[Path, list[ev.Event]]:
    cfg = small_config("simclr", 10, **{"run.tensorboard": True})
    events = list(Trainer(cfg, tmp_path_factory.mktemp("runs")).run())
    run_dir = Path(next(e.run_dir for e in events if isinstance(e, ev.Finished)))
    return run_dir, events


def test_a_run_with_the_mirror_on_writes_what_it_logs(mirrored_run):
    run_dir, events = mirrored_run
    got = scalars(run_dir / TB_DIR)
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    reports = [e for e in events if isinstance(e, ev.MonitorReport) and not e.baseline]
    assert [s for s, _ in got["train/loss"]] == [e.step for e in steps]
    assert got["train/loss"][-1][1] == pytest.approx(steps[-1].loss, rel=1e-6)
    assert [s for s, _ in got["monitor/knn_accuracy"]] == [r.step for r in reports]
    assert got["monitor/knn_accuracy"][-1][1] == pytest.approx(reports[-1].knn_accuracy)
    base = next(e for e in events if isinstance(e, ev.MonitorReport) and e.baseline)
    assert got["monitor/knn_accuracy_random_init"] == [(0, pytest.approx(base.knn_accuracy))]
    assert "monitor/effective_rank" in got and "monitor/std_reference" in got
    # the projector's files: one embedding per monitor step, with class names
    projector = (run_dir / TB_DIR / "projector_config.pbtxt").read_text()
    assert projector.count("embeddings {") == len(reports) + 1  # and the step-0 one
    meta = next((run_dir / TB_DIR).rglob("metadata.tsv")).read_text().split()
    assert set(meta) <= {"circle", "square", "triangle", "star", "cross", "ring"}


def test_an_earlier_run_is_mirrored_from_its_folder(mirrored_run, tmp_path, capsys):
    run_dir, _ = mirrored_run
    live = scalars(run_dir / TB_DIR)
    cfg = small_config("simclr", 10)  # trained without the mirror
    events = list(Trainer(cfg, tmp_path / "runs").run())
    other = Path(next(e.run_dir for e in events if isinstance(e, ev.Finished)))
    assert not (other / TB_DIR).exists()
    assert cli(["tensorboard", str(other)]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    late = scalars(other / TB_DIR)
    assert set(late) == set(live)  # the same tags as a live mirror
    assert [s for s, _ in late["train/loss"]] == [s for s, _ in live["train/loss"]]
    mirror_run(other)  # again: replaced, not doubled
    assert len(scalars(other / TB_DIR)["train/loss"]) == len(late["train/loss"])


def test_without_the_package_the_run_warns_and_goes_on(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("tensorboard", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = small_config("simclr", 4, **{"run.tensorboard": True})
    events = list(Trainer(cfg, tmp_path).run())
    warnings = [e.message for e in events if isinstance(e, ev.RunWarning)]
    assert any("pip install" in w and "tensorboard" in w for w in warnings)
    assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
    assert not (Path(events[-1].run_dir) / TB_DIR).exists()
    assert cli(["tensorboard", events[-1].run_dir]) == 2  # the CLI says what to install
