"""SSL losses as pure functions of tensors, each citing its paper.

Hyperparameters (temperatures, weights, margins) have no defaults here: the method
passes its config's values, so no default can disagree with the one the form shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data.tokens import PAD


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised temperature-scaled cross entropy (SimCLR; Chen et al. 2020, eq. 1).

    For 2N embeddings of N positive pairs, with cosine similarity s and temperature t,
    ``l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)``, averaged over all 2N
    anchors. Each anchor has one positive (its other view) and 2N - 2 negatives.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def nt_xent_shard(
    z1: torch.Tensor, z2: torch.Tensor, start: int, count: int, temperature: float
) -> torch.Tensor:
    """:func:`nt_xent`'s mean over the anchors of images ``start .. start + count - 1`` only,
    each still contrasted with all ``2N - 2`` negatives of the whole batch ``z1``, ``z2``.

    What one of several processes computes on the gathered batch: its own images' views as
    anchors against every process's embeddings, as SimCLR's cross-replica negatives (Chen
    et al. 2020, section 2.2; their TPU code offsets the labels by the replica's index
    times its batch). The mean over equal shards covering the batch is :func:`nt_xent`.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    idx = torch.arange(start, start + count, device=z.device)
    rows = torch.cat([idx, idx + n])  # this shard's anchors among the 2N rows
    sim = z[rows] @ z.t() / temperature
    sim[torch.arange(2 * count, device=z.device), rows] = float("-inf")  # no self-pairs
    targets = torch.cat([idx + n, idx])
    return F.cross_entropy(sim, targets)


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE with a queue of negatives (MoCo; He et al. 2020, eq. 1).

    Queries ``q`` (N, D), their positive keys ``k`` (N, D) and negative keys ``queue``
    (K, D) are L2-normalised here. Each query gets ``1 + K`` logits
    ``[q.k, q.queue_1, ..., q.queue_K] / t`` with the positive at index 0, and the loss is
    the cross-entropy to label 0: ``-log exp(q.k / t) / (exp(q.k / t) + sum_j
    exp(q.queue_j / t))``, averaged over the N queries. Gradients flow into ``q`` (and
    into ``k`` / ``queue`` only if the caller did not detach them; MoCo does).
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    queue = F.normalize(queue.float(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised mean squared error (Grill et al. 2020, eq. 2).

    ``||p/|p| - z/|z| ||^2 = 2 - 2 cos(p, z)``, averaged over the batch; 0 when the
    prediction points the same way as the target, 4 when opposite. The caller passes the
    target projection ``z`` already detached (computed by the EMA network).
    """
    return (2.0 - 2.0 * F.cosine_similarity(p.float(), z.float(), dim=1)).mean()


def simsiam_loss(p: torch.Tensor, z: torch.Tensor, stop_gradient: bool) -> torch.Tensor:
    """SimSiam's negative cosine similarity ``D(p, z) = -cos(p, stopgrad(z))``
    (Chen & He 2021, eq. 1 and 3), averaged over the batch; between -1 and 1.

    The method symmetrises it: ``D(p1, z2) / 2 + D(p2, z1) / 2``. With
    ``stop_gradient=False`` the gradient also flows into ``z`` (the ablation of the
    paper's Fig. 2, which collapses).
    """
    if stop_gradient:
        z = z.detach()
    return -F.cosine_similarity(p.float(), z.float(), dim=1).mean()


def triplet_margin(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """Triplet loss with a margin (FaceNet; Schroff et al. 2015, eq. 1-2).

    ``mean_i max(0, ||a_i - p_i||^2 - ||a_i - n_i||^2 + margin)`` with squared Euclidean
    distances of the embeddings as given (FaceNet L2-normalises them first, so each
    distance lies in [0, 4]). A triplet stops contributing once its negative is farther
    from the anchor than its positive by at least ``margin``.
    """
    a, p, n = anchor.float(), positive.float(), negative.float()
    d_pos = (a - p).pow(2).sum(dim=1)
    d_neg = (a - n).pow(2).sum(dim=1)
    return F.relu(d_pos - d_neg + margin).mean()


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambd: float, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Redundancy-reduction loss (Barlow Twins; Zbontar et al. 2021, eq. 1-2).

    Each view's ``(N, d)`` embeddings are standardised along the batch,
    ``zn = (z - mean_b z) / sqrt(var_b z + eps)`` (biased variance, as the paper's
    ``BatchNorm1d(affine=False)``), giving the ``d x d`` cross-correlation
    ``C = z1n^T z2n / N`` and
    ``L = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2``.
    The first (invariance) term makes each dimension agree across the views; the second
    (redundancy reduction) decorrelates the dimensions, which stops them all encoding the
    same thing. Returns ``(L, on_diag, off_diag)`` with the two sums unweighted.
    """
    n = z1.shape[0]
    a, b = z1.float(), z2.float()
    a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + eps)
    b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + eps)
    c = a.t() @ b / n
    diag = torch.diagonal(c)
    on_diag = (1.0 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    return on_diag + lambd * off_diag, on_diag, off_diag


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_w: float,
    var_w: float,
    cov_w: float,
    gamma: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Variance-invariance-covariance loss (VICReg; Bardes, Ponce, LeCun 2022, eq. 1-6).

    For two ``(N, d)`` batches of embeddings, as in the paper's reference code:

    * invariance ``s = mean_{n,j} (z1_nj - z2_nj)^2`` (the MSE);
    * variance ``v = [mean_j relu(gamma - sqrt(Var(z1_j) + eps))
      + mean_j relu(gamma - sqrt(Var(z2_j) + eps))] / 2`` (unbiased variance over the
      batch), a hinge keeping every dimension's std at least ``gamma``;
    * covariance ``c = sum_{i != j} Cov(z1)_ij^2 / d + sum_{i != j} Cov(z2)_ij^2 / d``
      with ``Cov(z) = (z - mean)^T (z - mean) / (N - 1)``, which decorrelates dimensions.

    ``L = sim_w * s + var_w * v + cov_w * c`` (paper: 25, 25, 1). Returns
    ``(L, s, v, c)`` with the three terms unweighted.
    """
    a, b = z1.float(), z2.float()
    n, d = a.shape
    invariance = F.mse_loss(a, b)

    def var_term(z: torch.Tensor) -> torch.Tensor:
        return F.relu(gamma - torch.sqrt(z.var(0) + eps)).mean()

    def cov_term(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(0)
        cov = zc.t() @ zc / (n - 1)
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d

    variance = (var_term(a) + var_term(b)) / 2
    covariance = cov_term(a) + cov_term(b)
    loss = sim_w * invariance + var_w * variance + cov_w * covariance
    return loss, invariance, variance, covariance


def dino_loss(
    student_out: list[torch.Tensor],
    teacher_out: list[torch.Tensor],
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Self-distillation cross-entropy (DINO; Caron et al. 2021, eq. 1-3 and Algorithm 1).

    The teacher's centred, sharpened distribution ``q_i = softmax((t_i - C) / teacher_temp)``
    of each global view ``i`` is the target for the student's
    ``log p_v = log_softmax(s_v / student_temp)`` of every *other* view ``v``:
    ``L = mean over pairs (i, v), v != i, of mean_b [-sum_k q_ik log p_vk]``.
    ``student_out`` lists every view (the global views first, in the same order as
    ``teacher_out``, then any local crops); ``teacher_out`` only the global views. The
    teacher's side is detached (stop-gradient).
    """
    qs = [F.softmax((t.detach().float() - center) / teacher_temp, dim=-1) for t in teacher_out]
    log_ps = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_out]
    total = student_out[0].new_zeros((), dtype=torch.float32)
    n_terms = 0
    for i, q in enumerate(qs):
        for v, log_p in enumerate(log_ps):
            if v == i:
                continue
            total = total + (-q * log_p).sum(dim=-1).mean()
            n_terms += 1
    if n_terms == 0:
        raise ValueError("dino_loss needs at least two views")
    return total / n_terms


@torch.no_grad()
def dino_center_update(
    center: torch.Tensor, teacher_out: torch.Tensor, momentum: float
) -> torch.Tensor:
    """DINO's centre update (Caron et al. 2021, eq. 4): ``C <- m C + (1 - m) mean_b t_b``.

    ``teacher_out`` is ``(B, K)`` (all global views of the batch stacked, or their mean as
    one row); the centre keeps its own shape (``(K,)`` or ``(1, K)``). Subtracting this
    running mean of the teacher's outputs stops one prototype dominating every image.
    """
    batch_center = teacher_out.detach().float().mean(dim=0)
    return center * momentum + batch_center.reshape(center.shape) * (1.0 - momentum)


# ----------------------------------------------------------------- reconstruction losses


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked pixels only.

    The context encoder's reconstruction loss (Pathak et al., "Context Encoders: Feature
    Learning by Inpainting", CVPR 2016, eq. 1), normalised by the masked area:
    ``L = sum(M * (pred - target)^2) / (C * sum(M))`` for ``(B, C, H, W)`` images and a
    mask ``M`` of shape ``(B, 1, H, W)`` (1 / True where the loss counts; any shape that
    broadcasts). Pixels outside the mask change neither the value nor the gradient; an
    empty mask gives 0.
    """
    m = mask.to(torch.float32).expand_as(pred)
    diff2 = (pred.float() - target.float()) ** 2
    return (diff2 * m).sum() / m.sum().clamp(min=1.0)


def ab_regression_loss(
    pred_ab: torch.Tensor, target_ab: torch.Tensor, pixel_weights: torch.Tensor | None,
    beta: float,
) -> torch.Tensor:
    """Colorization by regression: smooth L1 (Huber) on the ab channels, in ab units.

    The regression baseline of Zhang, Isola, Efros, "Colorful Image Colorization" (ECCV
    2016, section 2.1, with a Huber instead of their L2 penalty, as in Larsson et al.
    2016's robust regression): ``L = mean_p v_p * sum_{c in a,b} huber_beta(pred - target)``
    for ``(B, 2, H, W)`` inputs, with optional per-pixel weights ``v`` ``(B, H, W)`` (class
    rebalancing, eq. 4). The mean of the colours minimises it: multimodal colours regress
    to grey, which is why the paper classifies instead.
    """
    per_pixel = F.smooth_l1_loss(pred_ab.float(), target_ab.float(), reduction="none",
                                 beta=beta).sum(1)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights.float()
    return per_pixel.mean()


def colorization_ce(
    logits: torch.Tensor, bins: torch.Tensor, bin_weights: torch.Tensor,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Colorization by classification over quantised ab bins (Zhang et al. 2016, eq. 2).

    ``L = -mean_p v_p sum_q Z_pq log softmax(logits_p)_q`` (the paper sums over pixels;
    the mean keeps the value independent of resolution). ``logits`` is ``(B, Q, H, W)``;
    the soft target ``Z`` of pixel ``p`` (pixels in (b, h, w) order) is given sparsely as
    ``bins`` ``(B*H*W, k)`` bin indices with weights ``bin_weights`` summing to 1 (the
    soft encoding on the 5 nearest bins, or the nearest bin with k = 1); ``v``
    ``(B*H*W,)`` are the optional class-rebalancing weights (eq. 3-4).
    """
    q = logits.shape[1]
    logp = F.log_softmax(logits.float().permute(0, 2, 3, 1).reshape(-1, q), dim=1)
    per_pixel = -(logp.gather(1, bins) * bin_weights.float()).sum(1)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights.float()
    return per_pixel.mean()


# ------------------------------------------------------------------------------ MAE


def mae_targets(patches: torch.Tensor, norm_pix: bool, eps: float = 1e-6
                ) -> torch.Tensor:
    """MAE's reconstruction targets from patchified images ``(B, N, P)``.

    With ``norm_pix`` each patch is normalised by its own pixels (He et al., "Masked
    Autoencoders Are Scalable Vision Learners", CVPR 2022, section 3 "Reconstruction
    target"): ``t = (x - mean(x)) / sqrt(var(x) + eps)`` over the ``P`` values of the patch
    (unbiased variance, as the official code), which the paper finds improves the
    representation by enhancing local contrast. Otherwise the pixels themselves.
    """
    t = patches.float()
    if not norm_pix:
        return t
    mean = t.mean(dim=-1, keepdim=True)
    var = t.var(dim=-1, keepdim=True)
    return (t - mean) / (var + eps) ** 0.5


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's loss: the per-patch MSE averaged over the masked patches only.

    He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, section 3:
    ``L = sum_i m_i * mean_p (pred_ip - target_ip)^2 / sum_i m_i`` for predictions and
    targets ``(B, N, P)`` (``P`` pixel values per patch, targets from :func:`mae_targets`)
    and a mask ``m`` ``(B, N)`` that is 1 on removed patches. Visible patches change
    neither the value nor the gradient ("computing the loss only on masked patches"); an
    empty mask gives 0. Passing ``1 - m`` gives the error on the visible patches.
    """
    per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp(min=1.0)


def pretext_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a pretext classification: the loss of rotation prediction
    (Gidaris et al. 2018, eq. 2-3: four rotation classes), jigsaw puzzles (Noroozi & Favaro
    2016: one class per permutation of the tile set) and relative patch location (Doersch
    et al. 2015: eight neighbour positions).

    For logits ``s`` ``(N, K)`` and labels ``y`` ``(N,)`` built by the pretext
    transformation, ``L = -1/N sum_i log( exp(s_{i, y_i}) / sum_k exp(s_{i, k}) )``;
    ``log K`` for uniform logits, the loss of guessing. Computed in float32 (AMP-safe).
    """
    return F.cross_entropy(logits.float(), labels)


# ------------------------------------------------------------------------------ text


def causal_lm_loss(logits: torch.Tensor, ids: torch.Tensor, reduction: str = "mean"
                   ) -> torch.Tensor:
    """Next-token prediction, the language-modelling objective of GPT (Radford et al.
    2018, "Improving Language Understanding by Generative Pre-Training", eq. 1).

    ``logits`` ``(B, L, V)`` are a causal model's predictions at every position of the
    token rows ``ids`` ``(B, L)``; position ``t`` predicts token ``t + 1``:
    ``L = -1/T sum_{b, t : ids[b, t+1] != PAD} log softmax(logits[b, t])[ids[b, t+1]]``
    with ``T`` the number of real targets, so padding neither counts nor dilutes the mean
    (``reduction="sum"``: the sum, for held-out totals). ``log V`` for uniform logits.
    Computed in float32 (AMP-safe).
    """
    v = logits.shape[-1]
    pred = logits[:, :-1].reshape(-1, v).float()
    return F.cross_entropy(pred, ids[:, 1:].reshape(-1), ignore_index=PAD,
                           reduction=reduction)


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor
                   ) -> torch.Tensor:
    """Masked language modelling, BERT's "masked LM" (Devlin et al. 2019, "BERT:
    Pre-training of Deep Bidirectional Transformers for Language Understanding", section
    3.1, task 1): the cross-entropy of the original token at the chosen positions only.

    ``logits`` ``(B, L, V)`` from the corrupted rows, ``targets`` ``(B, L)`` the original
    rows, ``chosen`` ``(B, L)`` bool (True where a token was selected for prediction,
    whether it was then replaced by [MASK], by a random token or kept):
    ``L = -1/|C| sum_{(b, t) in C} log softmax(logits[b, t])[targets[b, t]]``. Positions
    outside ``C`` change neither the value nor the gradient. Float32.
    """
    v = logits.shape[-1]
    t = targets.masked_fill(~chosen, -100).reshape(-1)
    return F.cross_entropy(logits.reshape(-1, v).float(), t, ignore_index=-100)


def simcse_loss(anchors: torch.Tensor, keys: torch.Tensor, start: int, temperature: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unsupervised SimCSE's InfoNCE (Gao, Yao, Chen 2021, "SimCSE: Simple Contrastive
    Learning of Sentence Embeddings", eq. 1; section 3: the positives are dropout noise).

    ``anchors`` ``(n, D)`` are the first dropout view of sentences ``start .. start + n
    - 1`` of a batch whose second views are ``keys`` ``(N, D)`` (``keys[start + i]`` is
    anchor ``i``'s positive, every other key a negative; ``start = 0`` and ``n = N`` for a
    whole batch). With cosine similarity ``s`` and temperature ``t``:
    ``l_i = -log exp(s(a_i, k_{start+i}) / t) / sum_j exp(s(a_i, k_j) / t)``, averaged over
    the anchors. One direction, as the paper's code (``cos_sim(z1, z2)`` against
    ``arange``); the mean of equal shards covering the batch is the whole-batch loss.

    Returns ``(loss, positive, negative)``: the loss and, detached, the mean cosine
    similarity of the positive pairs and of the negative pairs.
    """
    a = F.normalize(anchors.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    cos = a @ k.t()
    n, total = cos.shape
    targets = torch.arange(start, start + n, device=cos.device)
    loss = F.cross_entropy(cos / temperature, targets)
    with torch.no_grad():
        pos_sum = cos[torch.arange(n, device=cos.device), targets].sum()
        pos = pos_sum / n
        neg = ((cos.sum() - pos_sum) / (n * (total - 1)) if total > 1
               else torch.zeros((), device=cos.device))
    return loss, pos, neg


# ------------------------------------------------------------------------- image + text


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float
              ) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021, "Learning Transferable Visual Models
    From Natural Language Supervision", Figure 3).

    ``img`` and ``txt`` are ``(N, D)`` embeddings of N image-caption pairs (row ``i`` of
    each is pair ``i``), L2-normalised here; ``logit_scale`` is the multiplier ``s =
    1 / temperature`` (already exponentiated and clamped by the caller). With
    ``logits = s * img @ txt^T``, the loss is the mean of the cross-entropy over the rows
    (each image picks its caption among the N) and over the columns (each caption picks
    its image), both against the targets ``arange(N)``. Swapping ``img`` and ``txt``
    transposes the logits and leaves the loss unchanged.
    """
    return clip_loss_shard(img, txt, 0, img.shape[0], logit_scale)


def clip_loss_shard(img: torch.Tensor, txt: torch.Tensor, start: int, count: int,
                    logit_scale: torch.Tensor | float) -> torch.Tensor:
    """:func:`clip_loss`'s share of pairs ``start .. start + count - 1``: those images
    against every caption of the batch and those captions against every image.

    What one of several processes computes: ``img`` and ``txt`` are the whole batch,
    gathered with :func:`engine.distributed.gather` (whose backward hands each process
    the sum of every process's gradient for its own rows), and the process's own pairs
    are the rows ``start ..``. CLIP shards the similarities the same way, each GPU
    computing only those of its local batch (Radford et al. 2021, section 2.5;
    open_clip's ``ClipLoss`` with ``local_loss``). The mean over equal shards covering
    the batch is :func:`clip_loss`, in value and in gradient, which is what DDP's
    averaging of the processes' gradients needs.
    """
    i = F.normalize(img.float(), dim=1)
    t = F.normalize(txt.float(), dim=1)
    rows = slice(start, start + count)
    targets = torch.arange(start, start + count, device=i.device)
    image_to_text = logit_scale * i[rows] @ t.t()  # (count, N)
    text_to_image = logit_scale * t[rows] @ i.t()
    return (F.cross_entropy(image_to_text, targets)
            + F.cross_entropy(text_to_image, targets)) / 2
