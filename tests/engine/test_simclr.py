"""SimCLR end to end, and its collapse switch (an extreme NT-Xent temperature)."""

from __future__ import annotations

import pytest

from engine import events as ev
from engine.presets import default_config
from engine.train import Trainer
from tests.engine.conftest import small_config

#: As measured: batch 64 (negatives matter), 300 monitor images, the default warm-up.
MEASURED = {"data.shapes_count": 1000, "optim.batch_size": 64, "optim.warmup_steps": 30,
            "monitor.every_steps": 60, "monitor.monitor_size": 300}


def final_report(tmp_path, **overrides) -> ev.MonitorReport:
    cfg = small_config("simclr", 60, **{**MEASURED, **overrides})
    reports = [e for e in Trainer(cfg, tmp_path).run() if isinstance(e, ev.MonitorReport)]
    return reports[-1]


@pytest.mark.slow
def test_extreme_temperature_collapses_the_embedding(tmp_path):
    """Measured on this 2-core CPU (100 steps, batch 64, width 8, 300 monitor images):
    temperature 0.2 keeps per-dim std 0.083 and effective rank 34.7 of 128; temperature
    20 keeps the std (0.081) but the rank falls to 9.0 (dimensional collapse);
    temperature 0.005 drops the std to 0.0105 (near-complete collapse). At the 60 steps
    run here (2026-12-02, Zen 3 EPYC): std 0.075 / rank 37.7, rank 10.8, std 0.0102."""
    healthy = final_report(tmp_path / "a", **{"method.temperature": 0.2})
    hot = final_report(tmp_path / "b", **{"method.temperature": 20})
    cold = final_report(tmp_path / "c", **{"method.temperature": 0.005})
    assert hot.effective_rank < 0.5 * healthy.effective_rank
    assert cold.std < 0.3 * healthy.std
    assert healthy.std > 0.7 * healthy.std_reference


def test_collapse_switch_is_marked():
    spec = default_config("simclr").spec("method.temperature")
    assert spec.collapse and "rank" in spec.collapse
