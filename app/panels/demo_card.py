"""The card beside a guided demo: what it asks, where to look, and at the end what
happened, written from the runs' own numbers (:mod:`engine.demos`)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget


class DemoCard(QWidget):
    next_requested = Signal(str)  # the next demo's name
    close_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("demoCard")
        self.demo: Any = None
        self.facts: list[Any] = []
        lay = QVBoxLayout(self)
        self.title = QLabel()
        self.title.setObjectName("demoTitle")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.intro = QLabel()
        self.intro.setWordWrap(True)
        lay.addWidget(self.intro)
        self.watch = QLabel()
        self.watch.setWordWrap(True)
        lay.addWidget(self.watch)
        self.progress = QLabel()
        self.progress.setObjectName("hint")
        self.progress.setWordWrap(True)
        lay.addWidget(self.progress)
        self.conclusion = QLabel()
        self.conclusion.setObjectName("demoConclusion")
        self.conclusion.setWordWrap(True)
        self.conclusion.hide()
        lay.addWidget(self.conclusion)
        lay.addStretch(1)
        row = QHBoxLayout()
        self.next_button = QPushButton("Next demo")
        self.next_button.hide()
        self.next_button.clicked.connect(
            lambda: self.demo is not None and self.demo.next
            and self.next_requested.emit(self.demo.next))
        row.addWidget(self.next_button)
        close = QPushButton("Close")
        close.clicked.connect(self.close_requested)
        row.addWidget(close)
        lay.addLayout(row)

    def set_demo(self, demo: Any) -> None:
        """Show ``demo``'s card as it starts."""
        self.demo = demo
        self.facts = []
        self.title.setText(f"<h3>Demo: {demo.title}</h3>")
        self.intro.setText(demo.intro)
        items = "".join(f"<li><b>{where.replace('&&', '&')}</b>: {what}</li>"
                        for where, what in demo.watch)
        self.watch.setText(f"<b>What to watch</b><ul style='margin-left:-20px'>{items}</ul>")
        runs = ", ".join(r.label for r in demo.runs)
        more = (" The Sweep tab puts them side by side and overlays their curves."
                if len(demo.runs) > 1 else "")
        self.progress.setText(f"{len(demo.runs)} run(s), one after the other: {runs}.{more}")
        self.conclusion.hide()
        self.next_button.hide()

    def set_progress(self, text: str) -> None:
        self.progress.setText(text)

    def conclude(self, facts: list[Any]) -> str:
        """Write what happened from ``facts`` (one per run), offer the next demo."""
        self.facts = facts
        text = self.demo.conclude(facts)
        self.conclusion.setText(f"<b>What happened</b><br>{text}")
        self.conclusion.show()
        if self.demo.next:
            from engine.demos import get_demo

            self.next_button.setText(f"Next demo: {get_demo(self.demo.next).title}")
            self.next_button.show()
        return text
