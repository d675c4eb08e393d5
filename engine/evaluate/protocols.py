"""The evaluation protocols, each a function of features (or of a model) and labels.

See :mod:`engine.evaluate` for what each measures and whom it follows.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from engine.data.source import Inputs
from engine.errors import UserInputError
from engine.evaluate.options import EvalOptions
from engine.knn import knn_predict
from engine.methods._base import SSLMethod
from engine.model import extract_features, lr_at, param_groups, set_lr
from engine.retrieval import chance_recall, prompts, recall_at_k, zero_shot_accuracy

#: the recall@k of the retrieval protocol (CLIP's Flickr30k and MSCOCO tables)
RECALL_KS = (1, 5, 10)


def knn_eval(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    val_f: torch.Tensor,
    val_y: torch.Tensor,
    k: int,
    temperature: float,
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
    images: Inputs,
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
    BatchNorm in train mode, inputs from the method's ``finetune_augment`` (for images
    :data:`engine.augment.FINETUNE_AUGMENT`; none: its ``eval_inputs``). The head is initialised
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
    named = [*net.named_parameters(), *(("head." + n, p) for n, p in head.named_parameters())]
    opt = torch.optim.AdamW(param_groups(named, options.finetune_weight_decay),
                            lr=options.finetune_lr)
    augment = net.finetune_augment()
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
        set_lr(opt, lr_at(step, options.finetune_lr, warm, total))
        batch: Any = images[idx].to(device)  # the method's augment reads its inputs
        x = augment(batch, gen) if augment is not None else net.eval_inputs(batch, res)
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


@torch.no_grad()
def zero_shot(
    model: SSLMethod,
    image_emb: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    templates: Sequence[str],
) -> dict[str, Any]:
    """Zero-shot top-1 of images' joint-space embeddings ``(N, E)``: every class name
    put into every template, the prompts embedded by the model's text tower and averaged
    per class (CLIP's prompt ensembling, :func:`engine.retrieval.zero_shot_accuracy`).
    No label is used to build the classifier; chance is ``1 / C``."""
    c, t = len(class_names), len(templates)
    was = model.training
    model.eval()
    try:
        ids = model.encode_prompts(prompts(class_names, templates))  # type: ignore[operator]
        classes = model.embed_texts(ids).float().cpu().view(c, t, -1)  # type: ignore[operator]
    finally:
        model.train(was)
    return {"accuracy": zero_shot_accuracy(image_emb, classes, labels),
            "chance": 1.0 / c, "templates": t}


def retrieval(image_emb: torch.Tensor, text_emb: torch.Tensor,
              ks: Sequence[int] = RECALL_KS) -> dict[str, Any]:
    """Image-to-text and text-to-image recall@k of N pairs' joint-space embeddings (pair
    ``i``'s caption is the match of image ``i``; ties broken at random in expectation,
    :func:`engine.retrieval.recall_at_k`), beside chance ``k / N``."""
    n = int(image_emb.shape[0])
    out: dict[str, Any] = dict(recall_at_k(image_emb.float() @ text_emb.float().t(), ks))
    out.update({f"recall_chance_r{k}": chance_recall(n, k) for k in ks})
    out["pairs"] = n
    return out


def _acc(pred: torch.Tensor, y: torch.Tensor) -> float:
    if y.numel() == 0:
        return float("nan")
    return float((pred.cpu() == y.cpu()).double().mean())
