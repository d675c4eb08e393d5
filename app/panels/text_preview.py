"""What a text method makes of fixed monitor inputs, live: the text "Predictions" panel.

A language model continues fixed prompts (its most likely continuation and a sampled
one); a masked LM fills masked tokens (its top-5 guesses per mask, the right one
marked); a sentence task (SOP, NSP) judges segment pairs (predicted against true order).
A slider scrolls back through the run's earlier snapshots; while it sits at the newest
it follows the run. The panel takes plain :class:`~engine.events.PreviewSnapshot` events
of kind ``"text"``, whose item dicts the methods choose, so it reads them defensively:
an unknown item type or key is shown as ``key: value``, a malformed one never raises.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QTextBrowser, QVBoxLayout, QWidget

from app.panels.preview import add_to_history, follow_history
from engine.events import PreviewSnapshot

GOOD, BAD, MUTED, SLOT = "#2ca02c", "#d62728", "#777777", "#fff2a8"
WRITTEN = "#e8f0fb"  # behind what the model wrote, so written spaces and line ends show
#: item keys each known type reads (the rest are shown generically below it)
KNOWN_KEYS = {
    "continuation": {"type", "prompt", "greedy", "sampled", "temperature"},
    "masked": {"type", "tokens", "masks"},
    "order": {"type", "a", "b", "true", "predicted", "confidence"},
}
MAX_VALUE_CHARS = 400  # a generic value longer than this is cut


def esc(value: Any) -> str:
    """Any value as HTML-safe text."""
    return html.escape(str(value), quote=False)


def shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def readable_token(token: str) -> str:
    """A token as it reads inside a sentence: the tokenizers' visible space and
    newline marks (``␣``, ``\\n``, ``\\t``) back to the characters."""
    return token.replace("␣", " ").replace("\\n", "\n").replace("\\t", "    ")


def visible_token(token: str) -> str:
    """A token on its own with its white space made visible (a lone space or newline
    would read as an empty box)."""
    out = token.replace(" ", "␣")
    for written, shown in (("\\n", "⏎"), ("\n", "⏎"), ("\\t", "⇥"), ("\t", "⇥")):
        out = out.replace(written, shown)  # the tokenizers' written marks, or the characters
    return out


def token_chip(token: Any, colour: str | None = None) -> str:
    """A token shown on its own, in a box, so a space or a newline is visible."""
    style = "background:#f0f0f0;" if colour is None else f"background:{colour};"
    return (f"<span style='{style} font-family:{mono()};'>&nbsp;{esc(visible_token(str(token)))}"
            "&nbsp;</span>")


def percent(p: Any) -> str:
    try:
        return f"{float(p):.0%}"
    except (TypeError, ValueError):
        return "?"


_MONO: str | None = None


def mono() -> str:
    """The system's fixed-pitch family, for CSS (looked up once)."""
    global _MONO
    if _MONO is None:
        family = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        _MONO = f'"{family}", monospace'  # double quotes: style attributes use single
    return _MONO


def mono_block(inner_html: str, extra_style: str = "") -> str:
    """Monospaced text that keeps its line breaks and indentation and still wraps."""
    return (f"<pre style='font-family:{mono()}; white-space:pre-wrap; margin:0; "
            f"{extra_style}'>{inner_html}</pre>")


def mark(ok: bool) -> str:
    return (f"<span style='color:{GOOD}'><b>✓</b></span>" if ok else
            f"<span style='color:{BAD}'><b>✗</b></span>")


def _generic_rows(item: dict[str, Any], skip: set[str]) -> str:
    rows = [f"<tr><td style='color:{MUTED}; padding-right:8px'>{esc(k)}</td>"
            f"<td>{esc(shorten(str(v)))}</td></tr>"
            for k, v in item.items() if k not in skip]
    return f"<table cellspacing='0' cellpadding='1'>{''.join(rows)}</table>" if rows else ""


def render_generic(item: Any) -> str:
    """Any item (an unknown type, or a known one that failed to render): key: value."""
    if not isinstance(item, dict):
        return f"<p>{esc(shorten(repr(item)))}</p>"
    return _generic_rows(item, set())


def render_continuation(item: dict[str, Any]) -> str:
    prompt = esc(item.get("prompt", ""))
    lines = []
    temp = item.get("temperature")
    sampled_title = "sampled" if temp is None else f"sampled (temperature {esc(temp)})"
    for key, title, tip in (("greedy", "most likely", "each next token the most likely one"),
                            ("sampled", sampled_title, "each next token drawn at random "
                             "from the model's probabilities")):
        if key not in item:
            continue
        lines.append(
            f"<tr><td width='130' style='color:{MUTED}; padding-right:8px' title='{tip}'>"
            f"{title}</td><td>" + mono_block(
                f"<span style='color:{MUTED}'><b>{prompt}</b></span>"
                f"<span style='background:{WRITTEN}'>{esc(item.get(key, ''))}</span>")
            + "</td></tr>")
    if not lines:  # only a prompt
        lines.append("<tr><td>" + mono_block(f"<b>{prompt}</b>", f"color:{MUTED}")
                     + "</td></tr>")
    return f"<table cellspacing='0' cellpadding='3' width='100%'>{''.join(lines)}</table>"


def render_masked(item: dict[str, Any]) -> str:
    tokens = [str(t) for t in item.get("tokens", [])]
    masks = [m for m in item.get("masks", []) if isinstance(m, dict)]
    slot_of = {}
    for n, m in enumerate(masks, 1):
        try:
            slot_of[int(m.get("position", -1))] = (n, m)
        except (TypeError, ValueError):
            continue
    parts = []
    for pos, tok in enumerate(tokens):
        if pos in slot_of:
            n, m = slot_of[pos]
            colour = GOOD if m.get("correct") else BAD
            parts.append(f"<span style='background:{SLOT}; color:{colour};'><b>"
                         f"&nbsp;{esc(tok)}<sub>{n}</sub>&nbsp;</b></span>")
        elif tok == "[PAD]":
            continue
        elif tok in ("[CLS]", "[SEP]", "[MASK]"):
            parts.append(f"<span style='color:{MUTED}'><small>{esc(tok)}</small></span>")
        else:
            parts.append(esc(readable_token(tok)))
    out = [mono_block("".join(parts), "margin-bottom:4px")]
    rows = []
    for n, m in enumerate(masks, 1):
        true = str(m.get("true", "?"))
        guesses = []
        for guess, p in zip(m.get("top5", []), m.get("probs", []) or [None] * 5,
                            strict=False):
            right = str(guess) == true
            chip = token_chip(guess, "#d9f2d9" if right else None)
            guesses.append(f"{chip}&nbsp;{percent(p)}"
                           + (f"&nbsp;<span style='color:{GOOD}'>✓</span>" if right else ""))
        rows.append(f"<tr><td style='padding-right:6px'>{mark(bool(m.get('correct')))}</td>"
                    f"<td style='color:{MUTED}; padding-right:6px'>mask {n}</td>"
                    f"<td style='padding-right:10px'>true {token_chip(true)}</td>"
                    f"<td>{' &nbsp; '.join(guesses)}</td></tr>")
    if rows:
        out.append(f"<table cellspacing='0' cellpadding='2'>{''.join(rows)}</table>")
    return "".join(out)


def render_order(item: dict[str, Any]) -> str:
    true, pred = str(item.get("true", "?")), str(item.get("predicted", "?"))
    conf = item.get("confidence")
    confidence = "" if conf is None else f" ({percent(conf)} sure)"
    cells = "".join(
        "<td width='50%' bgcolor='#f3f3f3'>"
        + mono_block(f"<span style='color:{MUTED}'><b>{name}</b></span> "
                     f"{esc(item.get(key, ''))}") + "</td>"
        for name, key in (("A", "a"), ("B", "b")))
    return (
        f"<table cellspacing='4' cellpadding='6' width='100%'><tr>{cells}</tr></table>"
        f"<p>{mark(true == pred)} predicted <b>{esc(pred)}</b>{confidence} · true "
        f"<b>{esc(true)}</b></p>")


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "continuation": render_continuation,
    "masked": render_masked,
    "order": render_order,
}


def render_item(item: Any) -> str:
    """One item's HTML: its type's view plus its unknown keys, or the generic view."""
    kind = item.get("type") if isinstance(item, dict) else None
    renderer = RENDERERS.get(kind) if isinstance(kind, str) else None
    if renderer is None:
        return render_generic(item)
    try:
        body = renderer(item)
    except Exception:  # a malformed item from a newer or buggy method: show it raw
        return render_generic(item)
    return body + _generic_rows(item, KNOWN_KEYS[kind])


def summary(snap: PreviewSnapshot) -> str:
    """The title line: how much of what is shown the model got right."""
    kinds = [i.get("type") for i in snap.items if isinstance(i, dict)]
    parts = []
    if "continuation" in kinds:
        parts.append(f"{kinds.count('continuation')} prompts (grey) continued by the model "
                     "(on blue)")
    masks = [m for i in snap.items if isinstance(i, dict) and i.get("type") == "masked"
             for m in i.get("masks", []) if isinstance(m, dict)]
    if masks:
        right = sum(bool(m.get("correct")) for m in masks)
        parts.append(f"{right} of {len(masks)} masked tokens guessed right (top-1)")
    orders = [i for i in snap.items if isinstance(i, dict) and i.get("type") == "order"]
    if orders:
        right = sum(str(i.get("true")) == str(i.get("predicted")) for i in orders)
        parts.append(f"{right} of {len(orders)} segment pairs judged right")
    if not parts:
        parts.append(f"{len(snap.items)} items")
    return f"<b>Step {snap.step}</b>: " + "; ".join(parts)


def render(snap: PreviewSnapshot) -> str:
    blocks = []
    for n, item in enumerate(snap.items, 1):
        blocks.append(f"<p style='color:{MUTED}; margin-top:10px; margin-bottom:2px'>"
                      f"<small>{n}</small></p>{render_item(item)}")
    if not blocks:
        blocks.append(f"<p style='color:{MUTED}'>This snapshot holds no items.</p>")
    return "<hr>".join(blocks)


EMPTY = ("<p style='color:#777'>No predictions yet: text methods show theirs at every "
         "monitor step (a language model continues fixed prompts, a masked LM fills "
         "masked tokens).</p>")


class TextPreviewPanel(QWidget):
    """The latest text snapshot, rendered as rich text, and a slider through the run's."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.snapshots: list[PreviewSnapshot] = []
        self.title = QLabel("")
        self.title.setObjectName("textPreviewTitle")
        self.title.setWordWrap(True)
        self.view = QTextBrowser()
        self.view.setOpenLinks(False)
        self.view.setHtml(EMPTY)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setToolTip("Scroll back through earlier snapshots of the run; at the right "
                               "end the view follows the run.")
        self.slider.valueChanged.connect(self._show_index)
        self.slider_label = QLabel("no snapshots")
        self.slider_label.setMinimumWidth(170)
        self._shown: PreviewSnapshot | None = None

        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Snapshot"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        lay.addLayout(row)

    # events ---------------------------------------------------------------------------
    def add_event(self, e: object) -> None:
        if isinstance(e, PreviewSnapshot) and e.kind == "text":
            self.add_snapshot(e)

    def add_snapshot(self, snap: PreviewSnapshot) -> None:
        following = not self.snapshots or self.slider.value() == len(self.snapshots) - 1
        self.snapshots = add_to_history(self.snapshots, snap)
        follow_history(self.slider, len(self.snapshots), following)
        self._show_index(self.slider.value())

    def load_run(self, run_dir: str) -> None:
        """Show a saved run's text snapshots (the image ones belong to the image panel)."""
        from engine.runs import RunFolder

        self.clear()
        for snap in RunFolder(run_dir).load_previews():
            if snap.kind == "text":
                self.add_snapshot(snap)

    def clear(self) -> None:
        self.snapshots.clear()
        self.slider.blockSignals(True)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.blockSignals(False)
        self._show_index(0)

    # drawing --------------------------------------------------------------------------
    def _show_index(self, i: int) -> None:
        if not self.snapshots:
            self._shown = None
            self.view.setHtml(EMPTY)
            self.slider_label.setText("no snapshots")
            self.title.setText("")
            return
        i = max(0, min(i, len(self.snapshots) - 1))
        snap = self.snapshots[i]
        bar = self.view.verticalScrollBar()
        keep = bar.value() if self._shown is not None else 0  # scrubbing keeps the place
        self._shown = snap
        self.view.setHtml(render(snap))
        bar.setValue(keep)
        live = " (latest)" if i == len(self.snapshots) - 1 else ""
        self.slider_label.setText(f"{i + 1} / {len(self.snapshots)} · step {snap.step}{live}")
        legend = ""
        if any(isinstance(it, dict) and it.get("type") in ("masked", "order")
               for it in snap.items):
            legend = (f" &nbsp; <span style='color:{GOOD}'>✓ right</span>"
                      f" <span style='color:{BAD}'>✗ wrong</span>")
        self.title.setText(summary(snap) + legend)

    def current(self) -> PreviewSnapshot | None:
        return self._shown

    def text(self) -> str:
        """What the view shows, as plain text (for tests and copying)."""
        return self.view.toPlainText()
