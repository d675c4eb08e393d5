"""bench/step_profile.py splits a step into parts that add up to it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import SMALL

BENCH = Path(__file__).resolve().parents[2] / "bench" / "step_profile.py"


@pytest.fixture(scope="module")
def step_profile():
    sys.path.insert(0, str(BENCH.parent))  # as running the script puts bench/ first
    spec = importlib.util.spec_from_file_location("step_profile", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_profile"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["step_profile"]
        sys.modules.pop("learning", None)
        sys.path.remove(str(BENCH.parent))


@pytest.mark.parametrize("method", ["byol", "simclr"])
def test_parts_add_up_to_the_step(step_profile, method):
    overrides = [f"{k}={v}" for k, v in SMALL.items() if not k.startswith("monitor.")]
    r = step_profile.profile(method, "shapes", 3, overrides)
    med = r["median"]
    assert r["batch"] == SMALL["optim.batch_size"]
    assert med["augment"] > 0 and med["forward"] > 0 and med["backward"] > 0
    # only a method with an EMA target spends time in a target's forward
    assert (med.get("target", 0.0) > 0) == (method == "byol")
    steps = r["per_step"]
    for i, total in enumerate(steps["step"]):
        parts = sum(steps[p][i] for p in step_profile.PARTS if p in steps)
        assert parts == pytest.approx(total, rel=0.05)
