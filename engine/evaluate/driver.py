"""Running the protocols on a run's trained encoder beside its random-init baseline."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from engine.backbones import resolve_backbone_name
from engine.checkpoint import load_run_model
from engine.config import Config
from engine.data import DataSource, load_configured
from engine.data.source import Inputs
from engine.errors import UserInputError
from engine.evaluate.options import (
    PAIRED_PROTOCOLS,
    PROTOCOL_TEXT,
    PROTOCOLS,
    EvalOptions,
    Progress,
    check_protocols,
    require_labels,
    resolve_protocols,
    stratified_split,
)
from engine.evaluate.protocols import (
    _acc,
    few_shot,
    fine_tune,
    knn_eval,
    linear_probe,
    retrieval,
    zero_shot,
)
from engine.knn import knn_predict
from engine.methods._base import SSLMethod
from engine.model import (
    build_model,
    calibrate_batchnorm,
    extract_features,
    extract_pair_embeddings,
    has_text_tower,
    pick_device,
)
from engine.monitoring import monitor_indices
from engine.presets import load_toml
from engine.runs import RunFolder, default_runs_dir


def random_init_model(
    cfg: Config,
    backbone_name: str,
    calibration_images: Inputs,
    device: torch.device | str,
) -> SSLMethod:
    """The run's architecture freshly initialised with ``cfg.run.seed``: the weights the
    trainer started from, BatchNorm statistics calibrated on ``calibration_images`` (the
    monitor subset) with the trainer's own :func:`~engine.model.calibrate_batchnorm`. The
    global RNG is left as it was."""
    device = torch.device(device)
    c = copy.deepcopy(cfg)
    c.backbone.name = backbone_name  # the name the run resolved 'auto' to
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model, _ = build_model(c, torch.device("cpu"))
    model = model.to(device)
    calibrate_batchnorm(model, calibration_images, device, cfg.data.resolution)
    return model.eval()


def evaluate_models(
    models: dict[str, SSLMethod],
    dataset: DataSource,
    protocols: Iterable[str] = PROTOCOLS,
    options: EvalOptions | None = None,
    *,
    device: torch.device | str | None = None,
    resolution: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every protocol on every model (by name) on the same split; plain JSON data.

    Returns ``settings``, ``split``, ``chance`` (majority-class share of the validation
    split) and ``results[protocol][model]``, plus ``results[protocol]["seconds"]``.

    Image-text models (CLIP: :func:`~engine.model.has_text_tower`, on paired data) also
    get ``zeroshot`` (top-1 on the validation images from the class names in
    ``options.zeroshot_templates``, with ``chance`` 1 / C) and ``retrieval`` (recall@1/5/10
    both ways among at most ``options.retrieval_pairs`` validation pairs, with
    ``recall_chance_r{k}`` = k / pairs) unless ``protocols`` names one of them
    (:func:`~engine.evaluate.options.resolve_protocols`). Each such model is handed the
    dataset (``attach_source``) so prompts are tokenised as its captions were.
    """
    options = options or EvalOptions()
    options.validate()
    paired = bool(models) and all(has_text_tower(m) for m in models.values()) and \
        getattr(dataset.inputs, "tokens", None) is not None
    protocols = resolve_protocols(protocols, paired)
    labels = require_labels(dataset)
    say = progress or (lambda _msg: None)
    first = next(iter(models.values()))
    if device is None:
        device = next(first.parameters()).device
    device = torch.device(device)
    res = resolution or first.cfg.data.resolution
    n_classes = len(dataset.class_names)
    train_idx, val_idx = stratified_split(labels, options.val_fraction, options.seed)
    if val_idx.numel() == 0:
        raise UserInputError(f"dataset {dataset.name}: every class has a single image; "
                             "evaluation needs at least 2 images in some class")
    feats: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    if set(protocols) & {"knn", "linear", "fewshot"}:
        for name, m in models.items():
            say(f"extracting features ({name.replace('_', ' ')})")
            feats[name] = extract_features(m, dataset.inputs, device, options.batch_size, res)
    feature_seconds = time.perf_counter() - t0
    val_counts = torch.bincount(labels[val_idx], minlength=n_classes)
    results: dict[str, Any] = {}
    joint: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if set(protocols) & set(PAIRED_PROTOCOLS):
        for m in models.values():
            m.attach_source(dataset)
    # the retrieval sample: positions in the validation split, seeded, in index order
    gen = torch.Generator().manual_seed(options.seed)
    n_val = int(val_idx.numel())
    sample = torch.randperm(n_val, generator=gen)[: options.retrieval_pairs].sort().values
    for p in protocols:
        t0 = time.perf_counter()
        r: dict[str, Any] = {}
        for name, m in models.items():
            if p in PAIRED_PROTOCOLS and name not in joint:
                say(f"embedding the validation pairs ({name.replace('_', ' ')})")
                joint[name] = extract_pair_embeddings(m, dataset.inputs[val_idx], device,
                                                      options.batch_size, res)
            say(f"{PROTOCOL_TEXT[p]} ({name.replace('_', ' ')})")
            f = feats.get(name)
            if p == "knn":
                assert f is not None
                if options.knn_leave_one_out:
                    pred = knn_predict(f, labels, f, options.knn_k, options.knn_temperature,
                                       leave_one_out=True)
                    r[name] = {"accuracy": _acc(pred, labels)}
                else:
                    r[name] = knn_eval(f[train_idx], labels[train_idx], f[val_idx],
                                       labels[val_idx], options.knn_k,
                                       options.knn_temperature)
            elif p == "linear":
                assert f is not None
                r[name] = linear_probe(f[train_idx], labels[train_idx], f[val_idx],
                                       labels[val_idx], n_classes,
                                       options.linear_weight_decay, options.linear_max_iter)
            elif p == "fewshot":
                assert f is not None
                r[name] = few_shot(f, labels, options.fewshot_shots, options.fewshot_draws,
                                   options.seed, dataset.class_names)
            elif p == "zeroshot":
                r[name] = zero_shot(m, joint[name][0], labels[val_idx], dataset.class_names,
                                    options.templates())
            elif p == "retrieval":
                zi, zt = joint[name]
                r[name] = retrieval(zi[sample], zt[sample])
            else:
                r[name] = fine_tune(m, dataset.inputs, labels, train_idx, val_idx,
                                    n_classes, options, device, res)
        r["seconds"] = time.perf_counter() - t0
        results[p] = r
    heldout = heldout_scores(models, dataset, device)
    return {
        "timestamp": time.time(),
        "protocols": list(protocols),
        "settings": options.to_dict(),
        "device": str(device),
        "dataset": dataset.name,
        "n_images": len(dataset),
        "modality": getattr(dataset, "modality", "image"),
        "classes": list(dataset.class_names),
        "split": {"train": int(train_idx.numel()), "val": int(val_idx.numel()),
                  "stratified": True, "val_fraction": options.val_fraction,
                  "seed": options.seed},
        "chance": float(val_counts.max()) / max(1, int(val_idx.numel())),
        "feature_seconds": feature_seconds,
        "results": results,
        **({"heldout": heldout} if heldout else {}),
    }


@torch.no_grad()
def heldout_scores(models: dict[str, SSLMethod], dataset: DataSource,
                   device: torch.device) -> dict[str, dict[str, float]]:
    """Each model's ``heldout_metrics`` on the source's held-out split (a language model's
    bits per token, a masked model's accuracy), or {} when the source has no held-out
    split or the method scores none."""
    heldout = getattr(dataset, "heldout", None)
    if heldout is None or len(heldout) == 0:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, m in models.items():
        was = m.training
        m.eval()
        try:
            scores = m.heldout_metrics(heldout.to(device))
        finally:
            m.train(was)
        if scores:
            out[name] = {k: float(v) for k, v in scores.items()}
    return out


def evaluate_model(
    model: SSLMethod,
    dataset: DataSource,
    protocols: Iterable[str] = PROTOCOLS,
    options: EvalOptions | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a live model (e.g. mid-training) beside its random-init baseline.

    The baseline is built from ``model.cfg`` on the model's device; the model's mode
    (train / eval) is unchanged afterwards.
    """

    options = options or EvalOptions()
    options.validate()
    check_protocols(protocols)
    require_labels(dataset)
    cfg: Config = model.cfg
    device = next(model.parameters()).device
    name = resolve_backbone_name(cfg.backbone.name, device)
    calib = dataset.inputs[monitor_indices(len(dataset), cfg)]
    base = random_init_model(cfg, name, calib, device)
    return evaluate_models({"trained": model, "random_init": base}, dataset, protocols,
                           options, device=device, progress=progress)


def resolve_run(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A run folder from a path or a run id under ``runs_dir``."""

    p = Path(run).expanduser()
    if p.is_dir():
        return p
    base = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if (base / str(run)).is_dir() and str(run).strip():
        return base / str(run)
    raise UserInputError(f"run not found: {run} (neither a folder nor a run id in {base})")


def evaluate_run(
    run_dir: str | Path,
    protocols: Iterable[str] = PROTOCOLS,
    options: EvalOptions | None = None,
    *,
    dataset: DataSource | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a saved run's ``last.pt`` beside its random-init baseline.

    The dataset is the run's own (same data config, the trainer's cache; pass ``dataset``
    to skip loading). The result, with its settings and a timestamp, replaces
    ``summary.json``'s ``"evaluation"`` and is returned.
    """

    options = options or EvalOptions()
    options.validate()
    protocols = check_protocols(protocols)
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise UserInputError(f"run folder not found: {run.path}")
    if not run.config_path.is_file():
        raise UserInputError(f"not a run folder (no config.toml): {run.path}")
    if not run.last_checkpoint.is_file():
        raise UserInputError(f"no checkpoint in {run.path} (checkpoints/last.pt is missing; "
                             "train or resume the run first)")
    cfg = load_toml(run.config_path)
    device = pick_device(options.device)
    if dataset is None:
        from engine.registry import get_method_info

        dataset = load_configured(cfg.data, cache_dir,
                                  modality=get_method_info(cfg.method_name).modality)
    require_labels(dataset)
    say = progress or (lambda _msg: None)
    say("loading the checkpoint")
    trained, backbone_name, step = load_run_model(run, cfg, device)
    calib = dataset.inputs[monitor_indices(len(dataset), cfg)]
    baseline = random_init_model(cfg, backbone_name, calib, device)
    ev = evaluate_models({"trained": trained, "random_init": baseline}, dataset, protocols,
                         options, device=device, resolution=cfg.data.resolution,
                         progress=progress)
    ev = {"run_id": run.id, "method": cfg.method_name, "backbone": backbone_name,
          "checkpoint_step": step, **ev}
    run.update_summary(evaluation=ev)
    return ev
