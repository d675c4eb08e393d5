"""Save the plots of a panel as PNG (pyqtgraph's exporter) and SVG (Qt's SVG generator).

pyqtgraph's own SVG exporter fails on the closed paths newer Qt versions emit
(pyqtgraph issue #3495), so the SVG is rendered with ``QSvgGenerator`` from the scene.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters as pg_exporters
from PySide6.QtCore import QRectF
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QWidget


def plot_items(widget: QWidget) -> list[pg.PlotItem]:
    """Every visible pyqtgraph PlotItem inside ``widget`` (plot widgets and layouts)."""
    items: list[pg.PlotItem] = []
    for view in widget.findChildren(pg.GraphicsView):
        if not view.isVisibleTo(widget) or view.scene() is None:
            continue
        for it in view.scene().items():
            if isinstance(it, pg.PlotItem) and it.isVisible() and it not in items:
                items.append(it)
    return items


def _slug(text: str, fallback: str) -> str:
    text = re.sub(r"<[^>]+>", "", text or "")
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:40] or fallback


def export_plots(widget: QWidget, folder: str | Path, prefix: str = "") -> list[Path]:
    """Write each plot of ``widget`` as ``<prefix><title>.png`` and ``.svg``; the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for i, item in enumerate(plot_items(widget)):
        title = item.titleLabel.text if item.titleLabel is not None else ""
        stem = folder / f"{prefix}{_slug(title, f'plot_{i + 1}')}"
        png = pg_exporters.ImageExporter(item)
        png.parameters()["width"] = max(800, int(item.sceneBoundingRect().width()) * 2)
        png.export(str(stem.with_suffix(".png")))
        save_svg(item, stem.with_suffix(".svg"), title)
        out += [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    return out


def save_svg(item: pg.PlotItem, path: Path, title: str = "") -> None:
    """Render ``item``'s part of its scene into an SVG file (vector paths and text)."""
    rect = item.sceneBoundingRect()
    gen = QSvgGenerator()
    gen.setFileName(str(path))
    gen.setSize(rect.size().toSize())
    gen.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    gen.setTitle(re.sub(r"<[^>]+>", "", title or "plot"))
    painter = QPainter(gen)
    try:
        item.scene().render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
    finally:
        painter.end()
