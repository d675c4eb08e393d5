"""Cross-modal evaluation of a joint image-text embedding: retrieval recall and zero-shot
classification from prompts (Radford et al. 2021, CLIP: section 3.1 and its zero-shot
retrieval tables on Flickr30k and MSCOCO).

Pure functions of embeddings and similarity matrices, so the monitor, the Evaluate tab
and ``python -m engine eval`` score a CLIP model with the same code, and the tests can
check them on constructed embeddings with known answers.

- :func:`recall_at_k`: image-to-text and text-to-image recall@k of a similarity matrix
  (the protocol of CLIP's Flickr30k and MSCOCO retrieval results), with several
  captions per image if given; :func:`chance_recall` is what a
  random ranking scores.
- :func:`zero_shot_accuracy`: every class name turned into captions by templates
  (:func:`prompts`, :data:`DEFAULT_TEMPLATES`), their text embeddings averaged per class
  and renormalised (CLIP's prompt ensembling, section 3.1.4), each image given the class
  whose embedding is nearest; chance is one over the number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from engine.errors import ConfigError

#: what separates prompt templates written as one string (a bar: commas, semicolons and
#: full stops are common inside a prompt)
TEMPLATE_SEPARATOR = "|"

#: CLIP-style prompt templates for the zero-shot classifier (``{}`` is the class name);
#: the first is CLIP's default prompt (section 3.1.4). Callers may pass their own.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a {} shape.",
    "a picture of a {}.",
    "a drawing of a {}.",
)


def prompts(class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
            ) -> list[str]:
    """Every template filled with every class name, class-major: the prompts of class
    ``c`` are items ``c * T .. c * T + T - 1`` (so their embeddings reshape to
    ``(C, T, D)`` for :func:`zero_shot_accuracy`)."""
    if not templates:
        raise ValueError("no prompt templates")
    return [t.format(name) for name in class_names for t in templates]


def chance_recall(n: int, k: int) -> float:
    """Recall@k of a random ranking of ``n`` candidates with one match each: k / n."""
    if n <= 0:
        raise ValueError(f"need at least one candidate, got {n}")
    return min(1.0, k / n)


def _expected_hit(sim: torch.Tensor, pos: torch.Tensor, is_pos: torch.Tensor, k: int
                  ) -> torch.Tensor:
    """For each row, the probability that a positive is among the top ``k`` when ties
    are broken at random: ``g`` negatives score above the best positive and ``t`` tie
    with it, so the positive sits uniformly at rank ``g .. g + t``."""
    neg = ~is_pos
    greater = ((sim > pos[:, None]) & neg).sum(1).double()
    ties = ((sim == pos[:, None]) & neg).sum(1).double()
    return ((k - greater) / (ties + 1)).clamp(0.0, 1.0)


def recall_at_k(sim: torch.Tensor, ks: Sequence[int] = (1, 5, 10),
                targets: torch.Tensor | None = None) -> dict[str, float]:
    """Retrieval recall of a similarity matrix ``sim`` ``(N_img, N_txt)``, ``sim[i, j]``
    the similarity of image ``i`` and text ``j``.

    ``targets`` ``(N_txt,)`` is the image of each text (default: text ``j`` belongs to
    image ``j``, which needs a square ``sim``); with several captions per image, an image
    is retrieved correctly when any of its captions is in its top k (CLIP's MSCOCO
    protocol, 5 captions per image). Ties count as broken at random, in expectation, so a
    constant matrix (a collapsed model) scores :func:`chance_recall`, not 1.

    Returns ``image_to_text_r{k}`` and ``text_to_image_r{k}`` for each k in ``ks``,
    fractions in [0, 1].
    """
    if sim.ndim != 2:
        raise ValueError(f"expected a (N_img, N_txt) similarity matrix, got {tuple(sim.shape)}")
    sim = sim.detach().float()
    n_img, n_txt = sim.shape
    if targets is None:
        if n_img != n_txt:
            raise ValueError(f"a {n_img} x {n_txt} similarity matrix needs the targets "
                             "(the image of each text)")
        targets = torch.arange(n_txt, device=sim.device)
    targets = targets.to(sim.device).long()
    if targets.shape != (n_txt,):
        raise ValueError(f"targets must have one image index per text ({n_txt}), got "
                         f"{tuple(targets.shape)}")
    owns = targets[None, :] == torch.arange(n_img, device=sim.device)[:, None]  # (I, T)
    if not bool(owns.any(1).all()):
        raise ValueError("every image needs at least one text among the targets")
    best_text = sim.masked_fill(~owns, float("-inf")).max(1).values  # (I,)
    text_sims = sim.t()  # (T, I): each text's similarity to every image
    own_image = text_sims.gather(1, targets[:, None])[:, 0]
    out: dict[str, float] = {}
    for k in ks:
        out[f"image_to_text_r{k}"] = float(_expected_hit(sim, best_text, owns, k).mean())
    for k in ks:
        out[f"text_to_image_r{k}"] = float(
            _expected_hit(text_sims, own_image, owns.t(), k).mean())
    return out


def zero_shot_classifier(class_text_emb: torch.Tensor) -> torch.Tensor:
    """The ``(C, D)`` unit vectors of a zero-shot classifier: each class's text
    embedding, or with ``(C, T, D)`` (T templates per class) the mean of its templates'
    normalised embeddings, renormalised (CLIP's prompt ensembling, section 3.1.4)."""
    e = F.normalize(class_text_emb.detach().float(), dim=-1)
    if e.ndim == 3:
        e = F.normalize(e.mean(1), dim=-1)
    if e.ndim != 2:
        raise ValueError("expected class text embeddings (C, D) or (C, T, D), got "
                         f"{tuple(class_text_emb.shape)}")
    return e


def zero_shot_predict(image_emb: torch.Tensor, class_text_emb: torch.Tensor
                      ) -> torch.Tensor:
    """The class of each image ``(N,)``: the largest cosine similarity between its
    embedding and the classes' (:func:`zero_shot_classifier`)."""
    w = zero_shot_classifier(class_text_emb).to(image_emb.device)
    return (F.normalize(image_emb.detach().float(), dim=-1) @ w.t()).argmax(1)


def zero_shot_accuracy(image_emb: torch.Tensor, class_text_emb: torch.Tensor,
                       labels: torch.Tensor) -> float:
    """Zero-shot classification accuracy of images ``(N, D)`` with labels ``(N,)``
    against class text embeddings ``(C, D)`` or ``(C, T, D)``; chance is ``1 / C``."""
    pred = zero_shot_predict(image_emb, class_text_emb)
    if labels.shape != pred.shape:
        raise ValueError(f"{tuple(labels.shape)} labels for {pred.shape[0]} images")
    return float((pred.cpu() == labels.cpu().long()).float().mean())


def rank_by_similarity(query: torch.Tensor, items: torch.Tensor, k: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``items`` (N, D) nearest to ``query`` (D,) by cosine similarity,
    best first: their indices and similarities (a typed sentence against images)."""
    q = torch.nn.functional.normalize(query.float().flatten(), dim=0)
    z = torch.nn.functional.normalize(items.float(), dim=1)
    sims = z @ q
    top = torch.topk(sims, min(int(k), sims.shape[0]))
    return top.indices, top.values


def parse_templates(text: str | Sequence[str], field: str = "templates") -> tuple[str, ...]:
    """Zero-shot templates from ``'a photo of a {}.|a {} shape.'`` (or a list of them),
    each stripped, empty pieces dropped. Each must hold one ``{}`` where the class name
    goes and nothing else ``str.format`` reads; otherwise :class:`ConfigError` naming
    ``field`` (the setting they came from) and the template."""
    pieces = text.split(TEMPLATE_SEPARATOR) if isinstance(text, str) else list(text)
    out = tuple(str(t).strip() for t in pieces if str(t).strip())
    if not out:
        raise ConfigError(f"{field} = {text!r} has no template (allowed: "
                          f"templates separated by {TEMPLATE_SEPARATOR!r}, each with '{{}}' "
                          "for the class name)")
    for t in out:
        ok = "{}" in t
        if ok:
            try:
                ok = t.format("x") == t.replace("{}", "x", 1)
            except (IndexError, KeyError, ValueError):
                ok = False
        if not ok:
            raise ConfigError(f"{field}: template {t!r} needs exactly one "
                              "'{}' where the class name goes (and no other braces); "
                              f"separate templates with {TEMPLATE_SEPARATOR!r}")
    return out
