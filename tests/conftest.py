"""Shared fixtures: every test writes runs and caches under its own temporary folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep runs and dataset caches out of the user's real data dirs."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SELFSUP_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "data"))
    yield
