"""How long the "What it trains on" tab takes to redraw after a form change.

In the real main window (offscreen unless a display is set), for each method listed:
choose it, wait for its views, then type a new value into one of its fields (the one a
user would try: crop scale, mask ratio, rotation mode...) and time from the key press to
the new pictures on screen (the panel's ``drawn`` signal). Each method is timed
``--repeats`` times, alternating two values; prints the median and worst per method and
over all. Target: under 200 ms on a 2-core CPU.

    python bench/views_redraw.py [--repeats 5] [--methods simclr mae ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

#: method -> (field a user changes, two values to alternate); text methods on pydocs
CHANGES = {
    "simclr": ("augment.crop_min_scale", "0.2", "0.9"),
    "byol": ("augment.hue", "0.1", "0.4"),
    "dino": ("method.local_crops", "2", "4"),
    "mae": ("method.mask_ratio", "0.5", "0.9"),
    "rotation": ("augment.crop_min_scale", "0.5", "0.9"),
    "jigsaw": ("method.gap", "0.1", "0.3"),
    "inpainting": ("method.mask_size", "0.3", "0.6"),
    "colorization": ("augment.crop_min_scale", "0.5", "0.9"),
    "clip": ("augment.crop_min_scale", "0.5", "0.9"),
    "mlm": ("method.mask_prob", "0.15", "0.4"),
    "gpt": ("data.seq_len", "48", "64"),
}
TEXT = {"mlm", "gpt"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--methods", nargs="*", default=list(CHANGES))
    args = p.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    _app = QApplication(sys.argv[:1])  # kept alive till the end
    win = MainWindow(dataset="shapes", runs_dir=tempfile.mkdtemp(prefix="views-bench-"))
    win.show()

    def wait_until(cond, timeout_s: float = 120.0) -> bool:
        end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > end:
                return False
            loop = QEventLoop()
            QTimer.singleShot(10, loop.quit)
            loop.exec()
        return True

    wait_until(lambda: bool(win.methods))
    rows: list[tuple[str, list[float]]] = []
    got: list[float] = []  # when the panel said it drew
    win.views.drawn.connect(lambda _s: got.append(time.perf_counter()))
    for method in args.methods:
        key, *values = CHANGES[method]
        want = "pydocs" if method in TEXT else "shapes"
        if win.dataset_chooser.source != want:
            win.dataset_chooser.set_source(want)
        if not wait_until(lambda m=method: win.method_combo.findData(m) >= 0):
            print(f"{method}: not offered for {want}")
            continue
        win.method_combo.setCurrentIndex(win.method_combo.findData(method))
        wait_until(lambda m=method: win.views.drawing is not None
                   and win.views.drawing.method == m)
        box = win.form.editors[key].widget
        times: list[float] = []
        for i in range(args.repeats):
            box.setFocus()
            box.selectAll()
            text = values[i % 2]
            QTest.keyClicks(box, text[:-1])  # all but the last key, not timed
            wait_until(lambda: not win.views._timer.isActive())
            got.clear()
            t0 = time.perf_counter()
            QTest.keyClick(box, text[-1], Qt.KeyboardModifier.NoModifier)
            if wait_until(lambda: bool(got), 10.0):
                times.append((got[-1] - t0) * 1000)
        rows.append((method, times))
        if times:
            print(f"{method:13s} {key:24s} median {statistics.median(times):6.1f} ms  "
                  f"worst {max(times):6.1f} ms  ({len(times)} redraws)", flush=True)
    every = [t for _, ts in rows for t in ts]
    if every:
        print(f"all {len(every)} redraws: median {statistics.median(every):.1f} ms, worst "
              f"{max(every):.1f} ms (target < 200 ms); {time.strftime('%Y-%m-%d')}, "
              f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    win.confirm_close = lambda: True
    win.close()


if __name__ == "__main__":
    main()
