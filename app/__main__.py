"""Start the SelfSup Workbench window: ``selfsup`` or ``python -m app``.

Torch is not imported here: the window shows first, the engine loads behind it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources


def load_style() -> str:
    try:
        return resources.files("resources").joinpath("style.qss").read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfsup", description="SelfSup Workbench")
    parser.add_argument("--dataset", default="shapes",
                        help="'shapes' (default), 'digits' or an image folder")
    parser.add_argument("--runs-dir", help="where run folders go (default: $SELFSUP_RUNS_DIR "
                        "or the user data dir)")
    parser.add_argument("--method", help="method to select at start (default simclr)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="preset a form field, e.g. --set method.temperature=0.005")
    parser.add_argument("--autostart", action="store_true",
                        help="press Start as soon as the engine has loaded")
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window")
    parser.add_argument("--screenshot-after", type=float, default=5.0, metavar="SECONDS",
                        help="when to take the screenshot (then quit)")
    args = parser.parse_args(argv)

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
    if args.autostart:
        win.engine_loaded.connect(lambda: QTimer.singleShot(1500, win.start_run))
    if args.screenshot:
        def shoot() -> None:
            win.grab().save(args.screenshot)
            print(f"screenshot saved to {args.screenshot}")
            win._close_when_stopped = True
            win.close()
            if not win.running:
                app.quit()

        QTimer.singleShot(int(args.screenshot_after * 1000), shoot)
        win.run_finished.connect(lambda _e: QTimer.singleShot(0, app.quit)
                                 if win._close_when_stopped else None)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
