"""Weighted k-nearest-neighbour classification: the one kNN of the workbench.

Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance
Discrimination") as run by DINO's ``eval_knn`` (Caron et al. 2021): cosine similarity,
the k most similar bank items vote for their label with weight ``exp(sim / T)``. The
monitor's live kNN (leave-one-out over the monitor set) and the evaluation protocol
(training bank, validation queries) both call :func:`knn_predict`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    temperature: float,
    chunk: int = 1024,
    leave_one_out: bool = False,
) -> torch.Tensor:
    """Predicted labels of ``queries``. With ``leave_one_out`` the queries are the bank
    itself and each is left out of its own neighbours."""
    b = F.normalize(bank.float(), dim=1)
    q = F.normalize(queries.float(), dim=1)
    y = bank_labels.long().to(b.device)
    n_classes = int(y.max()) + 1
    k = min(k, b.shape[0] - int(leave_one_out))
    preds = []
    for s in range(0, q.shape[0], chunk):
        sim = q[s : s + chunk] @ b.t()
        if leave_one_out:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + s] = -math.inf
        top_sim, top_idx = sim.topk(k, dim=1)
        # exp((sim - max) / T): the same vote shares as exp(sim / T), without overflow
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
        votes = torch.zeros(top_sim.shape[0], n_classes, device=sim.device)
        votes.scatter_add_(1, y[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def knn_accuracy(
    features: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    temperature: float,
    chunk: int = 1024,
) -> float:
    """Leave-one-out weighted kNN accuracy: each item classified by its k nearest others,
    so one labelled set serves as both bank and queries (the live monitor)."""
    pred = knn_predict(features, labels, features, k, temperature, chunk, leave_one_out=True)
    return float((pred.cpu() == labels.long().cpu()).double().mean()) if len(pred) else 0.0
