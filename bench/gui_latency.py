"""GUI-thread latency during a training run, measured in the real main window.

A 10 ms timer runs on the GUI thread while SimCLR trains in the worker thread; each
tick's lateness (actual minus expected interval) is what a user feels as stutter when
dragging, resizing or switching tabs. Prints p50 / p99 / max.

    python bench/gui_latency.py [--seconds 30] [--dataset shapes]

Runs offscreen unless a display is set (use Xvfb for a real window).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--dataset", default="shapes")
    args = p.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QElapsedTimer, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication(sys.argv[:1])
    runs = tempfile.mkdtemp(prefix="gui-latency-")
    win = MainWindow(dataset=args.dataset, runs_dir=runs)
    win.show()
    lateness: list[float] = []
    clock = QElapsedTimer()
    state = {"last": 0.0, "measuring": False, "steps0": 0}
    tick = QTimer()
    tick.setTimerType(Qt.TimerType.PreciseTimer)
    tick.setInterval(10)

    def on_tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        if state["measuring"]:
            lateness.append(max(0.0, now - state["last"] - 10.0))
        state["last"] = now

    tick.timeout.connect(on_tick)

    def begin() -> None:
        win.form.editors["optim.max_steps"].set_value(100_000)
        if not win.start_run():
            print("could not start:", win.message_bar.text())
            app.quit()
            return
        # measure once the first steps are running (model built, baseline taken)
        def wait_steps() -> None:
            if win._last_step is None:
                QTimer.singleShot(100, wait_steps)
                return
            state["steps0"] = win._last_step.step
            state["t0"] = time.perf_counter()
            clock.start()
            state["last"] = 0.0
            state["measuring"] = True
            tick.start()
            QTimer.singleShot(int(args.seconds * 1000), finish)

        wait_steps()

    def finish() -> None:
        tick.stop()
        steps = win._last_step.step - state["steps0"]
        dt = time.perf_counter() - state["t0"]
        win.confirm_close = lambda: True
        win.run_finished.connect(lambda _e: QTimer.singleShot(0, app.quit))
        win.close()
        a = np.array(lateness)
        print(f"{len(a)} ticks of a 10 ms timer over {dt:.1f} s while training "
              f"({steps} steps, {steps / dt:.1f} steps/s)")
        print(f"GUI-thread lateness: p50 {np.percentile(a, 50):.1f} ms  "
              f"p99 {np.percentile(a, 99):.1f} ms  max {a.max():.1f} ms  (target p99 < 50 ms)")

    win.engine_loaded.connect(lambda: QTimer.singleShot(500, begin))
    app.exec()


if __name__ == "__main__":
    main()
