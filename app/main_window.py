"""The main window: dataset and method on the left, live plots in the middle.

It never waits on torch: the engine loads, datasets scan and training runs in worker
threads, and results come back through queued signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QGroupBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QStatusBar,
    QStyle,
    QTabWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.panels.clip_panel import MatchingPanel
from app.panels.collapse import CollapsePanel
from app.panels.dataset_chooser import DatasetChooser
from app.panels.embedding import EmbeddingPanel
from app.panels.evaluate import EvaluatePanel
from app.panels.preview import PreviewPanel
from app.panels.runs import RunsPanel
from app.panels.text_preview import TextPreviewPanel
from app.panels.training_plots import TrainingPlots
from app.panels.views_panel import ViewsPanel
from app.queue_control import QueueControl
from app.worker import FunctionWorker, TrainingWorker, start_in_thread, wait_for_threads
from engine import events as ev
from engine.config import DEFAULT_METHOD, DataConfig

if TYPE_CHECKING:
    from app.scale_out import ScaleOutDialog

FAMILY_TITLES = {
    "contrastive": "Contrastive",
    "non-contrastive": "Non-contrastive",
    "pretext": "Pretext tasks",
    "reconstruction": "Reconstruction",
    "generative": "Generative (language models)",
}
#: what the status bar and the run line call one item of a modality's data
ITEM_WORDS = {"image": ("img", "images"), "text": ("samples", "text samples"),
              "paired": ("pairs", "image-caption pairs")}
#: what messages call a method modality's data
MODALITY_WORDS = {"image": "images", "text": "text", "paired": "captioned images"}
PAIRED = "paired"  # engine.data.PAIRED_MODALITY, without importing the engine here


def data_kind(method_modality: str) -> str:
    """The kind of data a method's modality trains on, as the dataset chooser names it:
    image-text methods train on (captioned) image data."""
    return "image" if method_modality == PAIRED else method_modality


def _load_engine() -> dict[str, Any]:
    """Runs in a worker thread: import torch and the methods, find the device, and read
    the evaluation options' declarations (their class lives beside torch)."""
    import torch

    from engine.config import field_specs
    from engine.evaluate import EvalOptions
    from engine.model import cpu_has_native_bf16, pick_device
    from engine.registry import available_methods

    device = pick_device("auto")
    if device.type == "cuda":
        text = f"GPU: {torch.cuda.get_device_name(0)}"
    elif device.type == "mps":
        text = "GPU: Apple MPS"
    else:
        # with bfloat16 in hardware, run.amp trains the convolutional backbones in it
        # (the ViT and the text encoder stay float32: engine.model.autocast_dtype)
        bf16 = ", bfloat16 for CNNs" if cpu_has_native_bf16() else ""
        text = f"CPU ({torch.get_num_threads()} threads{bf16})"
    return {"methods": available_methods(), "device": text, "accelerator": device.type != "cpu",
            "eval_specs": field_specs(EvalOptions(), "eval")}


class MessageBar(QLabel):
    """A banner for errors and warnings that never blocks the window (unlike a dialog)."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("messageBar")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_message(self, text: str, level: str = "error") -> None:
        self.setProperty("level", level)
        self.style().polish(self)
        self.setText(text)
        self.show()



def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach.

    With torch, Qt and a model loaded the heap holds hundreds of thousands of tracked
    objects, and each full (generation 2) collection walks them all while holding the
    GIL: on the training thread that took 40-150 ms and froze the window for as long
    (bench/gui_latency.py). Objects alive at start-up and at run start live for the
    whole session anyway; ``gc.freeze`` (Python 3.7+) stops the collector re-scanning
    them, and everything created later is collected as before. (No ``gc.collect()``
    first: on the GUI thread that full collection would itself be the stall.)
    """
    import gc

    gc.freeze()

class MainWindow(QueueControl, QMainWindow):
    """SelfSup Workbench's window."""

    engine_loaded = Signal()
    run_finished = Signal(object)  # the Finished or Failed event

    def __init__(
        self,
        dataset: str | None = None,
        runs_dir: str | Path | None = None,
        method: str | None = None,
        overrides: list[str] | None = None,
    ) -> None:
        super().__init__()
        self._initial_method = method or DEFAULT_METHOD
        # a method asked for without a dataset brings its own when the default data do not
        # fit it (--method gpt: the text corpus); otherwise the data decide the method
        self._method_picks_data = method is not None and dataset is None
        self.data_modality: str | None = None  # of the chosen dataset, once known
        self.data_captioned = False  # the chosen dataset's images have captions
        self.run_modality = "image"
        self._all_methods: list[Any] = []
        self._last_method: dict[str, str] = {}  # by modality: what to go back to
        self._folder_applied: dict[str, Any] = {}  # what was set on the form for it
        # the form holds a saved run's settings: its folder's defaults are already in them
        self._form_from_run: str | None = None
        self._initial_overrides = list(overrides or [])
        self.setWindowTitle("SelfSup Workbench")
        self.resize(1400, 860)
        self.runs_dir = runs_dir
        self.methods: dict[str, Any] = {}
        self.accelerator = False
        self.trainer: Any = None
        self.worker: TrainingWorker | None = None
        self.running = False
        self.paused = False
        self.run_dir: str | None = None
        self.verdict = "healthy"
        self.total_steps = 0
        self._last_step: ev.StepMetrics | None = None
        self._close_when_stopped = False
        self._loader: FunctionWorker | None = None

        self._build_side_panel()
        self._build_actions()
        self.message_bar = MessageBar()
        self.plots = TrainingPlots()
        self.preview = PreviewPanel()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.plots, "Training curves")
        self.collapse = CollapsePanel()
        self.collapse.explainer = self._explain
        self.tabs.addTab(self.collapse, "Collapse")
        self.embedding = EmbeddingPanel()
        self.tabs.addTab(self.embedding, "Embedding (UMAP)")
        self.tabs.addTab(self.preview, "Predictions && reconstructions")
        self.text_preview = TextPreviewPanel()
        self.tabs.addTab(self.text_preview, "Predictions")
        self.tabs.setTabVisible(self.tabs.indexOf(self.text_preview), False)
        self.matching = MatchingPanel()
        self.matching.query_requested.connect(self._on_query)
        self.tabs.addTab(self.matching, "Matching")
        self.tabs.setTabVisible(self.tabs.indexOf(self.matching), False)
        self._searcher: FunctionWorker | None = None
        self.evaluate = EvaluatePanel()
        self.tabs.addTab(self.evaluate, "Evaluate")
        self.runs = RunsPanel(runs_dir)
        self.runs.open_requested.connect(self.open_run)
        self.runs.resume_requested.connect(lambda path: self.resume_run(path))
        self.runs.settings_requested.connect(self.use_run_settings)
        self.runs.delete_requested.connect(self.delete_run)
        self.runs.export_requested.connect(self.export_run)
        self.tabs.addTab(self.runs, "Runs")
        self.views = ViewsPanel()
        self.views.config_source = lambda: self.form.config(self.dataset_chooser.source)
        self.views.data_source = self._loaded_data_for
        self.form.changed.connect(self.views.request_redraw)
        self.dataset_chooser.scanned.connect(lambda _ds: self.views.request_redraw())
        self.tabs.insertTab(0, self.views, "What it trains on")
        self.tabs.setCurrentWidget(self.views)  # before Start: what the method will see
        self._build_queue_ui()
        self.help_button = QToolButton()
        self.help_button.setText("What is this?")
        self.help_button.setToolTip("What the numbers, plots and verdicts of this tab mean, "
                                    "in plain words")
        self.help_button.clicked.connect(lambda: self.show_help())
        self.tabs.setCornerWidget(self.help_button)
        self.help_dialog: Any = None
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._exporter: FunctionWorker | None = None
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 6)
        self.run_label = QLabel("Choose a dataset and a method, then press Start.")
        self.run_label.setObjectName("runLabel")
        lay.addWidget(self.run_label)
        lay.addWidget(self.message_bar)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._build_status_bar()
        self.dataset_chooser.modality_known.connect(self._on_data_modality)
        self.dataset_chooser.folder_stats_known.connect(self._apply_folder_defaults)
        self.dataset_chooser.changed.connect(self._on_dataset_changed)
        self.dataset_chooser.set_source(dataset if dataset is not None else DataConfig().dataset)

        self.status_timer = QTimer(self)
        self.status_timer.setInterval(250)
        self.status_timer.timeout.connect(self._update_status)
        self.status_timer.start()
        QTimer.singleShot(0, self.load_engine)

    # construction ------------------------------------------------------------------
    def _build_actions(self) -> None:
        tb = QToolBar("Run")
        tb.setObjectName("runToolbar")
        tb.setIconSize(QSize(20, 20))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.setMovable(False)
        st = self.style()
        self.start_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_MediaPlay),
                                    "Start", self)
        self.start_action.setShortcut(QKeySequence("Ctrl+R"))
        self.start_action.triggered.connect(self.start_run)
        self.pause_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_MediaPause),
                                    "Pause", self)
        self.pause_action.triggered.connect(self.toggle_pause)
        self.stop_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_MediaStop),
                                   "Stop", self)
        self.stop_action.triggered.connect(self.stop_run)
        self.resume_run_action = QAction(
            st.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), "Resume run…", self)
        self.resume_run_action.setToolTip("Continue a stopped or interrupted run from its "
                                          "run folder")
        self.resume_run_action.triggered.connect(self.choose_run_to_resume)
        for a in (self.start_action, self.pause_action, self.stop_action):
            tb.addAction(a)
        tb.addSeparator()
        tb.addAction(self.resume_run_action)
        self.export_plots_action = QAction(
            st.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton), "Export plots…", self)
        self.export_plots_action.setToolTip("Save the plots of the current tab as PNG and SVG")
        self.export_plots_action.triggered.connect(lambda: self.export_plots())
        tb.addAction(self.export_plots_action)
        self.addToolBar(tb)
        self.scale_out_action = QAction("Run on more GPUs…", self)
        self.scale_out_action.setToolTip("Write the form's config and get the torchrun and "
                                         "SLURM commands that train it on several GPUs")
        self.scale_out_action.triggered.connect(lambda: self.open_scale_out_dialog())
        menu = self.menuBar().addMenu("&Run")
        self.run_menu = menu
        for a in (self.start_action, self.pause_action, self.stop_action):
            menu.addAction(a)
        menu.addSeparator()
        menu.addAction(self.resume_run_action)
        menu.addAction(self.scale_out_action)
        self.scale_out_dialog: ScaleOutDialog | None = None
        self._set_buttons()

    def _build_side_panel(self) -> None:
        side = QWidget()
        side.setObjectName("sidePanel")
        lay = QVBoxLayout(side)

        box = QGroupBox("Dataset")
        bl = QVBoxLayout(box)
        self.dataset_chooser = DatasetChooser()
        bl.addWidget(self.dataset_chooser)
        lay.addWidget(box)

        box = QGroupBox("Method")
        bl = QVBoxLayout(box)
        self.method_combo = QComboBox()
        self.method_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(14)
        self.method_combo.setEnabled(False)
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        bl.addWidget(self.method_combo)
        self.method_desc = QLabel("Loading methods…")
        self.method_desc.setWordWrap(True)
        self.method_desc.setObjectName("methodDescription")
        bl.addWidget(self.method_desc)
        lay.addWidget(box)

        box = QGroupBox("Hyperparameters")
        bl = QVBoxLayout(box)
        from app.forms import ConfigForm

        self.form = ConfigForm()
        # the dataset summary follows the text fields, once typing has paused
        self._text_sync = QTimer(self, singleShot=True, interval=400)
        self._text_sync.timeout.connect(self._sync_text_settings)
        self.form.changed.connect(self._text_sync.start)
        bl.addWidget(self.form)
        lay.addWidget(box, 1)

        self.device_label = QLabel("Device: detecting…")
        self.device_label.setObjectName("deviceLabel")
        lay.addWidget(self.device_label)

        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(380)
        dock = QDockWidget("Experiment", self)
        dock.setObjectName("experimentDock")
        dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        dock.setTitleBarWidget(QWidget())  # no title bar: the panel is part of the window
        dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    def _build_status_bar(self) -> None:
        sb = QStatusBar()
        self.step_label = QLabel("step –")
        self.epoch_label = QLabel("epoch –")
        self.ips_label = QLabel("– img/s")
        self.eta_label = QLabel("ETA –")
        self.verdict_label = QLabel("")
        self.verdict_label.setObjectName("verdictLabel")
        sb.addPermanentWidget(self.verdict_label)
        for w in (self.step_label, self.epoch_label, self.ips_label, self.eta_label):
            w.setMinimumWidth(110)
            sb.addPermanentWidget(w)
        self.setStatusBar(sb)

    # engine loading ------------------------------------------------------------------
    def load_engine(self) -> None:
        """Import torch and the methods in the background; the window is already up."""
        self.statusBar().showMessage("Loading the training engine…")
        self._loader = FunctionWorker(_load_engine)
        self._loader.result.connect(self._on_engine_loaded)
        self._loader.error.connect(
            lambda msg, _tb: self.message_bar.show_message(f"The engine failed to load: {msg}"))
        start_in_thread(self._loader, self)

    def _on_engine_loaded(self, info: dict[str, Any]) -> None:
        freeze_long_lived_objects()  # torch and every method module are imported now
        self.device_label.setText(f"Device: {info['device']}")
        self.accelerator = info["accelerator"]
        self.evaluate.set_option_specs(info["eval_specs"])
        self.methods = {m.name: m for m in info["methods"]}
        self._all_methods = list(info["methods"])
        self._fill_method_combo()
        self.method_combo.setEnabled(True)
        index = self.method_combo.findData(self._initial_method)
        if index < 0:
            self.message_bar.show_message(
                f"Unknown method '{self._initial_method}' (available: "
                f"{', '.join(self.methods)}); using {DEFAULT_METHOD}.", "warning")
            index = self.method_combo.findData(DEFAULT_METHOD)
        self.method_combo.setCurrentIndex(index)
        self._on_method_changed()
        self._apply_overrides(self._initial_overrides)
        self.statusBar().showMessage("Ready", 3000)
        self.dataset_chooser.engine_ready = True
        self.dataset_chooser.sync_builtins()
        self.dataset_chooser.scan()
        self._set_buttons()
        self.offer_unfinished_queues()
        self.engine_loaded.emit()

    def _apply_overrides(self, overrides: list[str]) -> None:
        """Fill form fields from ``section.field=value`` strings (command line)."""
        from engine.config import check, coerce, parse_override
        from engine.errors import ConfigError

        for text in overrides:
            try:
                key, value = parse_override(text)
                if key == "data.dataset":
                    self._method_picks_data = False  # the data were asked for too
                    self.dataset_chooser.set_source(value)
                    continue
                editor = self.form.editors.get(key)
                if editor is None:
                    spec = self.form.spec_of(key)  # ConfigError for an unknown key
                    method = self.method_combo.currentData() or "this method"
                    raise ConfigError(f"{key} is a setting for {spec.modality} data, which "
                                      f"{method} does not train on")
                typed = coerce(editor.spec, value)
                check(editor.spec, typed)
                editor.set_value(typed)
            except ConfigError as e:
                self.message_bar.show_message(f"--set {text}: {e}", "warning")

    def _on_method_changed(self, *_: Any, settings: Any = None, from_run: str | None = None
                           ) -> None:
        """Rebuild the form for the chosen method: its preset, or ``settings`` (a run's
        config; ``from_run`` its id when it comes from a saved run)."""
        name = self.method_combo.currentData()
        if not name or name not in self.methods:
            return
        from engine.presets import default_config

        info = self.methods[name]
        self._form_from_run = from_run  # None: the form holds the preset
        if self.data_modality is None or self._fits(info):
            self._last_method[data_kind(info.modality)] = name
        # the preset in force on this device: the form's values and its tooltips' defaults
        cfg = default_config(name, self.accelerator)
        text = f"<b>{info.name}</b>: {info.description}<br><i>{info.paper}</i>"
        switches = [spec.label for spec in cfg.specs() if spec.collapse]
        if switches:
            text += ("<br><span style='color:#b35c00'>⚠ Collapse switches (Method page): "
                     f"{', '.join(switches)}</span>")
        self.method_desc.setText(text)
        self.form.set_config(cfg if settings is None else settings, defaults=cfg,
                             modality=info.modality)
        self._folder_applied = {}  # nothing of a folder's is on the form now
        self._apply_folder_defaults()
        self._add_lr_suggest_button()
        self.views.request_redraw()
        self._sync_text_settings()
        self._show_preview_tab(info.modality)
        data = self.data_modality
        if data is not None and not self._fits(info) and not self.running:
            # the list offers only methods for the chosen data, but a method can still be
            # asked for (command line, a test): it brings the dataset its preset names
            self._method_picks_data = False
            preset = cfg.data.dataset
            what = "uncaptioned image" if info.modality == PAIRED and data == "image" else data
            self.message_bar.show_message(
                f"{info.name} trains on {MODALITY_WORDS.get(info.modality, info.modality)}, "
                f"not on the {what} data of {self.dataset_chooser.source}: switched the "
                f"dataset to {preset}.", "info")
            self.data_modality = None  # until the new dataset's kind is known
            self.dataset_chooser.set_source(preset)

    def _sync_text_settings(self) -> None:
        """Let the dataset summary count text samples as the form's settings will cut
        them (sequence length, sample kind, tokenizer)."""
        from app.panels.dataset_chooser import TEXT_FIELDS
        from engine.errors import ConfigError

        values = {}
        for name in TEXT_FIELDS:
            editor = self.form.editors.get(f"data.{name}")
            if editor is None:
                continue
            try:
                values[name] = editor.value()
            except ConfigError:
                continue  # a field being typed: its error shows at Start
        self.dataset_chooser.set_text_settings(values)

    # methods for the chosen data ------------------------------------------------------
    def _fill_method_combo(self) -> None:
        """List the methods that train on the chosen data (all while its kind is not
        known), grouped by family; the selection stays when it is still listed."""
        current = self.method_combo.currentData()
        combo = self.method_combo
        combo.blockSignals(True)
        combo.clear()
        family = None
        for m in self._all_methods:
            if self.data_modality is not None and not self._fits(m):
                continue
            if m.family != family:
                family = m.family
                combo.addItem(f"— {FAMILY_TITLES.get(family, family.capitalize())} —")
                combo.model().item(combo.count() - 1).setEnabled(False)
            combo.addItem(f"   {m.name}", m.name)
        index = combo.findData(current) if current else -1
        if index >= 0:
            combo.setCurrentIndex(index)
        combo.blockSignals(False)

    def listed_methods(self) -> list[str]:
        """The method names the list offers now."""
        combo = self.method_combo
        return [combo.itemData(i) for i in range(combo.count()) if combo.itemData(i)]

    def _fits(self, info: Any, modality: str | None = None,
              captioned: bool | None = None) -> bool:
        """Whether a method trains on the chosen data (or on ``modality`` data with or
        without captions): its own kind, and image-text methods on captioned images."""
        data = self.data_modality if modality is None else modality
        has = self.data_captioned if captioned is None else captioned
        if info.modality == PAIRED:
            return data == "image" and has
        return bool(info.modality == data)

    def _on_data_modality(self, modality: str, captioned: bool = False) -> None:
        """The chosen dataset's kind is known: offer only the methods that train on it,
        and when the current one does not, switch (the data or the method)."""
        if not self.methods:
            self.data_modality = modality  # the list is filled when the engine is up
            self.data_captioned = captioned
            return
        current = self.method_combo.currentData()
        info = self.methods.get(current) if current else None
        fits = info is not None and self._fits(info, modality, captioned)
        if info is not None and not fits and self._method_picks_data:
            self._method_picks_data = False  # once: the method asked for on start-up
            from engine.presets import default_config

            preset = default_config(info.name, self.accelerator).data.dataset
            if preset != self.dataset_chooser.source:
                self.message_bar.show_message(
                    f"{info.name} trains on "
                    f"{MODALITY_WORDS.get(info.modality, info.modality)}: switched the "
                    f"dataset to {preset}.", "info")
                self.dataset_chooser.set_source(preset)
                return
        self._method_picks_data = False
        self.data_modality = modality
        self.data_captioned = captioned
        self._fill_method_combo()
        if self.running or fits:
            return
        # image-text methods are listed for captioned images, never picked for them
        fitting = [m.name for m in self._all_methods if m.modality == modality]
        # back to the method last used on such data (the default one for images)
        first = next((n for n in (self._last_method.get(modality), DEFAULT_METHOD)
                      if n in fitting), fitting[0] if fitting else None)
        if first is None:
            self.message_bar.show_message(f"No method trains on {modality} data.", "warning")
            return
        self.method_combo.setCurrentIndex(self.method_combo.findData(first))
        if info is not None:
            why = (f"{info.name} needs captioned images, and {self.dataset_chooser.source} "
                   "has no captions" if info.modality == PAIRED and modality == "image" else
                   f"{info.name} does not train on {modality} data like "
                   f"{self.dataset_chooser.source}")
            self.message_bar.show_message(f"{why}: switched the method to {first}.", "info")

    def _on_dataset_changed(self, _source: str) -> None:
        self.data_modality = None  # until the chooser has looked at the new source
        self._form_from_run = None  # another dataset: its folder's defaults apply

    def _apply_folder_defaults(self, *_: Any) -> None:
        """Set the chosen image folder's resolution, crop scale and batch size on the form
        (engine.data.folder_defaults), and say so under the dataset summary. A field the
        user has changed from the method's preset keeps the user's value; what was set for
        the previous folder goes back to the preset where it was left alone."""
        from engine.errors import ConfigError

        def current(key: str) -> Any:
            editor = self.form.editors.get(key)
            if editor is None:
                return None
            try:
                return editor.value()
            except ConfigError:
                return None  # being typed: left alone

        name = self.method_combo.currentData()
        if self.running or not name or name not in self.methods:
            return
        if self._form_from_run is not None:
            self.dataset_chooser.show_defaults(
                f"Settings filled in from run {self._form_from_run}.")
            return
        from engine.data import folder_defaults as fd
        from engine.presets import default_config

        preset = default_config(name, self.accelerator)
        for key, value in self._folder_applied.items():
            if current(key) == value:
                self.form.editors[key].set_value(preset.get(key))
        self._folder_applied = {}
        stats = self.dataset_chooser.folder_stats  # None until read, and for built-ins
        if stats is None or self.methods[name].modality == "text":
            self.dataset_chooser.show_defaults("")
            return
        user_set = frozenset(k for k in fd.KEYS
                             if current(k) is not None and current(k) != preset.get(k))
        applied = fd.apply(preset.copy(), fd.suggest(stats, preset, self.accelerator),
                           keep=user_set)
        applied = [s for s in applied if s.key in self.form.editors]
        for s in applied:
            self.form.editors[s.key].set_value(s.value)
            self._folder_applied[s.key] = s.value
        self.dataset_chooser.show_defaults(fd.describe(applied))

    def _loaded_data_for(self, cfg: Any) -> Any:
        """The chooser's scanned dataset when it is what ``cfg`` trains on (an image set
        of the config's source for an image method), else None (the views panel then
        loads the data as the run would)."""
        ds = self.dataset_chooser.dataset
        info = self.methods.get(cfg.method_name)
        if ds is None or info is None or info.modality != "image":
            return None
        if getattr(ds, "modality", "image") != "image" or ds.name != cfg.data.dataset:
            return None
        if getattr(ds, "resolution", cfg.data.resolution) != cfg.data.resolution:
            return None  # scanned at another size (a folder's own resolution was set)
        chooser = self.dataset_chooser
        if cfg.data.dataset == "shapes" and (cfg.data.shapes_count, cfg.data.seed,
                                             cfg.data.shapes_orientation) != (
                chooser.shapes_count, chooser.shapes_seed, chooser.shapes_orientation):
            return None
        return ds

    def _settle_modality(self) -> None:
        """Start pressed before the chooser said what the data are: look now (a cheap
        scan), so a run never starts with a method for the other kind of data."""
        from engine.data import dataset_modality, has_captions

        for _ in range(2):  # a second time when the method brought its own dataset
            if self.data_modality is not None:
                return
            source = self.dataset_chooser.source
            self._on_data_modality(dataset_modality(source), has_captions(source))

    def _show_preview_tab(self, modality: str) -> None:
        """The predictions tab of the modality: images' previews, texts', or the image-text
        Matching tab (heat map, search, retrieval curves)."""
        panels = {"image": self.preview, "text": self.text_preview, PAIRED: self.matching}
        shown = panels.get(modality, self.preview)
        was_current = self.tabs.currentWidget() in panels.values() and \
            self.tabs.currentWidget() is not shown
        for panel in panels.values():
            self.tabs.setTabVisible(self.tabs.indexOf(panel), panel is shown)
        if was_current:
            self.tabs.setCurrentWidget(shown)

    # run control ------------------------------------------------------------------
    def _set_buttons(self) -> None:
        ready = bool(self.methods)
        self.start_action.setEnabled(ready and not self.running)
        self.resume_run_action.setEnabled(ready and not self.running)
        self.scale_out_action.setEnabled(ready)  # it writes the form's config, run or not
        self.pause_action.setEnabled(self.running)
        self.stop_action.setEnabled(self.running)
        self.pause_action.setText("Resume" if self.paused else "Pause")
        icon = QStyle.StandardPixmap.SP_MediaPlay if self.paused else \
            QStyle.StandardPixmap.SP_MediaPause
        self.pause_action.setIcon(self.style().standardIcon(icon))
        self.method_combo.setEnabled(ready and not self.running)
        # a paused run may change its learning rate, warm-up, weight decay, steps and AMP
        editable = not self.running or self.paused
        self.form.setEnabled(editable)
        self.form.restrict_to(self._live_settings() if self.running and self.paused else None)
        self.dataset_chooser.setEnabled(not self.running)

    def start_run(self) -> bool:
        """Validate the form and start training in a worker thread. False if refused."""
        from engine.errors import ConfigError

        if self.running or not self.methods:
            return False
        self._settle_modality()
        source = self.dataset_chooser.source
        try:
            cfg = self.form.config(source)
        except ConfigError as e:
            self.message_bar.show_message(f"Cannot start: {e}")
            return False
        from engine.train import Trainer

        ds = self.dataset_chooser.dataset
        if ds is not None and not (ds.resolution == cfg.data.resolution and
                                   ds.name == source and len(ds) > 0):
            ds = None
        if getattr(ds, "modality", "image") == "text":
            ds = None  # scanned with the default text settings, not the form's
        info = self.methods.get(cfg.method_name)
        if info is not None and info.modality == PAIRED:
            ds = None  # the chooser loads images alone; the run loads them with captions
        chooser = self.dataset_chooser
        if source == "shapes" and (cfg.data.shapes_count, cfg.data.seed,
                                   cfg.data.shapes_orientation) != (
                chooser.shapes_count, chooser.shapes_seed, chooser.shapes_orientation):
            ds = None  # the run asks for another generated set than the one shown
        self.message_bar.hide()
        self._clear_live_views()
        self.trainer = Trainer(cfg, self.runs_dir, dataset=ds)
        self._start_worker(self.trainer)
        self.run_label.setText(f"Starting {cfg.method_name} on {source}…")
        return True

    def _add_lr_suggest_button(self) -> None:
        """A "Suggest…" button under the learning-rate field (rebuilt with the form)."""
        from PySide6.QtWidgets import QPushButton

        editor = self.form.editors.get("optim.lr")
        if editor is None:
            return
        button = QPushButton("Suggest…")
        button.setObjectName("lrSuggest")
        button.setToolTip("Run a short learning-rate range test (Smith 2017) of this "
                          "config and fill in the rate it suggests")
        button.clicked.connect(lambda: self.suggest_lr())
        editor.layout().addWidget(button)

    def suggest_lr(self, steps: int | None = None) -> Any:
        """The learning-rate test dialog for the form's config (None, with the form's
        message, when the form is not valid or a run is under way)."""
        from app.lr_dialog import GUI_STEPS, LRFindDialog
        from engine.errors import ConfigError

        if self.running or not self.methods:
            return None
        try:
            cfg = self.form.config(self.dataset_chooser.source)
        except ConfigError as e:
            self.message_bar.show_message(f"Cannot test learning rates: {e}")
            return None

        def apply(lr: float) -> None:
            editor = self.form.editors.get("optim.lr")
            if editor is not None:
                editor.set_value(lr)
                self.form.changed.emit()

        dlg = LRFindDialog(self, cfg, self._loaded_data_for(cfg), apply,
                           steps=steps or GUI_STEPS)
        dlg.show()
        self.lr_dialog = dlg
        return dlg

    def show_help(self) -> Any:
        """The glossary entries of the tab in view, in a window beside this one."""
        from app.help import HelpDialog

        if self.help_dialog is not None:
            self.help_dialog.close()
        self.help_dialog = HelpDialog(self, self.tabs.tabText(self.tabs.currentIndex()))
        self.help_dialog.show()
        return self.help_dialog

    def _clear_live_views(self) -> None:
        """Empty the views a run fills, for the next run."""
        self.plots.clear()
        self.preview.clear()
        self.text_preview.clear()
        self.matching.clear()
        self.embedding.clear()
        self.collapse.clear()

    def open_scale_out_dialog(self) -> ScaleOutDialog | None:
        """The "Run on more GPUs…" dialog for the config Start would use, or None (with the
        form's message) when the form does not hold a valid config."""
        from engine.errors import ConfigError

        if not self.methods:
            return None
        try:
            cfg = self.form.config(self.dataset_chooser.source)
        except ConfigError as e:
            self.message_bar.show_message(f"Cannot write a config: {e}")
            return None
        if self.message_bar.text().startswith("Cannot write a config"):
            self.message_bar.hide()  # the form is valid now
        from app.scale_out import ScaleOutDialog
        from engine.runs import default_runs_dir

        info = self.methods.get(cfg.method_name)
        gpu_preset = None if self.accelerator or info is None else info.gpu_preset
        if self.scale_out_dialog is not None:
            self.scale_out_dialog.deleteLater()
        self.scale_out_dialog = ScaleOutDialog(
            cfg, self.runs_dir or default_runs_dir(), gpu_preset=gpu_preset, parent=self)
        self.scale_out_dialog.open()
        return self.scale_out_dialog

    def choose_run_to_resume(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        from engine.runs import default_runs_dir

        start = str(self.runs_dir or default_runs_dir())
        folder = QFileDialog.getExistingDirectory(self, "Choose a run folder", start)
        if folder:
            self.resume_run(folder)

    def resume_run(self, run_dir: str | Path, max_steps: int | None = None) -> bool:
        """Continue a run from its last checkpoint; its curves continue where they ended."""
        from engine.errors import UserInputError
        from engine.train import Trainer

        if self.running or not self.methods:
            return False
        try:
            trainer = Trainer.resume(run_dir, max_steps=max_steps)
        except UserInputError as e:
            self.message_bar.show_message(f"Cannot resume: {e}")
            return False
        self.message_bar.hide()
        self.show_run(run_dir)
        self.trainer = trainer
        self._start_worker(trainer)
        self.run_label.setText(f"Resuming {Path(run_dir).name}…")
        return True

    def show_run(self, run_dir: str | Path) -> None:
        """Replay a run folder into every view: curves, collapse, embeddings, previews.

        The one path for reopening a run, resuming it and going back after divergence,
        so the views always agree with what the run folder holds.
        """
        from engine.runs import RunFolder

        run = RunFolder(run_dir)
        rows = run.read_metrics()
        self.plots.clear()
        self.plots.load_rows(rows)
        self.plots.refresh()
        self.collapse.clear()
        self.collapse.load_rows(rows)
        self.embedding.load_run(str(run_dir))
        self.preview.load_run(str(run_dir), rows)
        self.text_preview.load_run(str(run_dir))
        self.matching.load_run(str(run_dir), rows)
        info = self.methods.get(str(run.read_summary().get("method", "")))
        if info is not None:
            self._show_preview_tab(info.modality)
        elif self.matching.snapshots:
            self._show_preview_tab(PAIRED)
        elif self.text_preview.snapshots or self.preview.snapshots:
            self._show_preview_tab("text" if self.text_preview.snapshots else "image")

    # run history -------------------------------------------------------------------------
    def _on_tab_changed(self, _index: int) -> None:
        if self.tabs.currentWidget() is self.runs:
            self.runs.refresh()

    def open_run(self, run_dir: str) -> bool:
        """Show a saved run's curves, collapse scores, embeddings and previews again."""
        from engine.runs import RunFolder

        if self.running:
            self.message_bar.show_message("Stop the current run before opening another one "
                                          "(the plots show the run in progress).", "warning")
            return False
        run = RunFolder(run_dir)
        summary = run.read_summary()
        self.message_bar.hide()
        self.show_run(run_dir)
        self.evaluate.set_run(run_dir)
        self.run_dir = run_dir
        knn = (summary.get("final") or {}).get("knn_accuracy")
        base = summary.get("baseline_knn")
        result = f" · kNN {knn:.1%} (random init {base:.1%})" if knn is not None and \
            base is not None else ""
        self.run_label.setText(
            f"Viewing <b>{summary.get('method', '?')}</b> run <code>{run.id}</code> "
            f"({summary.get('status', 'unknown')}, step {summary.get('step', 0)}){result}")
        self.tabs.setCurrentWidget(self.plots)
        return True

    def show_config(self, cfg: Any, from_run: str | None = None) -> None:
        """Put ``cfg`` on the form: its dataset, its method (page and preset tooltips) and
        every value. For a saved run's settings (``from_run``: its id), and for each run of
        a queue as it starts, so the form always says what is training."""
        if cfg.data.dataset != self.dataset_chooser.source:
            # the data first: with the kind unknown, choosing the method switches nothing
            self.dataset_chooser.set_source(cfg.data.dataset)
        self._fill_method_combo()
        self.method_combo.blockSignals(True)
        self.method_combo.setCurrentIndex(self.method_combo.findData(cfg.method_name))
        self.method_combo.blockSignals(False)
        self._on_method_changed(settings=cfg, from_run=from_run)  # once, chosen or not

    def use_run_settings(self, run_dir: str) -> bool:
        """Fill the form with a saved run's method, dataset and every setting, so it can be
        trained again with one thing changed (the experiment loop: change, compare)."""
        from engine.errors import UserInputError
        from engine.presets import load_toml
        from engine.runs import RunFolder

        if self.running:
            self.message_bar.show_message("Stop the current run before filling the form "
                                          "with another run's settings.", "warning")
            return False
        if not self.methods:
            return False  # the engine is still loading
        run = RunFolder(run_dir)
        try:
            cfg = load_toml(run.config_path)
        except UserInputError as e:
            self.message_bar.show_message(f"Cannot use the settings of {run.path.name}: {e}")
            return False
        name = cfg.method_name
        if name not in self.methods:
            self.message_bar.show_message(
                f"Cannot use the settings of {run.path.name}: its method '{name}' is not "
                f"available here (available: {', '.join(self.methods)}).")
            return False
        self._method_picks_data = False
        self.show_config(cfg, from_run=run.id)
        self.message_bar.show_message(
            f"Filled the form with the settings of run {run.id} ({name} on "
            f"{Path(cfg.data.dataset).name or cfg.data.dataset}): change what you want to "
            "compare and press Start; tick both in the Runs tab to overlay them.", "info")
        return True

    def delete_run(self, run_dir: str, confirm: bool = True) -> bool:
        """Delete a run folder after asking; never the run being trained."""
        import shutil

        if self.running and self.run_dir and Path(run_dir) == Path(self.run_dir):
            self.message_bar.show_message("The run in progress cannot be deleted; stop it "
                                          "first.", "warning")
            return False
        if confirm:
            answer = QMessageBox.question(
                self, "Delete run", f"Delete the run folder {run_dir} with its checkpoints "
                "and metrics? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            shutil.rmtree(run_dir)
        except OSError as e:
            self.message_bar.show_message(f"Cannot delete {run_dir}: {e}")
            return False
        if self.evaluate.run_dir == run_dir:
            self.evaluate.set_run(None)
        self.runs.refresh()
        self.statusBar().showMessage(f"Deleted {Path(run_dir).name}", 4000)
        return True

    def export_run(self, run_dir: str, what: str, out_dir: str | None = None) -> None:
        """Export a run's encoder, embeddings or config into a folder (asked for)."""
        from PySide6.QtWidgets import QFileDialog

        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(
                self, f"Export the {what} of {Path(run_dir).name} into", str(Path.home()))
            if not out_dir:
                return
        from engine import export

        fn = {"encoder": export.export_encoder, "embeddings": export.export_embeddings,
              "config": export.export_config}[what]
        target = str(out_dir)
        self.statusBar().showMessage(f"Exporting the {what}…")
        self._exporter = FunctionWorker(lambda: fn(run_dir, target))
        self._exporter.result.connect(lambda files: self.message_bar.show_message(
            f"Exported the {what} of {Path(run_dir).name}: "
            + ", ".join(str(p) for p in files.values()), "info"))
        self._exporter.error.connect(lambda msg, _tb: self.message_bar.show_message(
            f"Export failed: {msg}"))
        start_in_thread(self._exporter, self)

    def export_plots(self, folder: str | None = None) -> list[Path]:
        """Save the current tab's plots as PNG and SVG into a folder (asked for)."""
        from PySide6.QtWidgets import QFileDialog

        from app.plot_export import export_plots

        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the plots into",
                                                      str(Path.home()))
            if not folder:
                return []
        prefix = f"{Path(self.run_dir).name}_" if self.run_dir else ""
        try:
            paths = export_plots(self.tabs.currentWidget(), folder, prefix)
        except OSError as e:
            self.message_bar.show_message(f"Cannot save the plots into {folder}: {e}")
            return []
        if paths:
            self.message_bar.show_message(f"Saved {len(paths)} files into {folder}", "info")
        else:
            self.message_bar.show_message("This tab has no plots to save.", "warning")
        return paths

    def _start_worker(self, trainer: Any, worker: Any = None) -> None:
        """Run ``trainer`` (or ``worker``, a queue's, whose trainer comes with each run)
        in a worker thread, its events to :meth:`on_event`."""
        if trainer is not None:
            self.total_steps = trainer.cfg.optim.max_steps
        self.trainer = trainer
        self.worker = worker if worker is not None else TrainingWorker(trainer)
        self.worker.event.connect(self.on_event)
        self.worker.done.connect(self._on_worker_done)
        self.running = True
        self.paused = False
        self._last_step = None
        self.verdict = "healthy"
        start_in_thread(self.worker, self)
        if self.tabs.currentWidget() is self.views:
            self.tabs.setCurrentWidget(self.plots)  # the curves, now that it trains
        self._set_buttons()

    def toggle_pause(self) -> None:
        if not self.running or self.worker is None:
            return
        if self.paused and self.trainer is not None:
            from engine.errors import ConfigError

            try:
                changes = self.form.live_changes(self.trainer.cfg, self._live_settings())
                if changes:
                    self.trainer.request_settings(changes)
            except ConfigError as e:
                self.message_bar.show_message(f"Cannot resume: {e}")
                return
            self.worker.resume()
        elif self.paused:
            self.worker.resume()
        else:
            self.worker.pause()
            self.statusBar().showMessage("Pausing after this step…")

    @staticmethod
    def _live_settings() -> tuple[str, ...]:
        from engine.train import LIVE_SETTINGS

        return LIVE_SETTINGS

    def stop_run(self) -> None:
        if self.running and self.worker is not None:
            self.statusBar().showMessage("Stopping: saving a checkpoint…")
            self.worker.stop()

    def on_event(self, e: object) -> None:
        """Every engine event arrives here, on the GUI thread, through a queued signal."""
        self.plots.add_event(e)
        self.preview.add_event(e)  # both take only the previews of their modality
        self.text_preview.add_event(e)
        self.matching.add_event(e)  # similarity maps, the monitor set, recall, answers
        self.embedding.add_event(e)
        self.collapse.add_event(e)
        if isinstance(e, ev.StepMetrics):
            self._last_step = e
        elif isinstance(e, ev.MonitorReport):
            self._show_verdict(e)
        elif isinstance(e, ev.DatasetReady):
            if e.skipped:
                self.message_bar.show_message(
                    f"{len(e.skipped)} file(s) could not be read and were skipped, "
                    f"e.g. {e.skipped[0][0]} ({e.skipped[0][1]})", "warning")
        elif isinstance(e, ev.RunStarted):
            freeze_long_lived_objects()  # the model, the data and torch are built now
            self.run_dir = e.run_dir
            self.runs.active_run = e.run_dir
            self.evaluate.set_run(e.run_dir)
            self.total_steps = e.total_steps
            info = self.methods.get(e.method)
            self.run_modality = info.modality if info is not None else "image"
            self._show_preview_tab(self.run_modality)
            items = ITEM_WORDS.get(self.run_modality, ITEM_WORDS["image"])[1]
            self.run_label.setText(
                f"<b>{e.method}</b> · {e.backbone} on {e.device} · {e.n_images} {items} · "
                f"run folder: <code>{e.run_dir}</code>")
        elif isinstance(e, ev.Paused):
            self.paused = True
            self.statusBar().showMessage(f"Paused at step {e.step} (checkpoint saved)")
            self._set_buttons()
        elif isinstance(e, ev.Resumed):
            self.paused = False
            self.statusBar().showMessage("Resumed", 2000)
            self._set_buttons()
        elif isinstance(e, ev.Diverged):

            self.message_bar.show_message(
                f"{e.message} You can change {', '.join(e.settings)} in the form now.",
                "error")
            if self.run_dir:  # the views go back to the restored step too
                self.show_run(self.run_dir)
        elif isinstance(e, ev.RunWarning):
            level = "info" if e.message.startswith("Resumed at step") else "warning"
            self.message_bar.show_message(e.message, level)
        elif isinstance(e, ev.Finished):
            knn = e.summary.get("final", {}).get("knn_accuracy")
            base = e.summary.get("baseline_knn")
            text = f"Run {e.status} at step {e.step}."
            if knn is not None and base is not None:
                text += f" kNN accuracy {knn:.1%} (random init {base:.1%})."
            self.statusBar().showMessage(text)
            self.plots.refresh()  # the last points now, not at the next timer tick
            self.run_finished.emit(e)
        elif isinstance(e, ev.Failed):
            self.message_bar.show_message(f"The run failed: {e.message}")
            self.run_label.setText("The run failed: the message below says why.")
            self.run_finished.emit(e)

    def _explain(self, verdict: str) -> str:
        from engine.advice import explain_collapse
        from engine.verdict import VERDICT_TEXT

        if self.trainer is None:
            return VERDICT_TEXT[verdict]
        return explain_collapse(verdict, self.trainer.cfg)

    def _show_verdict(self, e: ev.MonitorReport) -> None:
        """Traffic light in the status bar; a banner with causes and fixes on a change."""
        from engine.advice import explain_collapse

        colors = {"healthy": "#2ca02c", "dimensional": "#e69500", "complete": "#d62728"}
        names = {"healthy": "healthy", "dimensional": "dimensional collapse",
                 "complete": "complete collapse"}
        self.verdict_label.setText(
            f"<span style='color:{colors[e.verdict]}'>●</span> {names[e.verdict]} "
            f"(rank {e.effective_rank:.0f}/{e.dim})")
        previous, self.verdict = self.verdict, e.verdict
        if e.baseline or previous == e.verdict or self.trainer is None:
            return
        level = {"healthy": "info", "dimensional": "warning", "complete": "error"}[e.verdict]
        self.message_bar.show_message(
            f"Step {e.step}: {explain_collapse(e.verdict, self.trainer.cfg)}", level)

    def _on_worker_done(self) -> None:
        self.runs.active_run = None
        if self.tabs.currentWidget() is self.runs:
            self.runs.refresh()
        self.running = False
        self.paused = False
        self.worker = None
        self.plots.refresh()
        self._set_buttons()
        if self.matching.pending is not None and not self._close_when_stopped:
            # typed as the run ended: the trainer stopped before answering
            self._search_saved(self.matching.pending)
        if self._close_when_stopped:
            self.close()

    def _update_status(self) -> None:
        e = self._last_step
        if e is None:
            return
        self.step_label.setText(f"step {e.step}/{self.total_steps}")
        self.epoch_label.setText(f"epoch {e.epoch:.2f}")
        unit = ITEM_WORDS.get(self.run_modality, ITEM_WORDS["image"])[0]
        self.ips_label.setText(f"{e.images_per_sec:.0f} {unit}/s")
        if self.running and e.images_per_sec > 0 and self.trainer is not None:
            remaining = (self.total_steps - e.step) * self.trainer.cfg.optim.batch_size
            secs = int(remaining / e.images_per_sec)
            self.eta_label.setText(f"ETA {secs // 60}:{secs % 60:02d}")
        else:
            self.eta_label.setText("ETA –")

    # search (image-text runs) ----------------------------------------------------------
    def _on_query(self, text: str) -> None:
        """A sentence typed in the Matching tab: the running trainer answers it between
        steps (or while paused); otherwise the run shown answers from its folder."""
        if self.running and self.trainer is not None:
            self.trainer.request_query(text)
            self.matching.set_status(f"Searching for “{text}”: the run answers between "
                                     "training steps…")
            return
        self._search_saved(text)

    def _search_saved(self, text: str) -> None:
        """Search the run shown (finished or reopened) off the GUI thread."""
        if not self.run_dir:
            self.matching.show_message("Start a run, or open one in the Runs tab, to search "
                                       "its monitor images.")
            return
        from engine.search import search_run

        run_dir = self.run_dir
        self.matching.pending = text
        self.matching.set_status(f"Searching the saved run {Path(run_dir).name} for "
                                 f"“{text}”…")
        self._searcher = FunctionWorker(lambda: search_run(run_dir, text))
        self._searcher.result.connect(self.matching.add_event)
        self._searcher.error.connect(
            lambda msg, _tb: self.matching.show_message(f"The search failed: {msg}"))
        start_in_thread(self._searcher, self)

    # closing ------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """Ask before closing during a run (tests replace this)."""
        answer = QMessageBox.question(
            self, "Training in progress",
            "A run is in progress. Stop it, save a checkpoint and quit?\n"
            "You can resume it later from its run folder.")
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.running:
            if self._close_when_stopped or self.confirm_close():
                self._close_when_stopped = True
                self.stop_run()
            event.ignore()
            return
        wait_for_threads(self)
        self.embedding.shutdown()
        event.accept()
