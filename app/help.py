"""The "What is this?" button: the glossary entries of the tab in view, in plain words
(:mod:`engine.glossary`, the same text as the README's glossary)."""

from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget


class HelpDialog(QDialog):
    """A non-blocking window with the explanations of one tab."""

    def __init__(self, parent: QWidget | None, tab: str) -> None:
        from engine.glossary import entries_for

        super().__init__(parent)
        name = tab.replace("&&", "&")
        self.setWindowTitle(f"What is this? {name}")
        self.resize(560, 520)
        lay = QVBoxLayout(self)
        self.browser = QTextBrowser()
        html = "".join(f"<h3>{escape(title)}</h3><p>{escape(text)}</p>"
                       for title, text in entries_for(tab))
        self.browser.setHtml(html)
        lay.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)

    def text(self) -> str:
        return self.browser.toPlainText()
