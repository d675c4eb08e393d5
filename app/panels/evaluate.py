"""The evaluation tab: kNN, linear probe, few-shot and fine-tuning of a run's encoder,
always beside the random-init baseline, computed off the GUI thread. An image-text run
(CLIP) also gets zero-shot accuracy from prompts (the templates editable here) and
retrieval recall: the rows are whatever :func:`engine.evaluate.table_rows` gives.

Results are written to the run's ``summary.json`` by :func:`engine.evaluate.evaluate_run`
and shown in a table; opening a run shows its saved results. Without labels the tab says
what it would need (one subfolder per class).

The option spin boxes are built from :class:`engine.evaluate.EvalOptions`' field metadata
(default, range, help), so the tab holds no default of its own (docs/ARCHITECTURE.md,
convention 1). That class lives beside torch, so the boxes appear once the engine has
loaded (:meth:`EvaluatePanel.set_option_specs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.forms import tooltip_text
from app.worker import FunctionWorker, start_in_thread
from engine.config import FieldSpec

if TYPE_CHECKING:  # beside torch: imported when an evaluation starts
    from engine.evaluate import EvalOptions

PROTOCOL_TITLES = {"knn": "Weighted kNN", "linear": "Linear probe",
                   "fewshot": "Few-shot (1 / 5 / 10 labels per class)",
                   "finetune": "Fine-tuning"}

#: the EvalOptions fields the tab lets one change, with their short labels; every other
#: option keeps EvalOptions' default
EDITABLE_OPTIONS = {"knn_k": "kNN k", "finetune_steps": "fine-tune steps"}
#: the EvalOptions text field the tab edits in a line (read by image-text runs only)
TEMPLATES_OPTION = "zeroshot_templates"

_INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int
_DECIMALS = 4


def option_spin_box(spec: FieldSpec) -> QSpinBox | QDoubleSpinBox:
    """A spin box whose value, range and tooltip are the option's declaration."""
    box: QSpinBox | QDoubleSpinBox
    if spec.type is int:
        box = QSpinBox()
        box.setRange(int(spec.min) if spec.min is not None else -_INT_LIMIT,
                     int(spec.max) if spec.max is not None else _INT_LIMIT)
    elif spec.type is float:
        box = QDoubleSpinBox()
        box.setDecimals(_DECIMALS)
        lo = spec.min if spec.min is not None else -float(_INT_LIMIT)
        if spec.min_exclusive:
            lo += 10.0**-_DECIMALS
        box.setRange(lo, spec.max if spec.max is not None else float(_INT_LIMIT))
    else:
        raise TypeError(f"eval.{spec.name}: only int and float options get a spin box")
    box.setValue(spec.default)
    box.setToolTip(tooltip_text(spec, spec.default))
    box.setObjectName(f"option:{spec.name}")
    return box


class EvaluatePanel(QWidget):
    finished = Signal(object)  # the evaluation dict, or an error string

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_dir: str | None = None
        self.busy = False
        self._worker: FunctionWorker | None = None
        self.results: dict[str, Any] | None = None

        self.run_label = QLabel("No run chosen: train one, or open one in the Runs tab.")
        self.run_label.setWordWrap(True)
        self.checks: dict[str, QCheckBox] = {}
        row = QHBoxLayout()
        for key, title in PROTOCOL_TITLES.items():
            box = QCheckBox(title)
            box.setChecked(key != "finetune")
            if key == "finetune":
                box.setToolTip("Trains a copy of the encoder end to end: takes about a minute "
                               "per 100 steps on a CPU")
            self.checks[key] = box
            row.addWidget(box)
        row.addStretch(1)
        # filled by set_option_specs once the engine (and EvalOptions) has loaded
        self.spins: dict[str, QSpinBox | QDoubleSpinBox] = {}
        self._spin_row = QHBoxLayout()
        opts = QHBoxLayout()
        opts.addLayout(self._spin_row)
        opts.addStretch(1)
        self.templates_edit = QLineEdit()
        self.templates_edit.setObjectName(f"option:{TEMPLATES_OPTION}")
        self.templates_edit.setPlaceholderText("a photo of a {}.|a {} shape.")
        templates_row = QHBoxLayout()
        templates_row.addWidget(QLabel("zero-shot templates (image-text runs)"))
        templates_row.addWidget(self.templates_edit, 1)
        self.run_button = QPushButton("Evaluate")
        self.run_button.setEnabled(False)
        self.run_button.clicked.connect(self.evaluate)
        opts.addWidget(self.run_button)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Protocol", "Trained", "Random init",
                                              "Difference"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setObjectName("hint")

        lay = QVBoxLayout(self)
        lay.addWidget(self.run_label)
        lay.addLayout(row)
        lay.addLayout(opts)
        lay.addLayout(templates_row)
        lay.addWidget(self.status)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.notes)

    def set_option_specs(self, specs: list[FieldSpec]) -> None:
        """Build the option spin boxes from EvalOptions' field specs
        (``field_specs(EvalOptions(), "eval")``); called once the engine has loaded."""
        if self.spins:
            return
        by_name = {s.name: s for s in specs}
        for name, label in EDITABLE_OPTIONS.items():
            box = option_spin_box(by_name[name])
            self._spin_row.addWidget(QLabel(label))
            self._spin_row.addWidget(box)
            self.spins[name] = box
        spec = by_name.get(TEMPLATES_OPTION)
        if spec is not None:
            if not self.templates_edit.text().strip():
                self.templates_edit.setText(str(spec.default))
            self.templates_edit.setToolTip(tooltip_text(spec, spec.default))

    def _ensure_option_specs(self) -> None:
        """The spin boxes, even when a run is evaluated before the engine has loaded."""
        if not self.spins:
            from engine.config import field_specs
            from engine.evaluate import EvalOptions

            self.set_option_specs(field_specs(EvalOptions(), "eval"))

    def option_values(self) -> dict[str, Any]:
        """The options set in the tab's spin boxes, as EvalOptions keyword arguments."""
        return {name: box.value() for name, box in self.spins.items()}

    def eval_options(self) -> EvalOptions:
        """The EvalOptions of an evaluation from the tab: the spin boxes and the zero-shot
        templates (an empty line keeps the default; a bad one is refused by the
        evaluation, naming the option)."""
        from engine.evaluate import EvalOptions

        self._ensure_option_specs()
        values = self.option_values()
        templates = self.templates_edit.text().strip()
        if templates:
            values[TEMPLATES_OPTION] = templates
        return EvalOptions(**values)

    def set_run(self, run_dir: str | None) -> None:
        """The run to evaluate; shows the results already in its summary."""
        from engine.runs import RunFolder

        self.run_dir = run_dir
        self.run_button.setEnabled(run_dir is not None and not self.busy)
        if run_dir is None:
            self.run_label.setText("No run chosen: train one, or open one in the Runs tab.")
            return
        self.run_label.setText(f"Run: <b>{Path(run_dir).name}</b>")
        saved = RunFolder(run_dir).read_summary().get("evaluation")
        self.show_results(saved)

    def evaluate(self) -> None:
        if self.run_dir is None or self.busy:
            return
        from engine.evaluate import evaluate_run

        protocols = [k for k, box in self.checks.items() if box.isChecked()]
        if not protocols:
            self.status.setText("Tick at least one protocol.")
            return
        options = self.eval_options()
        run_dir = self.run_dir
        self.busy = True
        self.run_button.setEnabled(False)
        self.status.setText(f"Evaluating {', '.join(protocols)} (trained encoder and random "
                            "init)…")
        self._worker = FunctionWorker(lambda: evaluate_run(run_dir, protocols, options))
        self._worker.result.connect(self._on_result)
        self._worker.error.connect(self._on_error)
        self._worker.done.connect(self._on_done)
        start_in_thread(self._worker, self)

    def _on_result(self, ev: dict[str, Any]) -> None:
        self.show_results(ev)
        self.status.setText("Done: results saved in the run's summary.json.")
        self.finished.emit(ev)

    def _on_error(self, message: str, _details: str) -> None:
        self.status.setText(f"<span style='color:#d62728'>Cannot evaluate: {message}</span>")
        self.finished.emit(message)

    def _on_done(self) -> None:
        self.busy = False
        self.run_button.setEnabled(self.run_dir is not None)

    def show_results(self, ev: dict[str, Any] | None) -> None:
        from engine.evaluate import table_rows

        self.results = ev
        self.table.setRowCount(0)
        self.notes.setText("")
        if not ev:
            return
        rows = table_rows(ev)
        self.table.setRowCount(len(rows))
        for r, (name, trained, base, diff, _secs) in enumerate(rows):
            for c, text in enumerate((name, trained, base, diff)):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(r, c, item)
        s = ev.get("settings", {})
        split = ev.get("split", {})
        text = f"Checkpoint step {ev.get('checkpoint_step', '?')}."
        if split:
            text += (f" Split: {split.get('train')} training / {split.get('val')} validation "
                     f"images, stratified by class (seed {s.get('seed', '?')}).")
        self.notes.setText(text)
