"""Two processes on two halves of a batch take the step one process takes on the whole.

The gradient contract of :mod:`engine.distributed`: DDP averages the processes'
gradients, so with every whole-batch statistic gathered across processes (SimCLR's
negatives, the triplet negatives, MoCo's queue, Barlow Twins' cross-correlation,
VICReg's variance and covariance, DINO's centre, colorization's colour prior, the
PSNR metrics, SimCSE's negatives, both CLIP towers' embeddings) and BatchNorm
synchronised, N processes on N contiguous shards must give the loss (mean over ranks),
the metrics (mean over ranks), the parameters and the buffers of one process on the
whole batch.

Two gloo processes are spawned once for the module and loop over every case; the parent
computes the single-process references (no process group, ordinary BatchNorm) and each
case compares on its own. Views come from a deterministic augmentation (the normalised
images, then their mirror images), so the shards' views are the whole batch's.
"""

from __future__ import annotations

import faulthandler
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

WORLD = 2
BATCH = 8  # global batch: 4 images per process
#: plain SGD, no momentum: the update is the gradient; small enough that float noise in
#: Barlow Twins' large gradients (up to ~75 here) stays well inside the tolerance
LR = 0.01
ATOL, RTOL = 1e-5, 1e-4

#: Small everything: 16 px, a 4-channel CNN, narrow heads.
COMMON: dict[str, Any] = {"data.resolution": 16, "backbone.width": 4}
HEAD = {"method.proj_hidden_dim": 32, "method.proj_dim": 16}

#: case -> (method, overrides)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "simclr": ("simclr", HEAD),
    "triplet_random": ("triplet", {**HEAD, "method.negative": "random"}),
    "triplet_hard": ("triplet", {**HEAD, "method.negative": "hard"}),
    "moco": ("moco", {**HEAD, "method.queue_size": 20}),
    "barlow_twins": ("barlow_twins", HEAD),
    "vicreg": ("vicreg", HEAD),
    "dino": ("dino", {"method.out_dim": 32, "method.head_hidden_dim": 32,
                      "method.bottleneck_dim": 16, "method.local_crops": 0,
                      "method.head_batch_norm": True}),
    "byol": ("byol", {**HEAD, "method.pred_hidden_dim": 32}),
    "simsiam": ("simsiam", {**HEAD, "method.pred_hidden_dim": 8}),
    "colorization": ("colorization", {"method.rebalance": True}),
    "inpainting": ("inpainting", {"method.mask_mode": "central"}),
    # text: a tiny encoder on token rows; dropout off, because its masks come from each
    # process's own RNG (as augmentation draws do), so the views would differ
    "simcse": ("simcse", {"data.seq_len": 12, "method.dim": 16, "method.depth": 1,
                          "method.heads": 2, "method.dropout": 0.0}),
    # image-caption pairs: both towers' embeddings gathered (the text tower has no
    # dropout by default, as CLIP's)
    "clip": ("clip", {"data.seq_len": 12, "method.dim": 16, "method.depth": 1,
                      "method.heads": 2, "method.embed_dim": 16}),
}
#: cases whose batch is token rows, not images
TEXT_CASES = {"simcse"}
#: cases whose batch is image-caption pairs (the images and token rows of the others)
PAIRED_CASES = {"clip"}


class MirrorViews:
    """A deterministic stand-in for the two-view augmentation: the first call gives the
    normalised images, the second their mirror images (then again, alternating)."""

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution
        self.calls = 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from engine.augment import eval_transform

        x = eval_transform(images, self.resolution)
        self.calls += 1
        return x if self.calls % 2 == 1 else x.flip(-1)


def global_batch(case: str = "") -> Any:
    g = torch.Generator().manual_seed(1234)
    if case in TEXT_CASES | PAIRED_CASES:  # byte ids, rows of 5-12 real tokens, padded
        length = int(CASES[case][1]["data.seq_len"])
        ids = torch.randint(4, 260, (BATCH, length), generator=g)
        real = torch.randint(5, length + 1, (BATCH, 1), generator=g)
        rows = ids.masked_fill(torch.arange(length)[None, :] >= real, 0)
        if case in TEXT_CASES:
            return rows
    res = COMMON["data.resolution"]
    images = torch.randint(0, 256, (BATCH, 3, res, res), generator=g, dtype=torch.uint8)
    if case in PAIRED_CASES:
        from tests.engine.test_clip import StandInPairs

        return StandInPairs(images, rows)
    return images


def take_step(case: str, images: Any, ddp: bool) -> dict[str, Any]:
    """One SGD step of ``case`` on ``images``; with ``ddp`` BatchNorm is synchronised
    and the model wrapped in DistributedDataParallel (inside a process group).

    Returns the loss, the metrics (training step's and after_step's), the state dict
    after the step and the largest change of a trained weight (``moved``).
    """
    from engine.distributed import convert_sync_batchnorm
    from engine.model import build_model
    from engine.presets import default_config

    method, overrides = CASES[case]
    cfg = default_config(method, False)
    for key, value in {**COMMON, **overrides}.items():
        cfg.set(key, value)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model, _ = build_model(cfg, cpu)
    model.train()
    views = MirrorViews(cfg.data.resolution)
    if hasattr(model, "views"):  # pretext / reconstruction methods make their own views
        model.views = views
    net: torch.nn.Module = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = convert_sync_batchnorm(model, cpu)  # type: ignore[assignment]
        net = DistributedDataParallel(model)
    trained = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    opt = torch.optim.SGD(trained, lr=LR)
    out = net(images, views, torch.Generator().manual_seed(1))
    out.loss.backward()
    opt.step()
    metrics = {k: float(v) for k, v in out.metrics.items()}
    metrics.update(model.after_step(0, 10))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(trained, before, strict=True))
    return {"loss": float(out.loss.detach()), "metrics": metrics, "state": state, "moved": moved,
            "net": net}


def _worker(rank: int, port: int, out_dir: str) -> None:
    """One of the two processes: every case on its half of the global batch.

    Its stderr (C++ aborts included) and, on a fatal signal, every thread's Python stack
    go to ``log.<rank>`` in ``out_dir``, which a failing fixture prints."""
    log = open(Path(out_dir) / f"log.{rank}", "w", buffering=1)  # noqa: SIM115 - till exit
    os.dup2(log.fileno(), 2)
    faulthandler.enable(log, all_threads=True)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from engine import distributed

    distributed.init("cpu", timeout_s=60)
    import torch.distributed as dist

    kept: list[Any] = []  # every case's DDP wrapper, alive till the group is left
    try:
        n = BATCH // WORLD
        for case in CASES:
            print(f"{time.strftime('%H:%M:%S')} case {case}", file=log)
            shard = global_batch(case)[rank * n : (rank + 1) * n]
            try:
                result: dict[str, Any] = take_step(case, shard, ddp=True)
                kept.append(result.pop("net"))
                result["world"] = distributed.world_size()
            except Exception:  # noqa: BLE001 - reported by the case's own test
                result = {"error": traceback.format_exc()}
            torch.save(result, Path(out_dir) / f"{case}.{rank}.pt")
            dist.barrier()  # both ranks done with this case's collectives
        print(f"{time.strftime('%H:%M:%S')} all cases done", file=log)
    finally:
        distributed.shutdown()
        print(f"{time.strftime('%H:%M:%S')} left the group", file=log)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The references in one thread, as each worker: tiny ops on a shared 2-core machine
    are slower with intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_logs(out: Path) -> str:
    """What the workers wrote to stderr (the last 3,000 characters of each)."""
    return "\n".join(f"--- {f.name}:\n{f.read_text(errors='replace')[-3000:]}"
                     for f in sorted(out.glob("log.*")))


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> Path:
    """Spawn the two processes once; their results, one file per case and rank.

    A process group that dies is started once more on a fresh port. (In CI a gloo
    process has aborted with "terminate called without an active exception", before or
    between cases, never in a run here; each worker's stderr and, on a fatal signal, its
    threads' stacks are in ``log.<rank>``.) A second death fails every case, with both
    attempts' logs in the message."""
    failures: list[str] = []
    for _attempt in range(2):
        out = tmp_path_factory.mktemp("ddp")
        ctx = mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD,
                                 join=False, start_method="spawn")
        deadline = time.monotonic() + 180
        try:
            while not ctx.join(timeout=1):
                if time.monotonic() > deadline:
                    for p in ctx.processes:
                        p.terminate()
                    pytest.fail("the two training processes did not finish within 180 s\n"
                                + worker_logs(out))
        except mp.ProcessExitedException as e:
            failures.append(f"{e} ({len(list(out.glob('*.pt')))} result files)\n"
                            f"{worker_logs(out)}")
            print(f"the process group died; starting it again. {failures[-1]}")
            continue
        if failures:
            print(f"second start succeeded after: {failures[0]}")
        return out
    pytest.fail("the process group died twice:\n" + "\n".join(failures))


def worst(got: torch.Tensor | float, want: torch.Tensor | float) -> tuple[float, float]:
    """(largest |got - want|, largest |got - want| / (ATOL + RTOL |want|)): within
    tolerance when the second is at most 1."""
    g = torch.as_tensor(got, dtype=torch.float64)
    w = torch.as_tensor(want, dtype=torch.float64)
    d = (g - w).abs()
    if d.numel() == 0:
        return 0.0, 0.0
    return float(d.max()), float((d / (ATOL + RTOL * w.abs())).max())


def compare(ranks: list[dict[str, Any]], ref: dict[str, Any],
            params_only: bool = False) -> list[tuple[float, float, str]]:
    """Every compared quantity as (abs diff, tolerance ratio, name), worst first: the loss
    and metrics as means over ranks, the state (parameters and buffers) of each rank."""
    rows = [(*worst(sum(r["loss"] for r in ranks) / len(ranks), ref["loss"]), "loss")]
    for k, v in ref["metrics"].items():
        rows.append((*worst(sum(r["metrics"][k] for r in ranks) / len(ranks), v),
                     f"metric {k}"))
    for i, r in enumerate(ranks):
        assert r["state"].keys() == ref["state"].keys()
        for k, v in ref["state"].items():
            if params_only and not v.is_floating_point():
                continue
            rows.append((*worst(r["state"][k], v), f"rank {i} {k}"))
    return sorted(rows, key=lambda row: -row[1])


def reference(case: str, images: Any) -> dict[str, Any]:
    from engine.distributed import is_distributed

    assert not is_distributed()
    return take_step(case, images, ddp=False)


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_equal_one_on_the_whole_batch(case, ddp_results):
    ranks = [torch.load(ddp_results / f"{case}.{r}.pt", weights_only=False)
             for r in range(WORLD)]
    for r in ranks:
        if "error" in r:
            pytest.fail(r["error"])
        assert r["world"] == WORLD  # the step really ran in a process group of two
    ref = reference(case, global_batch(case))
    assert ref["moved"] > 100 * ATOL  # the step moves weights far beyond the tolerance
    rows = compare(ranks, ref)
    diff, ratio, name = rows[0]
    assert ratio <= 1.0, (f"{case}: {name} differs by {diff:.3g} ({ratio:.3g} x the "
                          f"tolerance atol {ATOL:g} + rtol {RTOL:g})")
    # the worst difference, for the record (pytest -rA shows it)
    print(f"{case}: worst {name} differs by {diff:.3g}, {ratio:.3g} x tolerance")


@pytest.mark.parametrize("case", list(CASES))
def test_halves_alone_give_a_different_step(case):
    """The comparison above can fail: without any cross-process statistic (each half on
    its own, ordinary BatchNorm, the updates averaged as DDP would) the step differs."""
    x = global_batch(case)
    n = BATCH // WORLD
    halves = [reference(case, x[i * n : (i + 1) * n]) for i in range(WORLD)]
    ref = reference(case, x)
    for h in halves:  # each half's own update; DDP would apply their mean
        h["state"] = {k: v for k, v in h["state"].items() if v.is_floating_point()}
    mean_state = {k: sum(h["state"][k] for h in halves) / WORLD for k in halves[0]["state"]}
    averaged = {**halves[0], "loss": sum(h["loss"] for h in halves) / WORLD,
                "metrics": {k: sum(h["metrics"][k] for h in halves) / WORLD
                            for k in halves[0]["metrics"]},
                "state": mean_state}
    ref["state"] = {k: v for k, v in ref["state"].items() if k in mean_state}
    diff, ratio, name = compare([averaged], ref, params_only=True)[0]
    assert ratio > 100, f"{case}: halves alone match the whole batch ({name}: {diff:.3g})"


# --------------------------------------------- the losses that need the whole batch


def _embeddings(n: int = BATCH, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(n, d, generator=g)
    return z1, z1 + 2.0 * torch.randn(n, d, generator=g)  # some triplets still active


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_nt_xent_shards_average_to_the_whole_batch_loss_and_gradient(shards):
    from engine.losses import nt_xent, nt_xent_shard

    a, b = _embeddings()
    z1, z2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    whole = nt_xent(z1, z2, 0.2)
    whole.backward()
    g_whole = z1.grad.clone(), z2.grad.clone()
    z1.grad = z2.grad = None
    n = BATCH // shards
    parts = torch.stack([nt_xent_shard(z1, z2, i * n, n, 0.2) for i in range(shards)])
    parts.mean().backward()
    assert torch.allclose(parts.mean(), whole, atol=1e-6)
    assert torch.allclose(z1.grad, g_whole[0], atol=1e-6)
    assert torch.allclose(z2.grad, g_whole[1], atol=1e-6)


def _loss_fns() -> dict[str, Any]:
    from engine.losses import barlow_twins_loss, nt_xent, triplet_margin, vicreg_loss

    def triplet(z1: torch.Tensor, z2: torch.Tensor, hard: bool) -> torch.Tensor:
        a, p = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        if hard:
            d = torch.cdist(a, p).pow(2)
            d.fill_diagonal_(float("inf"))
            neg = p[d.argmin(1)]
        else:
            neg = p.roll(1, dims=0)
        return triplet_margin(a, p, neg, 0.5)

    return {
        "simclr": lambda z1, z2: nt_xent(z1, z2, 0.2),
        "triplet_random": lambda z1, z2: triplet(z1, z2, False),
        "triplet_hard": lambda z1, z2: triplet(z1, z2, True),
        "barlow_twins": lambda z1, z2: barlow_twins_loss(z1, z2, 5e-3)[0],
        "vicreg": lambda z1, z2: vicreg_loss(z1, z2, 25.0, 25.0, 1.0, 1.0, 1e-4)[0],
    }


@pytest.mark.parametrize("case", ["simclr", "triplet_random", "triplet_hard",
                                  "barlow_twins", "vicreg"])
def test_these_losses_on_halves_alone_differ_from_the_whole_batch(case):
    """Why the methods gather: the mean of the loss of each half alone is not the
    whole-batch loss (by over ten times the tolerance of the two-process test), so two
    processes without the gather would fail it. (A random triplet negative differs only
    for each half's first image, hence the small margin.)"""
    fn = _loss_fns()[case]
    z1, z2 = _embeddings()
    n = BATCH // WORLD
    halves = sum(float(fn(z1[i * n : (i + 1) * n], z2[i * n : (i + 1) * n]))
                 for i in range(WORLD)) / WORLD
    whole = float(fn(z1, z2))
    assert abs(halves - whole) > 10 * (ATOL + RTOL * abs(whole)), (halves, whole)


def test_sync_batchnorm_follows_the_papers():
    """SimCLR's global BN, BYOL's cross-replica BN, and the SyncBatchNorm of SimSiam's,
    Barlow Twins', VICReg's and DINO's code; not MoCo v2 (shuffling BN, per-GPU
    statistics), triplet, nor the pretext and reconstruction methods."""
    from engine.registry import available_methods

    synced = {m.name for m in available_methods() if m.sync_batchnorm}
    assert synced == {"simclr", "byol", "simsiam", "barlow_twins", "vicreg", "dino"}
