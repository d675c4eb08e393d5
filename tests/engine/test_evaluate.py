"""Evaluation protocols on constructed features with known answers, and on a tiny real run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.__main__ import main
from engine.data import ImageDataset
from engine.errors import ConfigError, UserInputError
from engine.evaluate import (
    EvalOptions,
    evaluate_model,
    evaluate_run,
    few_shot,
    few_shot_draw,
    knn_eval,
    linear_probe,
    random_init_model,
    stratified_split,
)
from engine.knn import knn_predict
from engine.model import build_model, extract_features
from engine.monitor import knn_accuracy
from engine.presets import default_config
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import small_config

K = 5  # classes of the constructed features


def labels_for(n_per_class: int, k: int = K) -> torch.Tensor:
    return torch.arange(k).repeat_interleave(n_per_class)


def one_hot_features(labels: torch.Tensor, dim: int = 32, noise: float = 0.1,
                     seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = torch.zeros(labels.numel(), dim)
    f[torch.arange(labels.numel()), labels] = 1.0
    return f + noise * torch.randn(f.shape, generator=g)


def random_features(n: int, dim: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def near_chance(acc: float, n: int, k: int = K) -> bool:
    """Within 4 binomial standard errors of 1/k for n independent guesses."""
    p = 1.0 / k
    return abs(acc - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9


# --------------------------------------------------------------------------- split


def test_split_is_stratified_and_deterministic():
    y = torch.cat([labels_for(40, 3), torch.full((7,), 3), torch.tensor([4])])
    tr, va = stratified_split(y, 0.25, seed=3)
    tr2, va2 = stratified_split(y, 0.25, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    tr3, va3 = stratified_split(y, 0.25, seed=4)
    assert not torch.equal(va, va3)
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(y.numel()))
    val_counts = torch.bincount(y[va], minlength=5).tolist()
    assert val_counts == [10, 10, 10, 2, 0]  # round(n * 0.25); a single image stays in train


# --------------------------------------------------------------------------- known answers


def test_separable_features_score_near_one():
    y = labels_for(40)
    f = one_hot_features(y)
    tr, va = stratified_split(y, 0.2, 0)
    assert knn_eval(f[tr], y[tr], f[va], y[va], k=20, temperature=0.07)["accuracy"] >= 0.98
    lin = linear_probe(f[tr], y[tr], f[va], y[va], K, 1e-3, 100)
    assert lin["accuracy"] >= 0.98 and lin["train_accuracy"] >= 0.98
    fs = few_shot(f, y, (1, 5, 10), draws=5)
    for n in ("1", "5", "10"):
        assert fs[n]["mean"] >= 0.95


def test_random_features_score_near_chance():
    y = labels_for(300)  # 1500 images, 300 in validation
    f = random_features(y.numel())
    tr, va = stratified_split(y, 0.2, 0)
    knn = knn_eval(f[tr], y[tr], f[va], y[va], k=20, temperature=0.07)["accuracy"]
    assert near_chance(knn, va.numel())
    lin = linear_probe(f[tr], y[tr], f[va], y[va], K, 1e-3, 100)
    assert near_chance(lin["accuracy"], va.numel())
    assert lin["train_accuracy"] > lin["accuracy"]  # it does fit, it just cannot generalise
    fs = few_shot(f, y, (1, 5), draws=10)
    for n, r in fs.items():
        # a draw's queries are one sample; 10 draws average the same ~1500 images
        assert near_chance(r["mean"], y.numel() - K * int(n)), (n, r)
    loo = knn_predict(f, y, f, 20, 0.07, leave_one_out=True)
    assert near_chance(float((loo == y).double().mean()), y.numel())


def test_leave_one_out_knn_matches_the_monitor_and_survives_low_temperature():
    y = labels_for(30)
    f = one_hot_features(y, noise=0.8)
    loo = knn_predict(f, y, f, 10, 0.07, leave_one_out=True)
    assert float((loo == y).double().mean()) == knn_accuracy(f, y, 10, 0.07)
    cold = knn_predict(f, y, f, 10, 0.001, leave_one_out=True)  # exp(1 / 0.001) overflows
    nearest = knn_predict(f, y, f, 1, 0.07, leave_one_out=True)
    assert float((cold == nearest).double().mean()) > 0.95  # T -> 0 is 1-NN


def test_few_shot_mean_std_over_draws_and_support_never_a_query():
    y = labels_for(12)
    f = one_hot_features(y, noise=1.0)  # noisy enough that draws differ
    fs = few_shot(f, y, (1, 5, 10), draws=7, seed=2)
    assert set(fs) == {"1", "5", "10"}
    for r in fs.values():
        assert len(r["accuracies"]) == 7
        t = torch.tensor(r["accuracies"], dtype=torch.float64)
        assert r["mean"] == pytest.approx(float(t.mean()))
        assert r["std"] == pytest.approx(float(t.std()))
    assert fs["1"]["std"] > 0
    assert few_shot(f, y, (1, 5, 10), draws=7, seed=2) == fs  # seeded
    g = torch.Generator().manual_seed(0)
    for n in (1, 5, 10):
        s, q = few_shot_draw(y, n, g)
        assert set(s.tolist()).isdisjoint(q.tolist())
        assert s.numel() + q.numel() == y.numel()
        assert torch.bincount(y[s]).tolist() == [n] * K


def test_few_shot_support_leak_would_show():
    """10-shot of 12 images per class on random features: queries are 2 per class, chance
    is 20 %. A support image scored as a query would sit next to its own prototype (~0.3
    cosine against ~0 for the others in 256-d), pushing the mean towards 85 %."""
    y = labels_for(12)
    f = random_features(y.numel(), dim=256)
    r = few_shot(f, y, (10,), draws=50)["10"]
    assert r["mean"] < 0.4  # 500 query decisions: 4 standard errors above 20 % is 0.27


def test_few_shot_skips_a_shot_count_a_class_cannot_supply():
    y = torch.cat([labels_for(20, 2), torch.full((4,), 2)])
    f = one_hot_features(y, dim=8)
    fs = few_shot(f, y, (1, 5), draws=2, class_names=["a", "b", "c"])
    assert fs["1"]["mean"] is not None
    assert fs["5"]["mean"] is None and "class c has 4 images" in fs["5"]["skipped"]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"knn_k": 0}, "eval.knn_k = 0 is out of range (allowed: 1 ≤ value ≤ 1000)"),
        ({"val_fraction": 0.9}, "eval.val_fraction = 0.9 is out of range"),
        ({"knn_temperature": 0.0}, "eval.knn_temperature = 0 is out of range"),
        ({"finetune_lr": 0.0}, "eval.finetune_lr = 0 is out of range (allowed: 0 < value"),
        ({"fewshot_draws": 2.5}, "eval.fewshot_draws: 2.5 is not a valid int"),
        ({"fewshot_shots": (0, 5)}, "eval.fewshot_shots = (0, 5) is out of range"),
        ({"device": "tpu"}, "eval.device: 'tpu' is not allowed"),
    ],
)
def test_options_out_of_range_name_the_option(kwargs, message):
    with pytest.raises(ConfigError) as e:
        EvalOptions(**kwargs).validate()
    assert message in str(e.value)


def test_options_coerce_strings():
    o = EvalOptions(knn_k="7", fewshot_shots=["5", "1"], knn_leave_one_out="true")
    o.validate()
    assert o.knn_k == 7 and o.fewshot_shots == (1, 5) and o.knn_leave_one_out is True


# --------------------------------------------------------------------------- real runs


FAST = EvalOptions(fewshot_shots=(1, 5), fewshot_draws=3, finetune_steps=2,
                   finetune_batch_size=16, linear_max_iter=30)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    events = list(Trainer(small_config("simclr", 6), runs).run())
    return RunFolder(events[-1].run_dir)


def test_evaluate_run_writes_summary(tiny_run):
    ev = evaluate_run(tiny_run.path, options=FAST)
    summary = tiny_run.read_summary()
    assert summary["status"] == "finished"  # the rest of the summary is kept
    stored = summary["evaluation"]
    assert stored["checkpoint_step"] == 6 and stored["run_id"] == tiny_run.id
    assert stored["settings"]["finetune_steps"] == 2 and stored["timestamp"] > 0
    assert stored["split"] == {"train": 240, "val": 60, "stratified": True,
                               "val_fraction": 0.2, "seed": 0}
    assert stored["protocols"] == ["knn", "linear", "fewshot", "finetune"]
    res = stored["results"]
    for model in ("trained", "random_init"):
        assert 0 <= res["knn"][model]["accuracy"] <= 1
        assert 0 <= res["linear"][model]["accuracy"] <= 1
        assert 0 <= res["linear"][model]["train_accuracy"] <= 1
        assert set(res["fewshot"][model]) == {"1", "5"}
        assert len(res["fewshot"][model]["5"]["accuracies"]) == 3
        assert 0 <= res["finetune"][model]["accuracy"] <= 1
        assert math.isfinite(res["finetune"][model]["final_loss"])
    assert json.loads(json.dumps(ev["results"])) == res  # what is returned is what is stored
    # the trained encoder's features differ from the baseline's on the same draws
    assert res["fewshot"]["trained"] != res["fewshot"]["random_init"]


def test_baseline_is_the_trainers_random_init(tiny_run):
    """The rebuilt baseline reproduces the trainer's step-0 monitor kNN exactly."""
    from engine.data import load_dataset
    from engine.monitoring import monitor_indices

    cfg = small_config("simclr", 6)
    ds = load_dataset("shapes", 32, shapes_count=300)
    mon = monitor_indices(len(ds), cfg)
    base = random_init_model(cfg, "small_cnn", ds.images[mon], "cpu")
    f = extract_features(base, ds.images[mon], "cpu")
    knn = knn_accuracy(f, ds.labels[mon], cfg.monitor.knn_k, cfg.monitor.knn_temperature)
    assert knn == tiny_run.read_summary()["baseline_knn"]


def test_evaluate_live_model_keeps_its_mode():
    cfg = small_config("simclr", 3)
    model, _ = build_model(cfg, torch.device("cpu"))
    model.train()
    y = labels_for(8, 3)
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset(name="toy", images=torch.randint(0, 256, (24, 3, 32, 32), generator=g,
                                                       dtype=torch.uint8),
                      labels=y, class_names=["a", "b", "c"],
                      files=[str(i) for i in range(24)], skipped=[])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev = evaluate_model(model, ds, ["knn", "finetune"], FAST)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(ev["results"]) == {"knn", "finetune"}
    # top-1 on the validation split: a share of its images (2 of each class's 8 here)
    n_val = ev["split"]["val"]
    assert n_val == 6
    for protocol in ("knn", "finetune"):
        for name in ("trained", "random_init"):
            acc = ev["results"][protocol][name]["accuracy"]
            assert 0 <= acc <= 1 and math.isclose(acc * n_val, round(acc * n_val)), (
                protocol, name, acc)


def test_unlabelled_dataset_says_what_is_needed(tiny_run, tmp_path):
    flat = ImageDataset(name="flat", images=torch.zeros(10, 3, 32, 32, dtype=torch.uint8),
                        labels=None, class_names=[], files=[str(i) for i in range(10)],
                        skipped=[])
    with pytest.raises(UserInputError, match="put images in one subfolder per class"):
        evaluate_run(tiny_run.path, ["knn"], FAST, dataset=flat)
    one = ImageDataset(name="one", images=torch.zeros(10, 3, 32, 32, dtype=torch.uint8),
                       labels=torch.zeros(10, dtype=torch.long), class_names=["cat"],
                       files=[str(i) for i in range(10)], skipped=[])
    with pytest.raises(UserInputError, match="only one class.*one subfolder per class"):
        evaluate_run(tiny_run.path, ["knn"], FAST, dataset=one)


def test_unlabelled_folder_run(tmp_path):
    """A run trained on a folder without subfolders cannot be evaluated (exit code 2)."""
    from PIL import Image

    folder = tmp_path / "flat"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        px = torch.randint(0, 256, (16, 16, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(px).save(folder / f"{i}.png")
    cfg = default_config("simclr")
    for k, v in {"data.dataset": str(folder), "data.resolution": 16, "data.disk_cache": False,
                 "optim.batch_size": 4, "optim.warmup_steps": 0, "optim.max_steps": 1,
                 "monitor.monitor_size": 20, "backbone.width": 4}.items():
        cfg.set(k, v)
    run_dir = list(Trainer(cfg, tmp_path / "runs").run())[-1].run_dir
    with pytest.raises(UserInputError, match="no labels.*put images in one subfolder per class"):
        evaluate_run(run_dir, ["knn"], FAST)


def test_cli_eval_prints_the_table(tiny_run, capsys):
    code = main(["eval", tiny_run.id, "--runs-dir", str(tiny_run.path.parent),
                 "--protocols", "knn", "fewshot", "--k", "5", "--shots", "1", "--draws", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "weighted kNN (k=5" in out and "few-shot 1-shot (2 draws)" in out
    assert "random init" in out and "difference" in out
    ev = tiny_run.read_summary()["evaluation"]
    assert ev["protocols"] == ["knn", "fewshot"] and ev["settings"]["knn_k"] == 5


@pytest.mark.parametrize(
    "args,message",
    [
        (["/no/such/run"], "run not found: /no/such/run"),
        (["RUN", "--k", "0"], "eval.knn_k = 0 is out of range"),
        (["RUN", "--protocols", "knn", "svm"], "unknown protocol 'svm'"),
        (["RUN", "--shots", "x"], "eval.fewshot_shots = ['x'] is out of range"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tiny_run, capsys, args, message):
    args = [str(tiny_run.path) if a == "RUN" else a for a in args]
    code = main(["eval", *args, "--runs-dir", str(tiny_run.path.parent)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1


def test_cli_run_without_checkpoint_exits_2(tiny_run, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.toml").write_text(tiny_run.config_path.read_text())
    assert main(["eval", str(bare)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err
