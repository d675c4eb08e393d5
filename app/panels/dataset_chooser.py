"""Dataset chooser: a built-in set or a folder (of images or text), scanned off the GUI
thread.

Shows the chosen set's description, its size, the label summary and the files that could
not be read, and tells the window what kind of data it is (``modality_known``: 'image' or
'text', from :func:`engine.data.dataset_modality`, and whether its images have captions,
from :func:`engine.data.has_captions`) so the method list offers only methods that train
on it: image-text methods (CLIP) on captioned images. The
dataset, resolution and shapes settings it starts with are :class:`engine.config.DataConfig`'s
defaults, so a run with the default config reuses the set it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.worker import FunctionWorker, start_in_thread
from engine.config import DataConfig

#: the ``[data]`` fields that decide a text dataset's samples (its summary's counts)
TEXT_FIELDS = ("text_sample", "seq_len", "tokenizer", "bpe_vocab_size", "heldout_fraction")

# Shown before the engine (torch) has loaded; then the descriptions are the engine's own
# (engine.data.BUILTIN_DATASETS), and any built-in set added there is listed too.
BUILTINS = {
    "shapes": ("Shapes (built-in)", "6 procedurally drawn shape classes on random colours"),
    "digits": ("Digits (built-in)", "scikit-learn's 1,797 handwritten digits, 10 classes"),
    "pydocs": ("Python docs (built-in text)", "Text: the docstrings of Python's standard "
               "library, labelled by package"),
}
FOLDER_ITEM = "Folder of images or text…"


class DatasetChooser(QWidget):
    """Emits ``changed`` with the source string whenever the choice changes."""

    changed = Signal(str)
    scanned = Signal(object)  # the loaded dataset source (ImageDataset, TextDataset)
    #: 'image' or 'text': what the chosen source holds; and whether it has captions
    modality_known = Signal(str, bool)
    #: the chosen image folder's FolderStats (engine.data.folder_defaults), or None for a
    #: built-in or text source: the window sets the folder's defaults from them
    folder_stats_known = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(14)
        for name, (text, tip) in BUILTINS.items():
            self.combo.addItem(text, name)
            self.combo.setItemData(self.combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.combo.addItem(FOLDER_ITEM, "")
        self.combo.activated.connect(self._on_activated)
        row.addWidget(self.combo, 1)
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self.choose_folder)
        row.addWidget(self.browse)
        lay.addLayout(row)
        self.description = QLabel("")
        self.description.setObjectName("datasetDescription")
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: #666;")
        lay.addWidget(self.description)
        self.info = QLabel("Engine loading…")
        self.info.setObjectName("datasetInfo")
        self.info.setWordWrap(True)
        lay.addWidget(self.info)
        #: what the window set for this folder (resolution, crop scale, batch) and why
        self.defaults_note = QLabel("")
        self.defaults_note.setObjectName("folderDefaults")
        self.defaults_note.setWordWrap(True)
        self.defaults_note.setStyleSheet("color: #2a6099;")
        self.defaults_note.hide()
        lay.addWidget(self.defaults_note)
        self.skipped = QListWidget()
        self.skipped.setMaximumHeight(80)
        self.skipped.hide()
        lay.addWidget(self.skipped)
        defaults = DataConfig()
        self.source = defaults.dataset
        self.resolution = defaults.resolution
        # The generated set the chooser shows; a run with other shapes settings makes its own.
        self.shapes_count = defaults.shapes_count
        self.shapes_seed = defaults.seed
        self.shapes_orientation = defaults.shapes_orientation
        # the text settings the summary counts samples with (the chosen method's preset)
        self.text_settings: dict[str, Any] = {k: getattr(defaults, k) for k in TEXT_FIELDS}
        self.dataset: Any = None
        self.folder_stats: Any = None  # FolderStats of the chosen image folder, once read
        self.modality: str | None = None  # of the chosen source; None until known
        self.captioned = False  # the chosen source's images have captions (once known)
        self.descriptions = {name: tip for name, (_, tip) in BUILTINS.items()}
        self._scan_id = 0
        self._rescan_if_text = False  # text settings changed while the kind was unknown
        self.engine_ready = False

    def sync_builtins(self) -> None:
        """Take the engine's built-in sets and descriptions (once it has loaded): a set
        the engine adds appears here without a change to the window."""
        from engine.data import BUILTIN_DATASETS

        for name, description in BUILTIN_DATASETS.items():
            self.descriptions[name] = description
            idx = self.combo.findData(name)
            if idx < 0:
                idx = self.combo.findData("")  # before the folder item
                self.combo.insertItem(idx, f"{name} (built-in)", name)
            self.combo.setItemData(idx, description, Qt.ItemDataRole.ToolTipRole)
        self._sync_combo()
    def _on_activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        if data:
            self.set_source(data)
        else:
            self.choose_folder()

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a folder of images (or of .txt / .md files)")
        if folder:
            self.set_source(folder)
        else:
            self._sync_combo()

    def _sync_combo(self) -> None:
        idx = self.combo.findData(self.source)
        if idx < 0:
            idx = self.combo.findData("")
            self.combo.setItemText(idx, f"Folder: {Path(self.source).name}")
            self.combo.setItemData(idx, self.source, Qt.ItemDataRole.ToolTipRole)
        self.combo.setCurrentIndex(idx)
        description = self.descriptions.get(self.source, "")
        self.description.setText(description)
        self.description.setVisible(bool(description))

    def set_source(self, source: str, resolution: int | None = None) -> None:
        """Choose a dataset (built-in name or folder path) and scan it in the background."""
        self.source = source
        if resolution is not None:
            self.resolution = resolution
        self._sync_combo()
        self.changed.emit(source)
        if self.engine_ready:
            self.scan()

    def set_text_settings(self, settings: dict[str, Any]) -> None:
        """Count text samples with these ``[data]`` fields (a method's ``seq_len``,
        ``text_sample``, ...); a text source is scanned again when they change."""
        new = {k: settings[k] for k in TEXT_FIELDS if k in settings}
        if all(self.text_settings.get(k) == v for k, v in new.items()):
            return
        self.text_settings.update(new)
        if not self.engine_ready:
            return
        if self.modality == "text":
            self.scan()
        elif self.modality is None:
            # a scan is under way with the old settings: scan again once it says text
            self._rescan_if_text = True

    def scan(self) -> None:
        from engine.data import dataset_modality, has_captions, load_dataset

        self._scan_id += 1
        scan_id = self._scan_id
        self.modality = None
        self.captioned = False
        self._rescan_if_text = False
        self.folder_stats = None
        # first the cheap look at what kind of data it is (and whether captions come
        # with it), so the method list follows at once; then the full load, which may
        # take a while
        source = self.source
        kind = FunctionWorker(lambda: (dataset_modality(source), has_captions(source)))
        kind.result.connect(lambda got: self._on_modality(scan_id, *got))
        start_in_thread(kind, self)
        source, res = self.source, self.resolution
        shapes = {"shapes_count": self.shapes_count, "seed": self.shapes_seed,
                  "shapes_orientation": self.shapes_orientation, **self.text_settings}
        self.info.setText(f"Scanning {source}…")
        self.dataset = None
        self.skipped.hide()
        worker = FunctionWorker(lambda: load_dataset(source, res, **shapes))
        worker.result.connect(lambda ds: self._on_scanned(scan_id, ds))
        worker.error.connect(lambda msg, _tb: self._on_error(scan_id, msg))
        start_in_thread(worker, self)

    def _on_modality(self, scan_id: int, modality: str, captioned: bool) -> None:
        if scan_id != self._scan_id:
            return
        self.modality = modality
        self.captioned = bool(captioned)
        if modality == "text" and self._rescan_if_text:
            self.scan()  # the text settings changed while this scan was looking
            return
        self.modality_known.emit(modality, self.captioned)
        self._read_folder_stats(scan_id, modality)

    def _read_folder_stats(self, scan_id: int, modality: str) -> None:
        """Count an image folder's images and read their sizes (headers only) off the
        GUI thread; a built-in or text source has none (``folder_stats_known(None)``)."""
        from engine.data import BUILTIN_MODALITY

        source = self.source
        if modality != "image" or source in BUILTIN_MODALITY:
            self.folder_stats_known.emit(None)
            return
        from engine.data.folder_defaults import folder_stats

        worker = FunctionWorker(lambda: folder_stats(source))
        worker.result.connect(lambda stats: self._on_folder_stats(scan_id, stats))
        start_in_thread(worker, self)

    def _on_folder_stats(self, scan_id: int, stats: Any) -> None:
        if scan_id != self._scan_id:
            return
        self.folder_stats = stats
        self.folder_stats_known.emit(stats)

    def show_defaults(self, text: str) -> None:
        """Say what was set for the chosen folder (empty: nothing, hidden)."""
        self.defaults_note.setText(text)
        self.defaults_note.setVisible(bool(text))

    def _on_scanned(self, scan_id: int, ds: Any) -> None:
        if scan_id != self._scan_id:
            return  # a newer choice superseded this scan
        self.dataset = ds
        self.info.setText(ds.summary())
        self.info.setProperty("error", False)
        self.info.style().polish(self.info)
        self.skipped.clear()
        for f, why in ds.skipped:
            self.skipped.addItem(f"{Path(f).name}: {why}")
        self.skipped.setVisible(bool(ds.skipped))
        self.scanned.emit(ds)

    def _on_error(self, scan_id: int, message: str) -> None:
        if scan_id != self._scan_id:
            return
        self.dataset = None
        self.info.setText(f"⚠ {message}")
        self.info.setProperty("error", True)
        self.info.style().polish(self.info)
