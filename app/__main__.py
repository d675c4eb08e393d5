"""Start the SelfSup Workbench window: ``selfsup`` or ``python -m app``.

Torch is not imported here: the window shows first, the engine loads behind it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources

from engine.config import DEFAULT_METHOD, DataConfig  # torch-free, like this module


def load_style() -> str:
    try:
        return resources.files("resources").joinpath("style.qss").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfsup", description="SelfSup Workbench")
    parser.add_argument("--dataset", default=DataConfig().dataset,
                        help="'shapes', 'digits' or an image folder (default: %(default)s)")
    parser.add_argument("--runs-dir", help="where run folders go (default: $SELFSUP_RUNS_DIR "
                        "or the user data dir)")
    parser.add_argument("--method", help=f"method to select at start (default {DEFAULT_METHOD})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="preset a form field, e.g. --set method.temperature=0.005")
    parser.add_argument("--demo", metavar="NAME",
                        help="start a guided demo as soon as the engine has loaded "
                        "(simclr-learns, collapse, temperature, rotation, masking, spelling)")
    parser.add_argument("--autostart", action="store_true",
                        help="press Start as soon as the engine has loaded")
    parser.add_argument("--tab", choices=("views", "curves", "collapse", "embedding",
                                          "preview", "matching", "sweep"),
                        help="the main-area tab to show at start")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="save a screenshot of the window ('{t}' in the name is replaced "
                        "by the time, for several screenshots)")
    parser.add_argument("--screenshot-after", default="5", metavar="SECONDS[,SECONDS...]",
                        help="when to take the screenshot(s); the app quits after the last")
    args = parser.parse_args(argv)

    # before Qt: without its xcb libraries or a screen it aborts with a generic message
    from app.platform_check import check_platform

    problem = check_platform()
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SelfSup Workbench")
    app.setStyle("Fusion")
    app.setStyleSheet(load_style())

    from app.main_window import MainWindow

    win = MainWindow(dataset=args.dataset, runs_dir=args.runs_dir, method=args.method,
                     overrides=args.overrides)
    win.show()
    if args.tab:
        win.tabs.setCurrentWidget({"views": win.views, "curves": win.plots,
                                   "collapse": win.collapse, "embedding": win.embedding,
                                   "preview": win.preview, "matching": win.matching,
                                   "sweep": win.queue_panel}[args.tab])
    if args.demo:
        name = args.demo
        win.engine_loaded.connect(lambda: QTimer.singleShot(500, lambda: win.start_demo(name)))
    if args.autostart:
        win.engine_loaded.connect(lambda: QTimer.singleShot(1500, win.start_run))
    if args.screenshot:
        try:
            times = sorted(float(t) for t in str(args.screenshot_after).split(","))
        except ValueError:
            parser.error(f"--screenshot-after: expected seconds, got {args.screenshot_after!r}")

        def shoot(t: float) -> None:
            path = args.screenshot.replace("{t}", f"{t:g}")
            win.grab().save(path)
            print(f"screenshot saved to {path}")
            if t != times[-1]:
                return
            win._close_when_stopped = True
            win.close()
            if not win.running:
                app.quit()

        for t in times:
            QTimer.singleShot(int(t * 1000), lambda t=t: shoot(t))
        win.run_finished.connect(lambda _e: QTimer.singleShot(0, app.quit)
                                 if win._close_when_stopped else None)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
