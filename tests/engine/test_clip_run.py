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


def test_clip_snapshots_map_the_captions_in_the_joint_space_and_reload(clip_run):
    """Each embedding snapshot holds the monitor captions' joint-space vectors beside the
    images' (row i is image i's caption), as the model embeds them, saved and reloaded."""
    import numpy as np
    import torch

    from engine.runs import RunFolder

    t, events = clip_run
    snaps = [e for e in events if isinstance(e, ev.EmbeddingSnapshot)]
    assert [s.step for s in snaps] == [0, 2, 4]
    dim = t.model.embed_dim
    for s in snaps:
        assert s.text_projections is not None
        assert s.text_projections.shape == (120, dim) == s.projections.shape
        assert s.text_projections.dtype == np.float16
        norms = np.linalg.norm(s.text_projections.astype(np.float32), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-2)
    t.model.eval()
    with torch.no_grad():
        direct = t.model.embed_texts(t.monitor.inputs.tokens).numpy()
    assert np.allclose(snaps[-1].text_projections.astype(np.float32), direct, atol=2e-3)

    saved = RunFolder(t.run_folder.path).load_embeddings()
    assert [s.step for s in saved] == [0, 2, 4]
    for a, b in zip(saved, snaps, strict=True):
        assert np.array_equal(a.text_projections, b.text_projections)


def torch_of(a):
    import torch

    return torch.from_numpy(a.astype("float32"))


def test_clip_reports_the_text_towers_collapse_scores(clip_run):
    from engine.monitor import anisotropy, collapse_std, effective_rank
    from engine.verdict import collapse_verdict, tower_verdict

    t, events = clip_run
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    snaps = [e for e in events if isinstance(e, ev.EmbeddingSnapshot)]
    dim = t.model.embed_dim
    for r, s in zip(reports, snaps, strict=True):
        x = r.extra
        assert x["text_dim"] == dim and x["text_count"] == 120
        assert x["text_std_reference"] == pytest.approx(dim ** -0.5)
        assert 0.0 < x["text_std"] and 0.0 < x["text_effective_rank"] <= dim
        assert -1.0 <= x["text_anisotropy"] <= 1.0 and x["text_uniformity"] <= 0.0
        z = torch_of(s.text_projections)
        assert x["text_std"] == pytest.approx(collapse_std(z), rel=1e-2)
        assert x["text_effective_rank"] == pytest.approx(effective_rank(z), rel=1e-2)
        assert x["text_anisotropy"] == pytest.approx(anisotropy(z), abs=1e-2)
        assert tower_verdict(x) == collapse_verdict(x["text_std"], x["text_std_reference"],
                                                    x["text_effective_rank"], dim, 120)
    # logged and read back: a reopened run gets the same scores and verdict
    row = ev.MonitorReport.from_row(reports[-1].to_row())
    assert tower_verdict(row.extra) == tower_verdict(reports[-1].extra) is not None


def test_the_monitor_split_across_processes_gathers_the_caption_vectors(clip_run,
                                                                        monkeypatch):
    """Under torchrun each rank embeds its share of the pairs, captions included, and
    rank 0 gets them all in order (the collectives stood in for: rank 1 sends, rank 0
    receives both shares)."""
    import torch

    import engine.monitoring as mon

    t, _ = clip_run
    t.model.eval()
    single = t.monitor._embed(t.model)
    sent: dict = {}
    now = {"rank": 1}

    def gather(obj):
        if now["rank"] == 1:
            sent["share"] = obj
            return None
        return [obj, sent["share"]]

    monkeypatch.setattr(mon.distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(mon.distributed, "world_size", lambda: 2)
    monkeypatch.setattr(mon.distributed, "rank", lambda: now["rank"])
    monkeypatch.setattr(mon.distributed, "gather_objects_to_main", gather)
    assert t.monitor._embed(t.model) is None
    assert sent["share"][2].shape[0] == 60  # rank 1's half of the captions
    now["rank"] = 0
    split = t.monitor._embed(t.model)
    for a, b in zip(split, single, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_the_monitor_scores_retrieval_from_its_own_embeddings(clip_run):
    """The monitor hands CLIP the image and caption embeddings it made, so recall and
    zero-shot are not embedded twice per monitor step, and they score the same."""
    t, _ = clip_run
    t.model.eval()
    _, z, txt = t.monitor._embed(t.model)
    inputs, labels = t.monitor.inputs, t.monitor.labels
    own = t.model.monitor_metrics(inputs, labels)
    reused = t.model.monitor_metrics(inputs, labels, projections=z, text_projections=txt)
    assert own.keys() == reused.keys()
    for k, v in own.items():
        assert reused[k] == pytest.approx(v, abs=1e-6), k


def test_an_image_method_has_no_text_tower_query_or_caption_map(tmp_path):
    from engine.verdict import tower_verdict

    t = Trainer(tiny("simclr", **{"optim.max_steps": 2}), tmp_path)
    answers, snaps, reports = [], [], []
    for e in t.run():
        if isinstance(e, ev.MonitorReport):
            t.request_query("a red circle")
            reports.append(e)
        answers += [e] if isinstance(e, ev.QueryResult) else []
        snaps += [e] if isinstance(e, ev.EmbeddingSnapshot) else []
    assert answers and "no text tower" in answers[0].message
    assert snaps and all(s.text_projections is None for s in snaps)
    assert reports and all(tower_verdict(r.extra) is None for r in reports)
    assert not any(k.startswith("text_") for r in reports for k in r.extra)
    saved = t.run_folder.snapshots_dir / f"embedding_{snaps[-1].step:08d}.npz"
    import numpy as np

    with np.load(saved) as z:
        assert "text_projections" not in z.files  # absent, not an empty array


def test_snapshots_saved_before_caption_maps_still_load(tmp_path):
    """An embedding snapshot written before text projections existed reads back with
    None for them."""
    import numpy as np

    from engine.runs import RunFolder

    run = RunFolder(tmp_path / "old")
    run.snapshots_dir.mkdir(parents=True)
    np.savez(run.snapshots_dir / "embedding_00000010.npz", step=np.asarray(10),
             features=np.zeros((4, 3), np.float16), projections=np.ones((4, 2), np.float16))
    (snap,) = run.load_embeddings()
    assert snap.step == 10 and snap.text_projections is None
    assert snap.projections.shape == (4, 2)


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
