"""bench/learning.py names the methods that end at or below their random encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "learning.py"


@pytest.fixture(scope="module")
def learning():
    spec = importlib.util.spec_from_file_location("learning_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seeds(*pairs: tuple[float, float, float | None, float | None]) -> list[dict]:
    return [{"knn": k, "baseline": b, "probe": p, "probe_baseline": pb}
            for k, b, p, pb in pairs]


def test_names_methods_below_by_each_readout(learning):
    results = {
        # above by kNN on every seed
        "simclr": seeds((0.97, 0.85, 0.99, 0.87)),
        # one seed above, but the mean over seeds is below: named
        "jigsaw": seeds((0.86, 0.85, 0.93, 0.84), (0.80, 0.86, 0.92, 0.83)),
        # exactly at its baseline counts as not better
        "relative_patch": seeds((0.85, 0.85, 0.90, 0.91)),
    }
    line = learning.below_baseline(results, probe=True)
    by_knn, by_probe = line.split("; ")
    assert "jigsaw (-2.5 pts)" in by_knn and "relative_patch (+0.0 pts)" in by_knn
    assert "simclr" not in by_knn
    assert by_probe == "by linear probe, relative_patch (-1.0 pts)."


def test_says_none_and_leaves_out_the_probe_when_not_measured(learning):
    results = {"simclr": seeds((0.97, 0.85, None, None)),
               "mae": seeds((0.90, None, None, None))}  # no baseline: not judged
    assert learning.below_baseline(results, probe=False) == (
        "At or below the random encoder (mean over seeds): by kNN, none.")
