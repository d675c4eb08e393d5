"""Engine test helpers: one tiny, fast config for any registered method.

Import it as ``from tests.engine.conftest import small_config`` (as the GUI tests import
``tests.app.conftest.FAST``); a test passes the settings that matter to it as overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from engine.config import Config
from engine.events import Event, Finished
from engine.presets import default_config
from engine.train import Trainer

E = TypeVar("E", bound=Event)

#: Shapes, a narrow CNN, a small batch and monitor set: a step takes milliseconds on a CPU.
#: The monitor runs at step 0, every 5 steps and at the end.
SMALL = {
    "data.shapes_count": 300,
    "optim.batch_size": 32,
    "optim.warmup_steps": 2,
    "monitor.every_steps": 5,
    "monitor.monitor_size": 60,
    "monitor.preview_count": 4,
    "backbone.width": 8,
}


def small_config(method: str, steps: int = 6, **overrides: Any) -> Config:
    """``method``'s CPU defaults with :data:`SMALL`, ``steps`` training steps, then
    ``overrides`` (dotted keys: ``**{"method.temperature": 0.1}``)."""
    cfg = default_config(method)
    for key, value in {**SMALL, "optim.max_steps": steps, **overrides}.items():
        cfg.set(key, value)
    return cfg


_FINISHED: dict[str, list[Event]] = {}


def train_once(cfg: Config, runs_dir: Path) -> list[Event]:
    """The events of training ``cfg`` to the end, trained once per session per config.

    Collapse-switch tests compare a broken run with a healthy one, and the tests of one
    method share the healthy run; the key is the whole config, so no two different
    configs can share events. Treat the run folder under ``runs_dir`` as read-only."""
    key = cfg.to_toml()
    if key not in _FINISHED:
        events = list(Trainer(cfg, runs_dir).run())
        assert isinstance(events[-1], Finished), events[-1]
        _FINISHED[key] = events
    return _FINISHED[key]


def last(events: list[Event], kind: type[E]) -> E:
    """The last event of ``kind`` (the final monitor report, the last step's metrics)."""
    return [e for e in events if isinstance(e, kind)][-1]
