"""The "Run on more GPUs…" dialog: the form's config as a TOML file, and the torchrun
and SLURM commands that train it on several GPUs and machines.

The GUI trains in one process; DistributedDataParallel needs one process per GPU, which
torchrun starts, so the window's part is to write the exact config the Start button would
use and to hand over commands that are right to paste (quoted paths, the window's runs
folder, so the run appears in the Runs tab). Command building is plain functions, so it
is tested without a window.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.config import Config

#: torchrun's default rendezvous port; the placeholder host is the first machine's address
#: the built-in datasets, named not by path (engine.data.BUILTIN_DATASETS, without torch)
BUILTIN_NAMES = ("shapes", "digits", "pydocs")
RDZV_PORT = 29500
#: CPU cores asked of SLURM per training process (augmentation runs on the GPU; the
#: cores feed the batches and run the monitor)
CPUS_PER_PROCESS = 4
CONTINUATION = " \\\n    "

STYLE = """
#scaleNote { color: #444; }
#scaleStatus[level="ok"] { color: #1e6b2a; }
#scaleStatus[level="error"] { color: #b3261e; }
#scaleStatus[level="idle"] { color: #666; }
#scaleWarning { background: #fff4e5; color: #7a4a00; border: 1px solid #ffd8a8;
                border-radius: 4px; padding: 6px; }
#scaleInfo { background: #e8f1fb; color: #163d66; border: 1px solid #b9d4f1;
             border-radius: 4px; padding: 6px; }
"""


def visible_cuda_gpus() -> int | None:
    """CUDA GPUs this process sees, or None when torch is not imported yet (importing it
    here would freeze the window for seconds)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return int(torch.cuda.device_count())
    except Exception:  # a broken CUDA install must not stop the dialog opening
        return None


def default_process_count() -> int:
    """One process per visible GPU; 2 where none is seen (a config meant for elsewhere)."""
    n = visible_cuda_gpus()
    return n if n else 2


def torchrun_command(config: str | Path, runs_dir: str | Path, nproc: int,
                     nnodes: int | str = 1, endpoint: str = f"HOST:{RDZV_PORT}",
                     rdzv_id: str = "selfsup") -> str:
    """The torchrun command line (shell-quoted, continued over lines with backslashes).

    One machine needs only ``--nproc-per-node``; several need a shared rendezvous
    (``c10d`` at ``endpoint``, the same ``rdzv_id`` on every machine). ``nnodes``,
    ``endpoint`` and ``rdzv_id`` go in as written, so they may be shell variables.
    """
    several = nnodes != 1
    launcher = ["torchrun"]
    if several:
        launcher += ["--nnodes", str(nnodes)]
    launcher += ["--nproc-per-node", str(nproc)]
    parts = [" ".join(launcher)]
    if several:
        parts.append(f"--rdzv-backend c10d --rdzv-endpoint {endpoint}")
        parts.append(f"--rdzv-id {rdzv_id}")
    parts.append(f"-m engine train {shlex.quote(str(config))}")
    parts.append(f"--runs-dir {shlex.quote(str(runs_dir))}")
    return CONTINUATION.join(parts)


def slurm_script(config: str | Path, runs_dir: str | Path, gpus_per_node: int, nodes: int,
                 job_name: str = "selfsup") -> str:
    """An sbatch script: one task per node, each a torchrun of ``gpus_per_node`` processes,
    meeting at the first node of the allocation."""
    command = torchrun_command(config, runs_dir, gpus_per_node, nnodes='"$SLURM_NNODES"',
                               endpoint=f'"$head_node:{RDZV_PORT}"', rdzv_id='"$SLURM_JOB_ID"')
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gres=gpu:{gpus_per_node}",
        f"#SBATCH --cpus-per-task={CPUS_PER_PROCESS * gpus_per_node}",
        "",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        f"srun {command}",
        "",
    ])


def batch_split(batch_size: int, nproc: int, nnodes: int) -> tuple[str, str]:
    """What ``optim.batch_size`` means for this process count, and a warning ('' if none)
    when the processes cannot take equal shares."""
    n = nproc * nnodes
    who = f"{n} processes" if nnodes == 1 else \
        f"{n} processes ({nproc} per machine × {nnodes} machines)"
    if n == 1:
        who = "1 process"
    share = f" = {batch_size // n}" if batch_size % n == 0 else ""
    text = (f"optim.batch_size = {batch_size} is the global batch: each of the {who} takes "
            f"{batch_size}/{n}{share} images per step. The learning rate needs no change when "
            "only the process count changes; when you raise the batch size, scale it "
            "linearly (Goyal et al. 2017), or by its square root for AdamW/LARS recipes.")
    if batch_size % n == 0:
        return text, ""
    lower, upper = batch_size // n * n, (batch_size // n + 1) * n
    options = " or ".join(str(b) for b in (lower, upper) if b >= 2)
    warning = (f"⚠ optim.batch_size = {batch_size} is not divisible by {n} processes, so "
               f"they cannot take equal shares: set it to a multiple of {n} (e.g. {options}) "
               "or change the process count.")
    return text, warning


def _code_box(lines: int) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setReadOnly(True)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    box.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    metrics = box.fontMetrics()
    box.setMinimumHeight(metrics.lineSpacing() * lines + 2 * int(box.document().documentMargin())
                         + 2 * box.frameWidth() + 16)  # room for a horizontal scroll bar
    box.setMinimumWidth(metrics.horizontalAdvance("x") * 84)
    return box


class ScaleOutDialog(QDialog):
    """Write the form's config and show how to train it with torchrun or under SLURM."""

    def __init__(self, cfg: Config, runs_dir: str | Path, *,
                 gpu_preset: dict[str, Any] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cfg = cfg.copy()
        # a folder given relative to this window's working directory would not be found by
        # torchrun started elsewhere: the written config names it absolutely
        name = self.cfg.data.dataset.strip()
        if name not in BUILTIN_NAMES and name:
            self.cfg.data.dataset = str(Path(name).expanduser().absolute())
        self.runs_dir = Path(runs_dir).expanduser().absolute()
        self.setWindowTitle("Run on more GPUs")
        self.setStyleSheet(STYLE)
        lay = QVBoxLayout(self)
        lay.setSpacing(10)

        intro = QLabel(
            f"Train this <b>{cfg.method_name}</b> config on <b>{cfg.data.dataset}</b> with "
            "PyTorch DistributedDataParallel: torchrun starts one process per GPU (NCCL; "
            "gloo on CPU). Only rank 0 writes the run folder, so the run appears in the "
            "Runs tab like any other.")
        intro.setWordWrap(True)
        lay.addWidget(intro)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.processes = QSpinBox()
        self.processes.setRange(1, 256)
        self.processes.setValue(default_process_count())
        self.processes.setToolTip("torchrun --nproc-per-node: one process per GPU")
        gpus = visible_cuda_gpus()
        if gpus is None:
            seen = "this machine's GPU count is not known yet"
        elif gpus == 0:
            seen = "this machine sees no CUDA GPU"
        else:
            seen = f"this machine sees {gpus} CUDA GPU{'s' if gpus != 1 else ''}"
        form.addRow("Processes per machine:", self._with_note(self.processes,
                                                              f"one per GPU; {seen}"))
        self.machines = QSpinBox()
        self.machines.setRange(1, 4096)
        self.machines.setValue(1)
        self.machines.setToolTip("torchrun --nnodes, SLURM --nodes")
        form.addRow("Machines:", self._with_note(self.machines, "several need a rendezvous "
                                                 "(see the Several machines and SLURM tabs)"))

        path_row = QHBoxLayout()
        self.path_edit = QLineEdit(str(self.runs_dir / f"selfsup-{cfg.method_name}.toml"))
        self.path_edit.setToolTip("Where the config TOML is written; the commands read it")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        self.write_button = QPushButton("Write config")
        self.write_button.setDefault(True)
        self.write_button.clicked.connect(self.write_config)
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        path_row.addWidget(self.write_button)
        self.status_label = QLabel()
        self.status_label.setObjectName("scaleStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # one cell for the path and its status: a word-wrapped label in a row of its own
        # gets a row as tall as its unwrapped height guess
        path_cell = QVBoxLayout()
        path_cell.setSpacing(2)
        path_cell.addLayout(path_row)
        path_cell.addWidget(self.status_label)
        form.addRow("Config file:", path_cell)
        runs_label = QLabel(str(self.runs_dir))
        runs_label.setWordWrap(True)
        runs_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        runs_label.setToolTip("The runs folder of this window: --runs-dir in the commands")
        form.addRow("Runs folder:", runs_label)
        lay.addLayout(form)

        self.batch_label = QLabel()
        self.batch_label.setWordWrap(True)
        lay.addWidget(self.batch_label)
        self.warning_label = QLabel()
        self.warning_label.setObjectName("scaleWarning")
        self.warning_label.setWordWrap(True)
        lay.addWidget(self.warning_label)
        self.preset_label = QLabel()
        self.preset_label.setObjectName("scaleInfo")
        self.preset_label.setWordWrap(True)
        if gpu_preset:
            settings = ", ".join(f"{k} = {v}" for k, v in gpu_preset.items())
            self.preset_label.setText(
                f"This machine trains on the CPU, so the form holds {cfg.method_name}'s CPU "
                f"preset; its GPU preset sets {settings}. Change them in the form first if "
                "the GPUs should use it.")
        else:
            self.preset_label.hide()
        lay.addWidget(self.preset_label)

        self.tabs = QTabWidget()
        self.one_machine_text = self._add_tab(
            "One machine", 3, "Resume a stopped run in one process (python -m engine train "
            "--resume RUN_DIR) or with any process count (torchrun --nproc-per-node N -m "
            "engine train --resume RUN_DIR): the data order is in the checkpoint.")
        self.several_text = self._add_tab(
            "Several machines", 5, f"Run it on every machine, with HOST the first machine's "
            f"address (port {RDZV_PORT} reachable). The config, the dataset and the runs "
            "folder must be at the same paths on every machine, e.g. a shared file system.")
        self.slurm_text = self._add_tab(
            "SLURM", 13, "Submit with sbatch: srun starts one torchrun per machine, and each "
            "starts its processes; the first machine of the job hosts the rendezvous.")
        lay.addWidget(self.tabs, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

        # the pages' word-wrapped notes give the tab widget a height-for-width that counts
        # only the page shown, which would squeeze the SLURM script into its note
        self.tabs.setMinimumHeight(self.tabs.minimumSizeHint().height())
        self.processes.valueChanged.connect(self.update_commands)
        self.machines.valueChanged.connect(self.update_commands)
        self.path_edit.textChanged.connect(self.update_commands)
        self.path_edit.textChanged.connect(self._mark_unwritten)
        self._mark_unwritten()
        self.update_commands()

    # building ---------------------------------------------------------------------
    @staticmethod
    def _with_note(widget: QWidget, note: str) -> QWidget:
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        widget.setMinimumWidth(90)
        h.addWidget(widget)
        label = QLabel(note)
        label.setObjectName("scaleNote")
        label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        h.addWidget(label, 1)
        return row

    def _add_tab(self, title: str, lines: int, note: str) -> QPlainTextEdit:
        page = QWidget()
        v = QVBoxLayout(page)
        box = _code_box(lines)
        v.addWidget(box, 1)
        row = QHBoxLayout()
        label = QLabel(note)
        label.setObjectName("scaleNote")
        label.setWordWrap(True)
        row.addWidget(label, 1)
        copy = QPushButton("Copy")
        copy.setToolTip("Copy to the clipboard")
        copy.clicked.connect(lambda: self._copy(box, copy))
        row.addWidget(copy, 0, Qt.AlignmentFlag.AlignTop)
        v.addLayout(row)
        self.tabs.addTab(page, title)
        return box

    # state ------------------------------------------------------------------------
    def config_path(self) -> Path:
        return Path(self.path_edit.text().strip()).expanduser().absolute()

    def torchrun_command(self) -> str:
        """The command for one machine with this many processes."""
        return torchrun_command(self.config_path(), self.runs_dir, self.processes.value())

    def multi_node_command(self) -> str:
        return torchrun_command(self.config_path(), self.runs_dir, self.processes.value(),
                                nnodes=max(2, self.machines.value()),
                                rdzv_id=f"selfsup-{self.cfg.method_name}")

    def slurm_script(self) -> str:
        return slurm_script(self.config_path(), self.runs_dir, self.processes.value(),
                            self.machines.value(), job_name=f"selfsup-{self.cfg.method_name}")

    def update_commands(self) -> None:
        self.one_machine_text.setPlainText(self.torchrun_command())
        self.several_text.setPlainText(self.multi_node_command())
        self.slurm_text.setPlainText(self.slurm_script())
        text, warning = batch_split(self.cfg.optim.batch_size, self.processes.value(),
                                    self.machines.value())
        self.batch_label.setText(text)
        self.warning_label.setText(warning)
        self.warning_label.setVisible(bool(warning))
        self._fit_height()

    def _fit_height(self) -> None:
        """Keep the minimum height at what the layout needs at this width.

        Word-wrapped labels make the height depend on the width, which Qt does not apply
        to a top-level window: without this the tab pages are squeezed and overlap.
        """
        lay = self.layout()
        lay.activate()
        need = lay.totalHeightForWidth(self.width())
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_height()

    def _set_status(self, text: str, level: str) -> None:
        self.status_label.setText(text)
        self.status_label.setProperty("level", level)
        self.status_label.style().polish(self.status_label)

    def _mark_unwritten(self) -> None:
        self._set_status("Not written yet: the commands read this file once you press "
                         "Write config.", "idle")

    # actions ----------------------------------------------------------------------
    def browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Write the config to", str(self.config_path()),
                                              "TOML config (*.toml)")
        if path:
            self.path_edit.setText(path)

    def write_config(self) -> bool:
        """Write the config TOML; a path that cannot be written is reported here."""
        if not self.path_edit.text().strip():
            self._set_status("Choose a file name for the config first.", "error")
            return False
        path = self.config_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.cfg.save(path)
        except OSError as e:
            self._set_status(f"Cannot write {path}: {e.strerror or e}", "error")
            return False
        self._set_status(f"Wrote {path}", "ok")
        return True

    def _copy(self, box: QPlainTextEdit, button: QPushButton) -> None:
        QGuiApplication.clipboard().setText(box.toPlainText())
        button.setText("Copied")
        QTimer.singleShot(1500, button, lambda: button.setText("Copy"))  # not after close
