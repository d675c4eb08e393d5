"""A run trained by two processes under torchrun is a run like any other in the window."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.app.test_run_history import make_run


def test_a_torchrun_run_is_listed_opened_and_compared(window, qtbot, ddp_run: Path):
    win = window
    runs_dir = Path(win.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    ddp = str(runs_dir / ddp_run.name)
    shutil.copytree(ddp_run, ddp)
    single = make_run(runs_dir, 6)
    win.tabs.setCurrentWidget(win.runs)  # refreshes the list
    assert {str(r.path) for r in win.runs.runs} == {ddp, single}

    win.runs.select(ddp)
    win.runs.open_button.click()
    assert win.tabs.currentWidget() is win.plots
    # every step of the 12 and the monitor at 0, 6 and 12, as for a one-process run
    assert win.plots.point_count("loss") == 12 and win.plots.point_count("knn") == 3
    assert win.collapse.verdict is not None and win.embedding.snapshots
    assert ddp_run.name in win.run_label.text()

    win.runs.set_ticked([ddp, single])
    xs = {p: len(c.getData()[0]) for p, c in win.runs.overlay_curves.items()}
    assert xs == {ddp: 12, single: 6}
