"""Engine test helpers: one tiny, fast config for any registered method.

Import it as ``from tests.engine.conftest import small_config`` (as the GUI tests import
``tests.app.conftest.FAST``); a test passes the settings that matter to it as overrides.
"""

from __future__ import annotations

from typing import Any

from engine.config import Config
from engine.presets import default_config

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
