"""Evaluation of a trained encoder beside its random-init baseline.

Self-supervised features are judged by how well labels can be read from them. Every number
here is reported twice: for the trained encoder and for the same architecture freshly
initialised with the run's seed (BatchNorm statistics calibrated as the trainer does),
because a random conv net already gives far-above-chance features on simple images and
only the difference measures what training learned.

Protocols (all on backbone features, ``model.embed`` of :func:`eval_transform`'ed images):

* ``knn``: weighted kNN of Wu et al. 2018 ("Unsupervised Feature Learning via
  Non-Parametric Instance Discrimination") as run by DINO's ``eval_knn`` (Caron et al.
  2021): cosine similarity, the k nearest training images vote with weight
  ``exp(sim / T)``. The bank is the training split, the queries the validation split
  (or, with ``knn_leave_one_out``, every image against all others).
* ``linear``: the linear evaluation protocol (Zhang et al. 2016, "Colorful Image
  Colorization"; Chen et al. 2020, SimCLR): a multinomial logistic regression on frozen,
  standardised features, trained full-batch with L-BFGS and an L2 penalty, as SimCLR's
  transfer experiments do.
* ``fewshot``: n labelled images per class (n = 1, 5, 10) drawn at random, every other
  image classified by cosine similarity to the class prototypes (mean of the normalised
  support features; Snell et al. 2017), features centred and L2-normalised first
  (SimpleShot's CL2N, Wang et al. 2019). With one shot this is cosine 1-NN.
* ``finetune``: backbone + linear head trained end to end for a fixed number of steps on
  the training split with light augmentation, measured on the validation split.

The train/validation split is stratified (``val_fraction`` of each class, at least one
image of every class with two or more) and fixed by ``seed``, so the trained encoder and
the baseline are measured on exactly the same images.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.augment import ViewAugment, eval_transform
from engine.config import AugmentConfig, Config, check, coerce, field_specs, load_toml, param
from engine.data import ImageDataset, load_configured
from engine.errors import ConfigError, UserInputError
from engine.methods._base import SSLMethod
from engine.runs import RunFolder

PROTOCOLS = ("knn", "linear", "fewshot", "finetune")
PROTOCOL_TEXT = {
    "knn": "weighted kNN",
    "linear": "linear probe",
    "fewshot": "few-shot",
    "finetune": "fine-tune",
}
MODELS = ("trained", "random_init")

#: light augmentation for fine-tuning: random resized crop of 80-100 % of the area and a
#: horizontal flip, no colour changes (enough to curb overfitting in a few hundred steps)
FINETUNE_AUGMENT = AugmentConfig(crop_min_scale=0.8, crop_max_scale=1.0, flip_prob=0.5,
                                 jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)

Progress = Callable[[str], None]


@dataclass
class EvalOptions:
    """Settings of every protocol; declared like the run config so errors name the option."""

    val_fraction: float = param(0.2, "Fraction of each class held out for validation.",
                                min=0.05, max=0.5)
    seed: int = param(0, "Seeds the split, the few-shot draws and fine-tuning.", min=0,
                      max=2**31 - 1)
    knn_k: int = param(20, "Neighbours that vote in weighted kNN.", min=1, max=1000)
    knn_temperature: float = param(0.07, "Temperature of the kNN vote weights exp(sim / T).",
                                   min=0.001, max=10.0)
    knn_leave_one_out: bool = param(False, "kNN over all images, each query left out of the "
                                    "bank, instead of training bank / validation queries.")
    linear_max_iter: int = param(100, "L-BFGS iterations of the linear probe.", min=1,
                                 max=10_000)
    linear_weight_decay: float = param(1e-3, "L2 penalty (wd/2 * |W|^2) of the linear probe.",
                                       min=0.0, max=10.0)
    fewshot_shots: tuple[int, ...] = field(
        default=(1, 5, 10),
        metadata={"help": "Labelled images per class (each 1-1000).", "min": 1, "max": 1000})
    fewshot_draws: int = param(10, "Random support draws averaged per shot count.", min=1,
                               max=1000)
    finetune_steps: int = param(100, "Fine-tuning steps (optimizer updates).", min=1,
                                max=100_000)
    finetune_batch_size: int = param(128, "Images per fine-tuning step.", min=2, max=4096)
    finetune_lr: float = param(1e-3, "Peak AdamW learning rate of fine-tuning.", min=0.0,
                               max=1.0, min_exclusive=True)
    finetune_weight_decay: float = param(1e-4, "AdamW weight decay of fine-tuning.", min=0.0,
                                         max=1.0)
    batch_size: int = param(512, "Images per forward pass when extracting features.", min=1,
                            max=8192)
    device: str = param("auto", "Device; 'auto' picks CUDA, then MPS, then CPU.",
                        choices=("auto", "cpu", "cuda", "mps"))

    def validate(self) -> None:
        """Coerce each option to its type (so CLI strings work) and check its range; raise
        :class:`ConfigError` naming the option and what is allowed."""
        for spec in field_specs(self, "eval"):
            value = getattr(self, spec.name)
            if spec.name == "fewshot_shots":
                self.fewshot_shots = _coerce_shots(value)
                continue
            value = coerce(spec, value)
            check(spec, value)
            setattr(self, spec.name, value)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fewshot_shots"] = list(self.fewshot_shots)
        return d


def _coerce_shots(shots: Any) -> tuple[int, ...]:
    bad = ConfigError(f"eval.fewshot_shots = {shots!r} is out of range (allowed: one or more "
                      "whole numbers, each 1 ≤ value ≤ 1000)")
    if isinstance(shots, (int, str)) and not isinstance(shots, bool):
        shots = [shots]
    if not isinstance(shots, (tuple, list)) or not shots:
        raise bad
    out = []
    for s in shots:
        if isinstance(s, bool) or (isinstance(s, float) and not s.is_integer()):
            raise bad
        try:
            n = int(str(s).strip()) if isinstance(s, str) else int(s)
        except (TypeError, ValueError):
            raise bad from None
        if not 1 <= n <= 1000:
            raise bad
        out.append(n)
    return tuple(sorted(set(out)))


def check_protocols(protocols: Iterable[str]) -> tuple[str, ...]:
    """The requested protocols in canonical order; unknown names raise UserInputError."""
    wanted = list(protocols)
    bad = [p for p in wanted if p not in PROTOCOLS]
    if bad:
        raise UserInputError(f"unknown protocol {bad[0]!r} (allowed: {', '.join(PROTOCOLS)})")
    if not wanted:
        raise UserInputError(f"no protocol given (allowed: {', '.join(PROTOCOLS)})")
    return tuple(p for p in PROTOCOLS if p in wanted)


def require_labels(ds: ImageDataset) -> torch.Tensor:
    """The labels, or UserInputError saying what evaluation needs."""
    k = len(ds.class_names)
    if ds.labels is None or k < 2:
        found = "no labels" if ds.labels is None else f"only one class ({ds.class_names[0]})"
        raise UserInputError(
            f"dataset {ds.name} has {found}: evaluation needs at least two classes; put "
            "images in one subfolder per class")
    return ds.labels


# --------------------------------------------------------------------------- features


@torch.no_grad()
def extract_features(
    model: SSLMethod,
    images: torch.Tensor,
    device: torch.device | str,
    batch: int = 512,
    resolution: int | None = None,
) -> torch.Tensor:
    """Backbone features (N, D), float32 on the CPU: ``model.embed`` in eval mode.

    Eval mode so BatchNorm uses its running statistics and each image's features do not
    depend on the rest of its batch; the model's mode is restored afterwards.
    """
    device = torch.device(device)
    if resolution is None:
        cfg = getattr(model, "cfg", None)
        resolution = cfg.data.resolution if cfg is not None else int(images.shape[-1])
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, images.shape[0], batch):
            x = eval_transform(images[i : i + batch].to(device), resolution)
            out.append(model.embed(x).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, int(getattr(model, "feature_dim", 0)))
    return torch.cat(out)


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices (sorted): ``round(n_c * val_fraction)`` of each class
    to validation, at least one and never all of a class with two or more images (a class
    with one image stays in training). Deterministic for a seed."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(int(labels.max()) + 1 if labels.numel() else 0):
        idx = (labels == c).nonzero().flatten()
        n = idx.numel()
        if n == 0:
            continue
        idx = idx[torch.randperm(n, generator=gen)]
        n_val = 0 if n < 2 else min(n - 1, max(1, round(n * val_fraction)))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    def cat(xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs).sort().values if xs else torch.empty(0, dtype=torch.long)

    return cat(train), cat(val)


# --------------------------------------------------------------------------- protocols


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
    leave_one_out: bool = False,
) -> torch.Tensor:
    """Weighted kNN labels (Wu et al. 2018; DINO's ``eval_knn``): the k most cosine-similar
    bank images vote with weight ``exp(sim / T)``. With ``leave_one_out`` the queries are
    the bank itself and each is left out of its own neighbours."""
    b = F.normalize(bank.float(), dim=1)
    q = F.normalize(queries.float(), dim=1)
    y = bank_labels.long()
    n_classes = int(y.max()) + 1
    k = min(k, b.shape[0] - int(leave_one_out))
    preds = []
    for s in range(0, q.shape[0], chunk):
        sim = q[s : s + chunk] @ b.t()
        if leave_one_out:
            rows = torch.arange(sim.shape[0])
            sim[rows, rows + s] = -math.inf
        top_sim, top_idx = sim.topk(k, dim=1)
        # exp((sim - max) / T): the same vote shares as exp(sim / T), without overflow
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
        votes = torch.zeros(top_sim.shape[0], n_classes)
        votes.scatter_add_(1, y[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def knn_eval(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    val_f: torch.Tensor,
    val_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> dict[str, float]:
    """Top-1 of weighted kNN with the training split as bank and validation as queries."""
    pred = knn_predict(train_f, train_y, val_f, k, temperature)
    return {"accuracy": _acc(pred, val_y)}


def linear_probe(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    val_f: torch.Tensor,
    val_y: torch.Tensor,
    n_classes: int,
    weight_decay: float = 1e-3,
    max_iter: int = 100,
) -> dict[str, float]:
    """Linear evaluation (Zhang et al. 2016; SimCLR): multinomial logistic regression on
    frozen features standardised with the training split's mean and std, minimising mean
    cross-entropy + ``wd/2 * |W|^2`` full-batch with L-BFGS (strong Wolfe line search)
    from zero weights, so the result is deterministic. Returns validation and training
    top-1."""
    mean = train_f.mean(0)
    std = train_f.std(0, unbiased=False).clamp_min(1e-6)
    xt = ((train_f - mean) / std).double()
    xv = ((val_f - mean) / std).double()
    w = torch.zeros(xt.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-7,
                            tolerance_change=1e-10)
    y = train_y.long()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w + b, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return {"accuracy": _acc((xv @ w + b).argmax(1), val_y),
                "train_accuracy": _acc((xt @ w + b).argmax(1), y)}


def few_shot_draw(
    labels: torch.Tensor, shots: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random draw: ``shots`` support indices per class and every other index as
    queries (disjoint by construction). Each class needs more than ``shots`` images."""
    support = []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().flatten()
        if idx.numel() == 0:
            continue
        if idx.numel() <= shots:
            raise ValueError(f"class {c} has {idx.numel()} images, {shots} shots need "
                             f"{shots + 1}")
        support.append(idx[torch.randperm(idx.numel(), generator=generator)[:shots]])
    s = torch.cat(support).sort().values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[s] = False
    return s, mask.nonzero().flatten()


def few_shot(
    features: torch.Tensor,
    labels: torch.Tensor,
    shots: Sequence[int] = (1, 5, 10),
    draws: int = 10,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Nearest-prototype few-shot accuracy, mean and sample std over ``draws`` draws.

    Features are centred on the mean of all images (no labels used) and L2-normalised
    (SimpleShot's CL2N, Wang et al. 2019); each class's prototype is its normalised mean
    support feature (Snell et al. 2017) and a query takes the label of the most cosine-
    similar prototype. A shot count that some class cannot supply (it needs shots + 1
    images) is reported with ``mean: None`` and the reason.
    """
    labels = labels.long()
    f = F.normalize(features.double() - features.double().mean(0), dim=1)
    n_classes = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=n_classes)
    present = (counts > 0).nonzero().flatten()
    out: dict[str, dict[str, Any]] = {}
    for n in shots:
        short = [int(c) for c in present if counts[c] <= n]
        if short:
            c = short[0]
            name = class_names[c] if class_names is not None else str(c)
            out[str(n)] = {"mean": None, "std": None, "accuracies": [],
                           "skipped": f"class {name} has {int(counts[c])} images; {n}-shot "
                                      f"needs {n + 1}"}
            continue
        gen = torch.Generator().manual_seed(seed * 1000 + n)
        accs = []
        for _ in range(draws):
            s, q = few_shot_draw(labels, n, gen)
            protos = torch.zeros(n_classes, f.shape[1], dtype=f.dtype)
            protos.index_add_(0, labels[s], f[s])
            protos = F.normalize(protos, dim=1)
            pred = present[(f[q] @ protos[present].t()).argmax(1)]
            accs.append(_acc(pred, labels[q]))
        t = torch.tensor(accs, dtype=torch.float64)
        out[str(n)] = {"mean": float(t.mean()),
                       "std": float(t.std()) if len(accs) > 1 else 0.0,
                       "accuracies": accs}
    return out


def fine_tune(
    model: SSLMethod,
    images: torch.Tensor,
    labels: torch.Tensor,
    train_idx: torch.Tensor,
    val_idx: torch.Tensor,
    n_classes: int,
    options: EvalOptions,
    device: torch.device | str,
    resolution: int | None = None,
) -> dict[str, float]:
    """Train a copy of the encoder plus a linear head end to end; the model is untouched.

    Recipe: AdamW (lr ``finetune_lr``, linear warm-up over the first 10 % of steps, then
    cosine decay to 0; weight decay on weights only) for ``finetune_steps`` steps of
    ``finetune_batch_size`` training images (reshuffled each epoch), cross-entropy,
    BatchNorm in train mode, views from :data:`FINETUNE_AUGMENT`. The head is initialised
    and batches drawn from ``options.seed``. Returns validation and training top-1 in
    eval mode on un-augmented images, and the mean loss of the last 10 steps.
    """
    device = torch.device(device)
    res = resolution if resolution is not None else model.cfg.data.resolution
    net = copy.deepcopy(model).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        head = torch.nn.Linear(int(net.feature_dim), n_classes)
    head = head.to(device)
    params = [p for p in [*net.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim > 1],
          "weight_decay": options.finetune_weight_decay},
         {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
        lr=options.finetune_lr)
    augment = ViewAugment(FINETUNE_AUGMENT, res)
    gen = torch.Generator().manual_seed(options.seed + 1)
    y_all = labels.long()
    bs = min(options.finetune_batch_size, train_idx.numel())
    if bs < 2:
        raise UserInputError("fine-tuning needs at least 2 training images")
    total = options.finetune_steps
    warm = max(1, total // 10)
    order, pos = train_idx[torch.randperm(train_idx.numel(), generator=gen)], 0
    losses: list[float] = []
    net.train()
    head.train()
    for step in range(total):
        if pos + bs > order.numel():
            order, pos = train_idx[torch.randperm(train_idx.numel(), generator=gen)], 0
        idx = order[pos : pos + bs]
        pos += bs
        lr = options.finetune_lr * ((step + 1) / warm if step < warm else
                                    0.5 * (1 + math.cos(math.pi * (step - warm) /
                                                        max(1, total - warm))))
        for g in opt.param_groups:
            g["lr"] = lr
        x = augment(images[idx].to(device), gen)
        loss = F.cross_entropy(head(net.embed(x)), y_all[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval()
    head.eval()

    def accuracy(idx: torch.Tensor) -> float:
        f = extract_features(net, images[idx], device, options.batch_size, res)
        with torch.no_grad():
            pred = head(f.to(device)).argmax(1).cpu()
        return _acc(pred, y_all[idx])

    tail = losses[-10:]
    return {"accuracy": accuracy(val_idx), "train_accuracy": accuracy(train_idx),
            "final_loss": sum(tail) / len(tail)}


def _acc(pred: torch.Tensor, y: torch.Tensor) -> float:
    if y.numel() == 0:
        return float("nan")
    return float((pred.cpu() == y.cpu()).double().mean())


# --------------------------------------------------------------------------- models


def random_init_model(
    cfg: Config,
    backbone_name: str,
    calibration_images: torch.Tensor,
    device: torch.device | str,
) -> SSLMethod:
    """The run's architecture freshly initialised with ``cfg.run.seed``: the weights the
    trainer started from, BatchNorm statistics calibrated on ``calibration_images`` (the
    monitor subset) with the trainer's own :func:`~engine.train.calibrate_batchnorm`. The
    global RNG is left as it was."""
    from engine.train import build_model, calibrate_batchnorm

    device = torch.device(device)
    c = copy.deepcopy(cfg)
    c.backbone.name = backbone_name  # the name the run resolved 'auto' to
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model, _ = build_model(c, torch.device("cpu"))
    model = model.to(device)
    calibrate_batchnorm(model, calibration_images, device, cfg.data.resolution)
    return model.eval()


def load_run_model(run: RunFolder, cfg: Config, device: torch.device | str
                   ) -> tuple[SSLMethod, str, int]:
    """The run's trained model from ``checkpoints/last.pt``, its backbone name and step."""
    from engine.backbones import resolve_backbone_name
    from engine.train import build_model

    device = torch.device(device)
    try:
        ckpt = torch.load(run.last_checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which file
        raise UserInputError(f"cannot read checkpoint {run.last_checkpoint}: {e}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserInputError(f"{run.last_checkpoint} is not a run checkpoint")
    name = str(ckpt.get("backbone") or resolve_backbone_name(cfg.backbone.name, device))
    c = copy.deepcopy(cfg)
    c.backbone.name = name
    model, _ = build_model(c, torch.device("cpu"))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), name, int(ckpt.get("step", 0))


# --------------------------------------------------------------------------- drivers


def evaluate_models(
    models: dict[str, SSLMethod],
    dataset: ImageDataset,
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
    """
    options = options or EvalOptions()
    options.validate()
    protocols = check_protocols(protocols)
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
    if set(protocols) - {"finetune"}:
        for name, m in models.items():
            say(f"extracting features ({name.replace('_', ' ')})")
            feats[name] = extract_features(m, dataset.images, device, options.batch_size, res)
    feature_seconds = time.perf_counter() - t0
    val_counts = torch.bincount(labels[val_idx], minlength=n_classes)
    results: dict[str, Any] = {}
    for p in protocols:
        t0 = time.perf_counter()
        r: dict[str, Any] = {}
        for name, m in models.items():
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
            else:
                r[name] = fine_tune(m, dataset.images, labels, train_idx, val_idx,
                                    n_classes, options, device, res)
        r["seconds"] = time.perf_counter() - t0
        results[p] = r
    return {
        "timestamp": time.time(),
        "protocols": list(protocols),
        "settings": options.to_dict(),
        "device": str(device),
        "dataset": dataset.name,
        "n_images": len(dataset),
        "classes": list(dataset.class_names),
        "split": {"train": int(train_idx.numel()), "val": int(val_idx.numel()),
                  "stratified": True, "val_fraction": options.val_fraction,
                  "seed": options.seed},
        "chance": float(val_counts.max()) / max(1, int(val_idx.numel())),
        "feature_seconds": feature_seconds,
        "results": results,
    }


def evaluate_model(
    model: SSLMethod,
    dataset: ImageDataset,
    protocols: Iterable[str] = PROTOCOLS,
    options: EvalOptions | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a live model (e.g. mid-training) beside its random-init baseline.

    The baseline is built from ``model.cfg`` on the model's device; the model's mode
    (train / eval) is unchanged afterwards.
    """
    from engine.backbones import resolve_backbone_name
    from engine.train import monitor_indices

    options = options or EvalOptions()
    options.validate()
    check_protocols(protocols)
    require_labels(dataset)
    cfg: Config = model.cfg
    device = next(model.parameters()).device
    name = resolve_backbone_name(cfg.backbone.name, device)
    calib = dataset.images[monitor_indices(len(dataset), cfg)]
    base = random_init_model(cfg, name, calib, device)
    return evaluate_models({"trained": model, "random_init": base}, dataset, protocols,
                           options, device=device, progress=progress)


def resolve_run(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A run folder from a path or a run id under ``runs_dir``."""
    from engine.runs import default_runs_dir

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
    dataset: ImageDataset | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a saved run's ``last.pt`` beside its random-init baseline.

    The dataset is the run's own (same data config, the trainer's cache; pass ``dataset``
    to skip loading). The result, with its settings and a timestamp, replaces
    ``summary.json``'s ``"evaluation"`` and is returned.
    """
    from engine.train import monitor_indices, pick_device

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
        d = cfg.data
        dataset = load_configured(d, cache_dir)
    require_labels(dataset)
    say = progress or (lambda _msg: None)
    say("loading the checkpoint")
    trained, backbone_name, step = load_run_model(run, cfg, device)
    calib = dataset.images[monitor_indices(len(dataset), cfg)]
    baseline = random_init_model(cfg, backbone_name, calib, device)
    ev = evaluate_models({"trained": trained, "random_init": baseline}, dataset, protocols,
                         options, device=device, resolution=cfg.data.resolution,
                         progress=progress)
    ev = {"run_id": run.id, "method": cfg.method_name, "backbone": backbone_name,
          "checkpoint_step": step, **ev}
    run.update_summary(evaluation=ev)
    return ev


def table_rows(ev: dict[str, Any]) -> list[tuple[str, str, str, str, float | None]]:
    """(protocol, trained, random init, difference, seconds) per line, as text."""
    s = ev["settings"]
    rows: list[tuple[str, str, str, str, float | None]] = []

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def diff(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{100 * (a - b):+.1f} pt"

    for p, r in ev["results"].items():
        tr, rnd, secs = r.get("trained", {}), r.get("random_init", {}), r.get("seconds")
        if p == "fewshot":
            for n in s["fewshot_shots"]:
                a, b = tr.get(str(n), {}), rnd.get(str(n), {})

                def ms(d: dict[str, Any]) -> str:
                    if d.get("mean") is None:
                        return "-"
                    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}%"

                rows.append((f"few-shot {n}-shot ({s['fewshot_draws']} draws)", ms(a), ms(b),
                             diff(a.get("mean"), b.get("mean")), secs))
                secs = None
            continue
        if p == "knn":
            how = "leave-one-out" if s["knn_leave_one_out"] else "val"
            name = f"weighted kNN (k={s['knn_k']}, T={s['knn_temperature']:g}, {how})"
        elif p == "linear":
            name = "linear probe (val top-1)"
        else:
            name = f"fine-tune ({s['finetune_steps']} steps, val top-1)"
        a, b = tr.get("accuracy"), rnd.get("accuracy")
        rows.append((name, pct(a), pct(b), diff(a, b), secs))
    return rows


def format_table(ev: dict[str, Any]) -> str:
    """The evaluation as a plain-text table (what ``python -m engine eval`` prints)."""
    sp = ev["split"]
    head = (f"{ev.get('run_id', 'model')}: {ev.get('method', '?')} on {ev['dataset']}"
            + (f", step {ev['checkpoint_step']}" if "checkpoint_step" in ev else "")
            + f"; {ev['n_images']} images, {len(ev['classes'])} classes, split "
            f"{sp['train']} train / {sp['val']} val (stratified, seed {sp['seed']}); "
            f"majority class {100 * ev['chance']:.1f}% of val")
    rows = table_rows(ev)
    w = max([len(r[0]) for r in rows] + [8])
    lines = [head, f"{'protocol':<{w}}  {'trained':>14}  {'random init':>14}  "
             f"{'difference':>10}  {'time':>7}"]
    for name, a, b, d, secs in rows:
        t = "" if secs is None else f"{secs:.1f}s"
        lines.append(f"{name:<{w}}  {a:>14}  {b:>14}  {d:>10}  {t:>7}")
    lines.append(f"(feature extraction {ev['feature_seconds']:.1f}s, device {ev['device']})")
    return "\n".join(lines)
