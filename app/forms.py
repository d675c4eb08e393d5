"""Hyperparameter forms generated from the config dataclasses' field metadata.

Every widget, range, tooltip and error message comes from ``engine.config``; the GUI holds
no default of its own (docs/ARCHITECTURE.md, convention 1).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QToolBox,
    QVBoxLayout,
    QWidget,
)

from engine.config import Config, FieldSpec, check, coerce
from engine.errors import ConfigError

SECTION_TITLES = {
    "method": "Method",
    "optim": "Optimisation",
    "augment": "Augmentation",
    "backbone": "Backbone",
    "data": "Data",
    "monitor": "Monitoring",
    "run": "Run",
}

# chosen elsewhere in the window (dataset chooser), not in the form
HIDDEN_FIELDS = {"data.dataset"}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def tooltip_text(spec: FieldSpec, default: Any) -> str:
    """A field's tooltip: help, allowed range and ``default``.

    ``default`` is passed in rather than read from ``spec.default`` because the value in
    force is the method's preset (``default_config``), not the dataclass default.
    """
    tip = f"{spec.help}\nAllowed: {spec.range_text()}\nDefault: {_format(default)}"
    if spec.collapse:
        tip += f"\n\nCollapse switch: {spec.collapse}"
    return tip


class FieldEditor(QWidget):
    """One field's widget: a checkbox, a combo box or a validated line edit.

    ``default`` is the preset's value for the field (what its tooltip names), which may
    differ from the dataclass default.
    """

    changed = Signal()

    def __init__(self, spec: FieldSpec, value: Any, default: Any) -> None:
        super().__init__()
        self.spec = spec
        self.default = default
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(1)
        tip = tooltip_text(spec, default)
        self.widget: QWidget
        if spec.type is bool:
            self.widget = QCheckBox()
            self.widget.setChecked(bool(value))
            self.widget.toggled.connect(self.changed)
        elif spec.choices is not None:
            self.widget = QComboBox()
            for c in spec.choices:
                self.widget.addItem(str(c), c)
            self.widget.setCurrentIndex(list(spec.choices).index(value))
            self.widget.currentIndexChanged.connect(self.changed)
        else:
            self.widget = QLineEdit(_format(value))
            self.widget.editingFinished.connect(self._validate_now)
            self.widget.textEdited.connect(self._clear_error)
            self.widget.textEdited.connect(self.changed)
        self.widget.setToolTip(tip)
        self.widget.setObjectName(f"field:{spec.key}")
        lay.addWidget(self.widget)
        self.error_label = QLabel()
        self.error_label.setObjectName("fieldError")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        lay.addWidget(self.error_label)

    def raw_value(self) -> Any:
        w = self.widget
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentData()
        return w.text()

    def value(self) -> Any:
        """The typed value; raises :class:`ConfigError` naming the field and its range."""
        v = coerce(self.spec, self.raw_value())
        check(self.spec, v)
        return v

    def set_value(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            w.setCurrentIndex(max(0, w.findData(value)))
        else:
            w.setText(_format(value))
        self._clear_error()

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()
        self.widget.setProperty("invalid", True)
        self.widget.style().polish(self.widget)

    def _clear_error(self) -> None:
        self.error_label.hide()
        self.widget.setProperty("invalid", False)
        self.widget.style().polish(self.widget)

    def _validate_now(self) -> None:
        try:
            self.value()
        except ConfigError as e:
            self.show_error(str(e))
        else:
            self._clear_error()


class ConfigForm(QWidget):
    """A tool box with one page per config section, built from a :class:`Config`."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cfg: Config | None = None
        self.editors: dict[str, FieldEditor] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.advanced = QCheckBox("Show advanced settings")
        self.advanced.toggled.connect(self._apply_advanced)
        lay.addWidget(self.advanced)
        self.toolbox = QToolBox()
        lay.addWidget(self.toolbox, 1)
        self._rows: list[tuple[FieldSpec, QWidget, QWidget]] = []

    def set_config(self, cfg: Config, defaults: Config | None = None,
                   modality: str = "image") -> None:
        """Rebuild every page for ``cfg`` (a method change swaps the method page).

        Only the fields a method of ``modality`` reads are shown (a text method gets no
        Augmentation or Backbone page and no image fields on the Data page); the others
        keep their values in the config the form returns.

        ``defaults`` is the preset in force, ``default_config(method, accelerator=...)``:
        tooltips name its values, not the dataclass defaults (a method's preset
        overrides them). Without it ``cfg`` is taken to be that preset.
        """
        self._cfg = cfg.copy()
        preset = defaults if defaults is not None else cfg
        current = self.toolbox.currentIndex()
        while self.toolbox.count():
            page = self.toolbox.widget(0)
            self.toolbox.removeItem(0)
            page.deleteLater()
        self.editors.clear()
        self._rows.clear()
        for section in SECTION_TITLES:
            specs = [s for s in cfg.specs() if s.section == section
                     and s.key not in HIDDEN_FIELDS and s.applies_to(modality)]
            if not specs:
                continue
            page = QFrame()
            form = QFormLayout(page)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
            for spec in specs:
                editor = FieldEditor(spec, cfg.get(spec.key), preset.get(spec.key))
                editor.changed.connect(self.changed)
                label = QLabel(("⚠ " if spec.collapse else "") + spec.label)
                label.setToolTip(editor.widget.toolTip())
                if spec.collapse:
                    label.setObjectName("collapseLabel")
                form.addRow(label, editor)
                self.editors[spec.key] = editor
                self._rows.append((spec, label, editor))
            title = SECTION_TITLES[section]
            if section == "method":
                title = f"Method: {cfg.method_name}"
            self.toolbox.addItem(page, title)
        self.toolbox.setCurrentIndex(max(0, min(current, self.toolbox.count() - 1)))
        self._apply_advanced(self.advanced.isChecked())

    def _apply_advanced(self, show: bool) -> None:
        for spec, label, editor in self._rows:
            visible = show or not spec.advanced
            label.setVisible(visible)
            editor.setVisible(visible)

    def config(self, dataset: str) -> Config:
        """The config the form describes; raises ConfigError and marks the bad field."""
        if self._cfg is None:
            raise ConfigError("the engine has not loaded yet")
        cfg = self._cfg.copy()
        cfg.set("data.dataset", dataset)
        for key, editor in self.editors.items():
            try:
                cfg.set(key, editor.value())
            except ConfigError as e:
                self.reveal(key)
                editor.show_error(str(e))
                raise
        try:
            cfg.validate()
        except ConfigError:
            raise
        return cfg

    @property
    def specs(self) -> list[FieldSpec]:
        """The specs of the fields on the form, in page order."""
        return [spec for spec, _, _ in self._rows]

    def spec_of(self, key: str) -> FieldSpec:
        """The spec of any field of the config, shown or not (ConfigError if unknown)."""
        if self._cfg is None:
            raise ConfigError("the engine has not loaded yet")
        return self._cfg.spec(key)

    def restrict_to(self, keys: tuple[str, ...] | None) -> None:
        """Make only ``keys`` editable (a paused run), or every field (None)."""
        for key, editor in self.editors.items():
            editor.setEnabled(keys is None or key in keys)

    def live_changes(self, cfg: Config, keys: tuple[str, ...]) -> dict[str, Any]:
        """Values of ``keys`` that differ from ``cfg``; raises ConfigError on a bad one."""
        changes = {}
        for key in keys:
            editor = self.editors.get(key)
            if editor is None:
                continue
            try:
                value = editor.value()
            except ConfigError as e:
                self.reveal(key)
                editor.show_error(str(e))
                raise
            if value != cfg.get(key):
                changes[key] = value
        return changes

    def reveal(self, key: str) -> None:
        """Open the page holding ``key`` so its error is visible."""
        editor = self.editors.get(key)
        if editor is None:
            return
        spec = editor.spec
        if spec.advanced:
            self.advanced.setChecked(True)
        for i in range(self.toolbox.count()):
            if self.toolbox.widget(i).isAncestorOf(editor):
                self.toolbox.setCurrentIndex(i)
                break
        editor.widget.setFocus()
