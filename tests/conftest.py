"""Shared fixtures: every test writes runs and caches under its own temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset cache for the whole session, as a user's machine has one.

    Cache entries are keyed by everything that makes them (count, seed, resolution, the
    folder's files), so tests cannot see each other's data in it; what they share is the
    work: a window generates the 6,000 built-in shapes once per session (1.7 s on a 2-core
    Zen 1 EPYC) instead of once per test. Tests of the cache itself pass their own
    ``cache_dir``."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                   _session_cache: Path):
    """Keep runs, settings and dataset caches out of the user's real data dirs."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SELFSUP_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "data"))
    yield


# --- several processes (torchrun) -----------------------------------------------------

#: a small run that trains in a few seconds per process on a 2-core CPU
SMALL_RUN = {"data.shapes_count": 240, "optim.batch_size": 16, "optim.max_steps": 12,
             "optim.warmup_steps": 2, "monitor.every_steps": 6, "monitor.monitor_size": 60,
             "monitor.checkpoint_every": 6}


def small_config(method: str = "simclr", **changes: object):  # noqa: ANN201 - Config
    from engine.presets import default_config

    cfg = default_config(method, False)
    for key, value in {**SMALL_RUN, **changes}.items():
        cfg.set(key, value)
    return cfg


def isolated_env(base: Path) -> dict[str, str]:
    """The environment of a child process whose runs and caches stay under ``base``."""
    env = dict(os.environ, SELFSUP_RUNS_DIR=str(base / "runs"),
               XDG_CACHE_HOME=str(base / "cache"), XDG_DATA_HOME=str(base / "data"),
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def torchrun(args: list[str], env: dict[str, str], nproc: int = 2, timeout: float = 180
             ) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc-per-node nproc -m engine ARGS`` on this machine (gloo, CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "engine", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished SimCLR run trained by 2 processes under torchrun (shared by tests that
    open, resume or compare it; treat it as read-only)."""
    base = tmp_path_factory.mktemp("ddp")
    config = base / "simclr small.toml"
    small_config().save(config)
    out = torchrun(["train", str(config), "--runs-dir", str(base / "runs"), "--quiet"],
                   isolated_env(base))
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [p for p in (base / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]
