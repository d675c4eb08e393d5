"""CLIP through the trainer: paired data loaded for it, its monitor scores and heat map,
typed queries answered between steps, and the run evaluated like any image run."""

from __future__ import annotations

import pytest

from engine import events as ev
from engine.presets import default_config
from engine.train import Trainer

TINY = {"optim.max_steps": 4, "monitor.every_steps": 2, "optim.batch_size": 16,
        "optim.warmup_steps": 1, "monitor.monitor_size": 120, "data.shapes_count": 200,
        "backbone.width": 8, "method.dim": 32, "method.depth": 1, "method.heads": 2,
        "data.seq_len": 48}


def tiny(method: str = "clip", **more: object):
    cfg = default_config(method)
    for k, v in {**TINY, **more}.items():
        if k.startswith("method.") and k not in {s.key for s in cfg.specs()}:
            continue
        cfg.set(k, v)
    return cfg


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    t = Trainer(tiny(), runs)
    events = []
    for e in t.run():
        events.append(e)
        if isinstance(e, ev.MonitorReport) and e.step == 2:
            t.request_query("a red circle")
            t.request_query("   ")
    return t, events


def test_clip_reports_retrieval_and_zero_shot_beside_chance(clip_run):
    _, events = clip_run
    assert not [e for e in events if isinstance(e, ev.Failed)]
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    assert [r.step for r in reports] == [0, 2, 4]
    extra = reports[-1].extra
    for way in ("image_to_text", "text_to_image"):
        for k in (1, 5, 10):
            assert 0.0 <= extra[f"{way}_r{k}"] <= 1.0
    assert extra["recall_chance_r5"] == pytest.approx(5 / 120)  # the monitor pairs
    assert extra["zero_shot_chance"] == pytest.approx(1 / 6)
    assert 0.0 <= extra["zero_shot_accuracy"] <= 1.0
    assert reports[0].knn_accuracy is not None  # the image tower's kNN, as image runs


def test_clip_preview_is_the_similarity_heat_map_of_monitor_pairs(clip_run):
    _, events = clip_run
    snaps = [e for e in events if isinstance(e, ev.PreviewSnapshot)]
    assert snaps and {s.kind for s in snaps} == {"similarity"}
    s = snaps[-1]
    item = s.items[0]
    n = s.originals.shape[0]
    assert len(item["similarity"]) == n and all(len(r) == n for r in item["similarity"])
    assert len(item["captions"]) == n and all(c.strip() for c in item["captions"])
    assert all(-1.0001 <= v <= 1.0001 for r in item["similarity"] for v in r)


def test_typed_queries_are_answered_between_steps(clip_run):
    _, events = clip_run
    answers = [e for e in events if isinstance(e, ev.QueryResult)]
    assert [a.query for a in answers] == ["a red circle", "   "]
    hit, empty = answers
    assert hit.step == 2 and len(hit.indices) == 12 and not hit.message
    assert all(0 <= i < 120 for i in hit.indices)
    assert list(hit.scores) == sorted(hit.scores, reverse=True)
    assert empty.indices == () and "Type a sentence" in empty.message


def test_an_image_method_says_it_cannot_answer_a_query(tmp_path):
    t = Trainer(tiny("simclr", **{"optim.max_steps": 2}), tmp_path)
    answers = []
    for e in t.run():
        if isinstance(e, ev.MonitorReport):
            t.request_query("a red circle")
        answers += [e] if isinstance(e, ev.QueryResult) else []
    assert answers and "no text tower" in answers[0].message


def test_clip_refuses_data_without_captions_by_name(tmp_path):
    t = Trainer(tiny(**{"data.dataset": "digits"}), tmp_path)
    failed = [e for e in t.run() if isinstance(e, ev.Failed)]
    assert failed and "captioned images" in failed[0].message and failed[0].input_error


def test_a_clip_run_evaluates_with_knn_on_its_image_tower(clip_run):
    from engine.evaluate import evaluate_run

    t, _ = clip_run
    out = evaluate_run(t.run_folder.path, protocols=("knn",))
    assert set(out["results"]["knn"]) >= {"trained", "random_init"}


def captioned_folder(root, with_captions: bool = True):
    """Two classes of plain-colour images, each with a caption file beside it."""
    from PIL import Image

    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (24, 24), rgb).save(root / name / f"{name}_{i:02d}.png")
            if with_captions:
                (root / name / f"{name}_{i:02d}.txt").write_text(f"a plain {name} square {i}")
    return root


def test_a_captioned_user_folder_trains(tmp_path):
    folder = captioned_folder(tmp_path / "photos")
    (folder / "red" / "orphan.txt").write_text("a caption without its image")
    t = Trainer(tiny(**{"data.dataset": str(folder), "optim.batch_size": 8,
                        "monitor.monitor_size": 24}), tmp_path / "runs")
    events = list(t.run())
    assert not [e for e in events if isinstance(e, ev.Failed)]
    ready = next(e for e in events if isinstance(e, ev.DatasetReady))
    assert any("orphan.txt" in f for f, _ in ready.skipped)  # reported, not fatal
    assert [e for e in events if isinstance(e, ev.Finished)][0].status == "finished"


def test_a_folder_without_captions_is_refused_by_name(tmp_path):
    folder = captioned_folder(tmp_path / "plain", with_captions=False)
    failed = [e for e in Trainer(tiny(**{"data.dataset": str(folder)}), tmp_path / "r").run()
              if isinstance(e, ev.Failed)]
    assert failed and failed[0].input_error
    assert str(folder) in failed[0].message and "caption" in failed[0].message
