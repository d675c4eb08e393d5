"""CLIP evaluated and exported: zero-shot and retrieval beside random init and chance, the
templates option, both towers exported and loaded back outside the workbench's process,
joint-space embeddings of images and captions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import events as ev
from engine.__main__ import main
from engine.augment import eval_transform
from engine.checkpoint import load_run_model
from engine.data.paired import load_paired
from engine.errors import ConfigError, UserInputError
from engine.evaluate import (
    EvalOptions,
    evaluate_run,
    parse_templates,
    resolve_protocols,
    stratified_split,
    table_rows,
)
from engine.export import export_embeddings, export_encoder
from engine.presets import default_config, load_toml
from engine.retrieval import DEFAULT_TEMPLATES, prompts, recall_at_k, zero_shot_accuracy
from engine.runs import RunFolder
from engine.train import Trainer

# tests/engine/test_clip_run.py's tiny CLIP run
TINY = {"optim.max_steps": 4, "monitor.every_steps": 2, "optim.batch_size": 16,
        "optim.warmup_steps": 1, "monitor.monitor_size": 120, "data.shapes_count": 200,
        "backbone.width": 8, "method.dim": 32, "method.depth": 1, "method.heads": 2,
        "data.seq_len": 48}

FAST = EvalOptions(fewshot_shots=(1,), fewshot_draws=2, finetune_steps=1,
                   finetune_batch_size=8, linear_max_iter=10)


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory) -> RunFolder:
    cfg = default_config("clip")
    for k, v in TINY.items():
        cfg.set(k, v)
    events = list(Trainer(cfg, tmp_path_factory.mktemp("runs")).run())
    assert not [e for e in events if isinstance(e, ev.Failed)]
    return RunFolder(events[-1].run_dir)


@pytest.fixture(scope="module")
def evaluated(clip_run: RunFolder) -> dict:
    """kNN and fine-tuning asked for; the paired protocols are added."""
    return evaluate_run(clip_run.path, ("knn", "finetune"), FAST)


def trained_model(run: RunFolder):
    cfg = load_toml(run.config_path)
    model, _, _ = load_run_model(run, cfg, "cpu")
    return cfg, model


# --------------------------------------------------------------------------- evaluation


def test_zero_shot_and_retrieval_beside_random_init_and_chance(evaluated, clip_run):
    assert evaluated["protocols"] == ["knn", "finetune", "zeroshot", "retrieval"]
    assert evaluated["modality"] == "paired"
    n_val = evaluated["split"]["val"]
    res = evaluated["results"]
    for model in ("trained", "random_init"):
        zs = res["zeroshot"][model]
        assert 0.0 <= zs["accuracy"] <= 1.0
        assert zs["chance"] == pytest.approx(1 / 6)
        assert zs["templates"] == len(DEFAULT_TEMPLATES)
        assert zs["accuracy"] * n_val == pytest.approx(round(zs["accuracy"] * n_val), abs=1e-4)
        rt = res["retrieval"][model]
        assert rt["pairs"] == n_val
        for k in (1, 5, 10):
            assert rt[f"recall_chance_r{k}"] == pytest.approx(k / n_val)
            for way in ("image_to_text", "text_to_image"):
                assert 0.0 <= rt[f"{way}_r{k}"] <= 1.0
        assert 0.0 <= res["finetune"][model]["accuracy"] <= 1.0  # through the image tower
    assert evaluated["settings"]["zeroshot_templates"] == "|".join(DEFAULT_TEMPLATES)
    stored = clip_run.read_summary()["evaluation"]
    assert stored["results"]["zeroshot"] == json.loads(json.dumps(res["zeroshot"]))


def test_the_report_shows_zero_shot_and_retrieval_rows(evaluated):
    """The rows the Evaluate tab and the CLI show (app.panels.evaluate reads table_rows)."""
    rows = {r[0]: r for r in table_rows(evaluated)}
    n = evaluated["split"]["val"]
    zs = next(name for name in rows if name.startswith("zero-shot from prompts"))
    assert "4 templates" in zs and "chance 16.7%" in zs
    for way in ("image→text", "text→image"):
        for k in (1, 5, 10):
            assert any(name.startswith(f"{way} recall@{k} ({n} val pairs; chance")
                       for name in rows), (way, k)
    name, trained, base, diff, _ = rows[zs]
    acc = evaluated["results"]["zeroshot"]["trained"]["accuracy"]
    assert trained == f"{100 * acc:.1f}%" and base.endswith("%") and diff.endswith("pt")


def test_retrieval_and_zero_shot_equal_the_scores_of_embeddings_computed_directly(
        evaluated, clip_run):
    cfg, model = trained_model(clip_run)
    ds = load_paired(cfg.data)
    _, val = stratified_split(ds.labels, FAST.val_fraction, FAST.seed)
    with torch.no_grad():
        zi = model.embed_images(eval_transform(ds.images[val], cfg.data.resolution))
        zt = model.embed_texts(ds.tokens[val])
        classes = model.embed_texts(model.encode_prompts(
            prompts(ds.class_names, DEFAULT_TEMPLATES))).view(6, len(DEFAULT_TEMPLATES), -1)
    direct = recall_at_k(zi @ zt.t(), (1, 5, 10))
    got = evaluated["results"]["retrieval"]["trained"]
    for key, value in direct.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert evaluated["results"]["zeroshot"]["trained"]["accuracy"] == pytest.approx(
        zero_shot_accuracy(zi, classes, ds.labels[val]))


def test_own_templates_and_only_the_named_paired_protocol(clip_run):
    out = evaluate_run(clip_run.path, ("zeroshot",),
                       EvalOptions(zeroshot_templates=" a photo of a {}. |a {}| "))
    assert out["protocols"] == ["zeroshot"]
    assert out["results"]["zeroshot"]["trained"]["templates"] == 2


# --------------------------------------------------------------------------- the option


@pytest.mark.parametrize("text", ["a photo of a cat", "a {} and a {}", "a {0}", "  |  ",
                                  "a {name}", "a {}|a photo"])
def test_a_bad_template_is_refused_naming_the_option(text):
    with pytest.raises(ConfigError, match="eval.zeroshot_templates"):
        EvalOptions(zeroshot_templates=text).validate()


def test_templates_are_split_on_bars_and_stripped():
    assert parse_templates("a photo of a {}.| a {} shape. |") == ("a photo of a {}.",
                                                                  "a {} shape.")
    assert EvalOptions().templates() == DEFAULT_TEMPLATES


def test_paired_protocols_are_added_for_image_text_models_only():
    assert resolve_protocols(["knn"], paired=True) == ("knn", "zeroshot", "retrieval")
    assert resolve_protocols(["retrieval", "knn"], paired=True) == ("knn", "retrieval")
    assert resolve_protocols(["knn", "linear"], paired=False) == ("knn", "linear")
    with pytest.raises(UserInputError, match="'zeroshot' needs an image-text model"):
        resolve_protocols(["knn", "zeroshot"], paired=False)


# --------------------------------------------------------------------------- CLI


def test_cli_eval_prints_the_zero_shot_and_retrieval_rows(clip_run, capsys):
    code = main(["eval", clip_run.id, "--runs-dir", str(clip_run.path.parent),
                 "--protocols", "knn", "--zeroshot-templates", "a photo of a {}.|a {}."])
    out = capsys.readouterr().out
    assert code == 0
    assert "zero-shot from prompts (2 templates, val top-1; chance 16.7%)" in out
    assert "image→text recall@5" in out and "text→image recall@10" in out
    assert "captioned images" in out


def test_cli_bad_template_exits_2_with_one_line(clip_run, capsys):
    code = main(["eval", str(clip_run.path), "--zeroshot-templates", "a photo"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "eval.zeroshot_templates" in err and "'a photo'" in err


# --------------------------------------------------------------------------- export


PROBE = textwrap.dedent("""
    import torch
    import load_clip

    images = torch.load("probe_images.pt", weights_only=True)
    torch.save({"images": load_clip.embed_images(images),
                "texts": load_clip.embed_texts(["a red circle", "a big blue star"])},
               "probe_out.pt")
""")


def test_both_towers_load_back_in_a_fresh_process(clip_run, tmp_path):
    out = tmp_path / "enc"
    files = export_encoder(clip_run.path, out)
    assert {p.name for p in files.values()} == {
        "encoder.pt", "encoder.json", "load_encoder.py", "text_encoder.pt", "projections.pt",
        "tokenizer.json", "clip.json", "load_clip.py"}
    meta = json.loads(files["clip_meta"].read_text())
    assert meta["embed_dim"] == 128 and meta["text_pooling"] == "mean"
    assert meta["temperature"] == pytest.approx(1 / meta["scale"])

    cfg, model = trained_model(clip_run)
    images = torch.randint(0, 256, (5, 3, 32, 32), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    torch.save(images, out / "probe_images.pt")
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=out, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = torch.load(out / "probe_out.pt", weights_only=True)
    with torch.no_grad():
        want_i = model.embed_images(eval_transform(images, cfg.data.resolution))
        want_t = model.embed_texts(model.encode_prompts(["a red circle", "a big blue star"]))
    assert torch.allclose(got["images"], want_i, atol=1e-5)
    assert torch.allclose(got["texts"], want_t, atol=1e-5)

    # the snippet as written: an image file and a sentence, their cosine printed
    from PIL import Image

    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(tmp_path / "one.png")
    r = subprocess.run([sys.executable, "load_clip.py", str(tmp_path / "one.png"),
                        "a red circle"], cwd=out, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cosine = float(want_i[0] @ want_t[0])
    assert f"cosine {cosine:.4f} between the image and 'a red circle'" in r.stdout
    # the image tower alone, as an image run's export
    r = subprocess.run([sys.executable, "load_encoder.py"], cwd=out, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "torch.Size([1, 64])" in r.stdout, r.stderr


def test_embeddings_of_images_and_captions_in_the_joint_space(clip_run, tmp_path):
    files = export_embeddings(clip_run.path, tmp_path / "emb")
    feats = np.load(files["embeddings"])
    zi, zt = np.load(files["image_joint"]), np.load(files["caption_joint"])
    assert feats.shape == (200, 64) and zi.shape == zt.shape == (200, 128)
    assert zi.dtype == zt.dtype == np.float32
    assert np.allclose(np.linalg.norm(zi, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(zt, axis=1), 1, atol=1e-5)
    with open(files["index"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cfg, model = trained_model(clip_run)
    ds = load_paired(cfg.data)
    assert [r["caption"] for r in rows] == ds.captions
    assert [r["label"] for r in rows[:5]] == [ds.class_names[int(y)] for y in ds.labels[:5]]
    with torch.no_grad():
        want_t = model.embed_texts(ds.tokens[:8])
        want_i = model.embed_images(eval_transform(ds.images[:8], cfg.data.resolution))
    assert np.allclose(zt[:8], want_t.numpy(), atol=1e-5)
    assert np.allclose(zi[:8], want_i.numpy(), atol=1e-5)


def test_image_run_exports_are_unchanged(tmp_path):
    """An image run writes no text tower and no joint embeddings."""
    from tests.engine.conftest import small_config

    cfg = small_config("simclr", 2, **{"optim.batch_size": 8, "monitor.monitor_size": 40})
    run_dir = list(Trainer(cfg, tmp_path / "runs").run())[-1].run_dir
    assert {p.name for p in export_encoder(run_dir, tmp_path / "e").values()} == {
        "encoder.pt", "encoder.json", "load_encoder.py"}
    emb = export_embeddings(run_dir, tmp_path / "m")
    assert set(emb) == {"embeddings", "index"}
    assert Path(emb["index"]).read_text().splitlines()[0] == "index,file,label"
