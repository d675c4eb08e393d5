"""Searching a saved CLIP run by a typed sentence: the answer the window gives once
training has ended, from the checkpoint and the latest embedding snapshot."""

from __future__ import annotations

import shutil

import pytest

from engine import events as ev
from engine.search import search_run
from engine.train import Trainer
from tests.engine.test_clip_run import tiny


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """A tiny finished CLIP run, and the answer its trainer would give at the last step
    (its query path: the model's sentence embedding against the monitor projections)."""
    from engine.retrieval import rank_by_similarity

    runs = tmp_path_factory.mktemp("runs")
    t = Trainer(tiny(), runs)
    assert not [e for e in t.run() if isinstance(e, ev.Failed)]
    idx, scores = rank_by_similarity(t.model.embed_query("a small red circle"),
                                     t._search_space, 12)
    live = ev.QueryResult(4, "a small red circle", tuple(idx.tolist()),
                          tuple(scores.tolist()))
    return t.run_folder.path, live


def test_a_saved_run_answers_as_the_live_run_did_at_its_last_step(clip_run):
    run_dir, live = clip_run
    got = search_run(run_dir, "a small red circle")
    assert not got.message and got.step == 4 and got.query == "a small red circle"
    assert len(got.indices) == 12 and all(0 <= i < 120 for i in got.indices)
    assert list(got.scores) == sorted(got.scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in got.scores)
    # the trainer answered from the same model and the same monitor embeddings (float16)
    assert live.indices[:3] == got.indices[:3]
    assert got.scores == pytest.approx(live.scores, abs=2e-3)
    assert len(search_run(run_dir, "a blue square", k=5).indices) == 5


def test_problems_come_back_as_messages(clip_run, tmp_path):
    run_dir, _ = clip_run
    assert "Type a sentence" in search_run(run_dir, "  ").message
    assert "not a run folder" in search_run(tmp_path, "a circle").message
    bare = tmp_path / "no_checkpoint"
    bare.mkdir()
    shutil.copy(run_dir / "config.toml", bare / "config.toml")
    got = search_run(bare, "a circle")
    assert "no checkpoint" in got.message and got.indices == ()
    copy = tmp_path / "no_snapshots"
    shutil.copytree(run_dir, copy)
    for p in (copy / "snapshots").glob("embedding_*.npz"):
        p.unlink()
    assert "no embedding snapshot" in search_run(copy, "a circle").message


def test_an_image_run_has_no_text_tower_to_search_with(tmp_path):
    t = Trainer(tiny("simclr", **{"optim.max_steps": 2}), tmp_path)
    assert not [e for e in t.run() if isinstance(e, ev.Failed)]
    got = search_run(t.run_folder.path, "a red circle")
    assert "no text tower" in got.message and got.indices == ()
