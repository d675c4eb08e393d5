"""The learning-rate range test (Smith 2017): its suggestion rule, a real test on a
small config, and the CLI."""

from __future__ import annotations

import math

import pytest

from engine.__main__ import main as cli
from engine.lr_find import lr_find, suggest
from engine.presets import load_toml
from tests.engine.conftest import small_config


def grid(n: int = 60) -> list[float]:
    return [1e-6 * (1e7 ** (i / (n - 1))) for i in range(n)]


def test_the_suggestion_sits_inside_the_fall_of_the_loss():
    lrs = grid()
    # flat until 1e-4, falling until 1e-1, then blowing up
    loss = [5.0 if lr < 1e-4 else 5.0 - 4.0 * math.log10(lr / 1e-4) / 3 if lr < 1e-1
            else 1.0 + 30 * (math.log10(lr) + 1) for lr in lrs]
    lr, why = suggest(lrs, loss)
    assert 1e-4 < lr < 1e-1 and "fall" in why
    # move the fall: the suggestion moves with it
    shifted = [5.0 if x < 1e-3 else 5.0 - 4.0 * math.log10(x / 1e-3) / 2 if x < 1e-1
               else 1.0 + 30 * (math.log10(x) + 1) for x in lrs]
    lr2, _ = suggest(lrs, shifted)
    assert 1e-3 < lr2 < 1e-1 and lr2 > lr
    # a loss that never falls: a tenth of the rate at its (noisy) minimum
    flat = [2.0 + 0.001 * ((i * 7) % 3) for i in range(len(lrs))]
    lr3, why3 = suggest(lrs, flat)
    assert "barely fell" in why3 and lr3 == pytest.approx(lrs[flat.index(min(flat))] / 10)
    assert suggest(lrs[:3], loss[:3])[0] is None


def test_a_range_test_on_a_small_config_suggests_a_rate_in_the_fields_range():
    cfg = small_config("simclr")
    r = lr_find(cfg, steps=30)
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) >= 10
    assert r.lrs == sorted(r.lrs) and r.lrs[0] == pytest.approx(1e-6)
    spec = cfg.spec("optim.lr")
    assert r.suggestion is not None and spec.min <= r.suggestion <= spec.max
    assert r.lrs[0] <= r.suggestion <= r.lrs[-1]
    with pytest.raises(ValueError, match="at least 5"):
        lr_find(cfg, steps=2)


def test_the_cli_prints_the_curve_and_saves_the_suggestion(tmp_path, capsys):
    out = tmp_path / "suggested.toml"
    code = cli(["lr-find", "--method", "rotation", "--steps", "20", "--save", str(out),
                "--set", "data.shapes_count=300", "--set", "optim.batch_size=16",
                "--set", "backbone.width=8"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "suggested optim.lr =" in text and "learning rate" in text
    saved = load_toml(out)
    assert saved.method_name == "rotation" and f"{saved.optim.lr:.3g}" in text
    assert cli(["lr-find", "--steps", "3"]) == 2  # a clear error, not a traceback
