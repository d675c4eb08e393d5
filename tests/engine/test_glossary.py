"""The glossary: every entry in the README, every tab's help pointing at real entries."""

from __future__ import annotations

from pathlib import Path

from engine.glossary import GLOSSARY, TAB_ENTRIES, entries_for, markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_holds_the_same_glossary():
    text = README.read_text(encoding="utf-8")
    assert markdown() in text  # edit engine/glossary.py, then paste markdown() back


def test_every_tab_points_at_entries_that_exist():
    for tab, keys in TAB_ENTRIES.items():
        assert keys and all(k in GLOSSARY for k in keys), tab
    assert entries_for("Collapse")[0][0] == "Healthy"
    assert len(entries_for("no such tab")) == len(GLOSSARY)
