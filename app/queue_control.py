"""The window's run queue: sweeps from the form, guided demos, and queues left
unfinished when the window closed.

A queue is a sweep folder (:class:`engine.sweep.Sweep`) run by a
:class:`app.worker.QueueWorker`; its events reach the window's ``on_event`` like a single
run's, so every live view follows the run under way. :class:`QueueControl` is mixed into
:class:`app.main_window.MainWindow` and uses its form, panels and message bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
)

from app.panels.demo_card import DemoCard
from app.panels.queue_panel import QueuePanel
from app.worker import QueueWorker
from engine import events as ev

#: field types a sweep can vary (the form's numbers, choices and switches)
SWEEPABLE = (int, float, bool)


class SweepDialog(QDialog):
    """Pick a field of the form and its values: a list (``0.05, 0.1, 0.2``) or a range
    (``0.05:1:5:log``, start:stop:count with linear or log steps)."""

    def __init__(self, parent: Any, specs: list[Any], values: dict[str, Any]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sweep a setting")
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.field = QComboBox()
        for spec in specs:
            self.field.addItem(f"{spec.label}  ({spec.key})", spec.key)
        self.specs = {s.key: s for s in specs}
        self.current = values
        self.field.currentIndexChanged.connect(self._on_field)
        form.addRow("Setting", self.field)
        self.values = QLineEdit()
        form.addRow("Values", self.values)
        lay.addLayout(form)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setObjectName("hint")
        lay.addWidget(self.hint)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setObjectName("fieldError")
        self.error.hide()
        lay.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Queue the runs")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self._on_field()

    def select(self, key: str) -> None:
        self.field.setCurrentIndex(self.field.findData(key))

    def _on_field(self) -> None:
        spec = self.specs.get(self.field.currentData())
        if spec is None:
            return
        now = self.current.get(spec.key)
        if spec.choices is not None or spec.type is bool:
            options = spec.choices if spec.choices is not None else (True, False)
            self.values.setText(", ".join(str(c).lower() if isinstance(c, bool) else str(c)
                                          for c in options))
        else:
            self.values.setText("" if now is None else f"{now:g}")
        self.hint.setText(f"{spec.help} Allowed: {spec.range_text()}. Now {now!r}. One run "
                          "per value, in order: a list like 0.05, 0.1, 0.2 or a range "
                          "start:stop:count (add :log for log steps).")

    def vary(self) -> str:
        return f"{self.field.currentData()}={self.values.text().strip()}"

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()


class QueueControl:
    """Mixed into the main window (see the module docstring)."""

    queue_panel: QueuePanel
    demo_card: DemoCard
    demo_dock: QDockWidget
    queue_worker: QueueWorker | None = None
    active_demo: Any = None

    def _build_queue_ui(self) -> None:
        w: Any = self
        self.queue_panel = QueuePanel()
        self.queue_panel.open_requested.connect(w.open_run)
        self.queue_panel.cancel_requested.connect(self.cancel_queued)
        self.queue_panel.stop_requested.connect(w.stop_run)
        self.queue_panel.resume_requested.connect(lambda path: self.resume_queue(path))
        w.tabs.insertTab(w.tabs.indexOf(w.runs), self.queue_panel, "Sweep")
        self.demo_card = DemoCard()
        self.demo_card.next_requested.connect(lambda name: self.start_demo(name))
        self.demo_card.close_requested.connect(lambda: self.demo_dock.hide())
        self.demo_dock = QDockWidget("Demo", w)
        self.demo_dock.setObjectName("demoDock")
        self.demo_dock.setWidget(self.demo_card)
        self.demo_dock.setMinimumWidth(320)
        w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.demo_dock)
        self.demo_dock.hide()
        self.sweep_action = QAction("Sweep a setting…", w)
        self.sweep_action.setToolTip("Queue one run per value of a setting of the form")
        self.sweep_action.triggered.connect(lambda: self.open_sweep_dialog())
        w.run_menu.addSeparator()
        w.run_menu.addAction(self.sweep_action)
        menu = w.menuBar().addMenu("&Demos")
        self.demo_actions: dict[str, QAction] = {}
        from engine.demos import DEMO_TITLES  # torch-free list, for the menu at start

        for name, title in DEMO_TITLES.items():
            a = QAction(title, w)
            a.triggered.connect(lambda _=False, n=name: self.start_demo(n))
            menu.addAction(a)
            self.demo_actions[name] = a

    # starting ------------------------------------------------------------------------
    def open_sweep_dialog(self, key: str | None = None) -> SweepDialog | None:
        """The sweep dialog over the form's numeric, choice and switch fields."""
        w: Any = self
        if not w.methods or w.running:
            return None
        specs = [s for s in w.form.specs if s.key in w.form.editors and
                 (s.choices is not None or s.type in SWEEPABLE)]
        values = {}
        for s in specs:
            try:
                values[s.key] = w.form.editors[s.key].value()
            except Exception:  # noqa: BLE001 - a field being typed: no current value
                values[s.key] = None
        dlg = SweepDialog(w, specs, values)
        if key is not None:
            dlg.select(key)

        def accept() -> None:
            error = self.start_sweep(dlg.vary())
            if error:
                dlg.show_error(error)
            else:
                QDialog.accept(dlg)

        dlg.accept = accept  # type: ignore[method-assign]
        dlg.open()
        return dlg

    def start_sweep(self, vary: str) -> str | None:
        """Queue and start one run per value of ``vary`` (``KEY=VALUES``) over the form's
        config; the error text (naming the field and its range) if refused."""
        from engine.errors import ConfigError
        from engine.sweep import Sweep, plan_sweep

        w: Any = self
        if w.running:
            return "a run is under way"
        try:
            cfg = w.form.config(w.dataset_chooser.source)
            plan = plan_sweep(cfg, vary)
        except ConfigError as e:
            return str(e)
        self.active_demo = None
        self.demo_dock.hide()
        sweep = Sweep.create(plan, w.runs_dir)
        self.start_queue(sweep.path)
        return None

    def start_demo(self, name: str) -> bool:
        """Load demo ``name`` (its card beside the views) and start its runs."""
        from engine.demos import get_demo
        from engine.errors import ConfigError
        from engine.sweep import Sweep

        w: Any = self
        if w.running or not w.methods:
            w.message_bar.show_message("Stop the run under way to start a demo.", "info")
            return False
        try:
            demo = get_demo(name)
            plan = demo.plan(w.accelerator)
        except (KeyError, ConfigError) as e:
            w.message_bar.show_message(f"Cannot start the demo: {e}".replace('"', ""))
            return False
        self.active_demo = demo
        self.demo_card.set_demo(demo)
        self.demo_dock.show()
        sweep = Sweep.create_queue(plan, w.runs_dir)
        return self.start_queue(sweep.path)

    def start_queue(self, path: str | Path) -> bool:
        """Run the queue in folder ``path`` (new, or left unfinished) from where it is."""
        from engine.errors import UserInputError
        from engine.sweep import Sweep

        w: Any = self
        if w.running:
            return False
        try:
            sweep = Sweep(path)
        except UserInputError as e:
            w.message_bar.show_message(str(e))
            return False
        w.message_bar.hide()
        w._clear_live_views()
        self.queue_worker = QueueWorker(sweep)
        self.queue_worker.entry.connect(self._on_queue_entry)
        self.queue_worker.done.connect(self._on_queue_done)
        self.queue_panel.set_sweep(sweep.path)
        self.queue_panel.set_running(True)
        w._start_worker(None, self.queue_worker)
        return True

    def resume_queue(self, path: str | Path) -> bool:
        """Continue a stopped queue; a demo's card comes back with it."""
        from engine.demos import DEMOS
        from engine.sweep import Sweep

        name = Sweep(path).state.get("demo")
        if name in DEMOS:
            self.active_demo = DEMOS[name]
            self.demo_card.set_demo(self.active_demo)
            self.demo_dock.show()
        else:
            self.active_demo = None
        return self.start_queue(path)

    def cancel_queued(self, index: int) -> None:
        from engine.sweep import Sweep

        path = self.queue_panel.sweep_path
        if path is None:
            return
        worker = self.queue_worker
        # the running queue's own state, or the folder's when it is not running
        live = worker is not None and worker.sweep.path == Path(path)
        sweep = worker.sweep if live and worker is not None else Sweep(path)
        sweep.cancel(index)
        self.queue_panel.refresh()

    def offer_unfinished_queues(self) -> None:
        """After start-up: a queue the window was closed on is shown, ready to resume."""
        from engine.sweep import unfinished_sweeps

        w: Any = self
        left = unfinished_sweeps(w.runs_dir)
        if not left:
            return
        sweep = left[-1]
        todo = sum(e["status"] not in ("finished", "failed", "cancelled")
                   for e in sweep.state["runs"])
        self.queue_panel.set_sweep(sweep.path)
        what = sweep.state.get("demo") or sweep.state.get("key")
        w.message_bar.show_message(
            f"The queue '{what}' stopped with {todo} run(s) to go: the Sweep tab resumes "
            "it (Resume queue).", "info")

    # following the queue ------------------------------------------------------------------
    def _on_queue_entry(self, index: int, e: object) -> None:
        w: Any = self
        if isinstance(e, ev.RunStarted):
            w._clear_live_views()  # before the window's views take this run's start
            w.trainer = self.queue_worker.trainer if self.queue_worker else None
            if w.trainer is not None and w.trainer.cfg.method_name in w.methods:
                w.show_config(w.trainer.cfg)  # the form says what is training now
            total = len(self.queue_panel.result.rows) if self.queue_panel.result else 0
            if self.active_demo is not None:
                label = self.active_demo.runs[index].label if index < len(
                    self.active_demo.runs) else str(index)
                self.demo_card.set_progress(f"Run {index + 1} of {total}: {label}")
            self.queue_panel.refresh()
        elif isinstance(e, (ev.Finished, ev.Failed)):
            self.queue_panel.refresh()
        elif isinstance(e, ev.MonitorReport) and not e.baseline:
            self.queue_panel.refresh(previews=False)  # the table, the plots; images at the end

    def _on_queue_done(self) -> None:
        self.queue_panel.set_running(False)
        self.queue_panel.refresh()
        self.queue_worker = None
        r = self.queue_panel.result
        if self.active_demo is None or r is None:
            return
        if any(row.status not in ("finished", "failed", "cancelled") for row in r.rows):
            self.demo_card.set_progress("Stopped: Resume queue on the Sweep tab continues "
                                        "the demo.")
            return
        from engine.demos import facts_of_run

        facts = [facts_of_run(str(row.value), row.run_dir) for row in r.rows if row.run_dir]
        self.demo_card.set_progress("All runs done.")
        self.demo_card.conclude(facts)
