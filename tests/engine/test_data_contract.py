"""The data contract is not image-bound: a token-sequence source and a trivial method
train, monitor, checkpoint, resume and evaluate through the unchanged trainer, monitor,
evaluation and run folder (docs/ARCHITECTURE.md, section 2).

The source and the method live only in this file: nothing in the engine knows them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from engine import events as ev
from engine.config import Config, MethodConfig, param
from engine.evaluate import PROTOCOLS, EvalOptions, evaluate_models, random_init_model
from engine.losses import nt_xent
from engine.methods._base import StepOutput
from engine.methods._joint import TwoViewMethod
from engine.registry import _REGISTRY, register_method
from engine.runs import RunFolder, list_runs
from engine.train import Trainer

VOCAB, LENGTH, MASK = 32, 12, 32  # token ids 0..31, id 32 masks a dropped token


@dataclass(eq=False)
class TokenSource:
    """Two classes of random token sequences: class 0 draws from ids 0-15, class 1 from
    16-31, so a bag of tokens tells them apart."""

    n: int = 200
    seed: int = 0
    name: str = "tokens"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        self.labels = torch.arange(self.n) % 2
        self.inputs = torch.randint(0, 16, (self.n, LENGTH), generator=g) + 16 * self.labels[
            :, None]
        self.class_names = ["low", "high"]
        self.files = [f"seq{i:04d}" for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    @property
    def resolution(self) -> int:
        return LENGTH

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=2).tolist()

    def thumbnails(self, indices: torch.Tensor) -> None:
        return None


class TokenDropout:
    """Two views of a sequence: each token replaced by the mask id with probability p."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        drop = torch.rand(tokens.shape, generator=generator) < self.p
        return tokens.masked_fill(drop.to(tokens.device), MASK)


class BagOfTokens(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB + 1, dim)
        self.norm = nn.BatchNorm1d(dim)  # so BatchNorm calibration has work to do

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(tokens).mean(1))


@dataclass
class TokenBagConfig(MethodConfig):
    temperature: float = param(0.2, "NT-Xent temperature.", min=0.01, max=10.0)
    drop: float = param(0.2, "Token dropout probability of each view.", min=0.0, max=0.9)


class TokenBag(TwoViewMethod):
    """SimCLR (Chen et al. 2020) on bags of tokens: the smallest text method."""

    @classmethod
    def make_backbone(cls, cfg: Config, device: torch.device) -> tuple[nn.Module, int, str]:
        return BagOfTokens(16), 16, "bag_of_tokens"

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        self.projector = nn.Sequential(nn.Linear(feature_dim, 16), nn.ReLU(), nn.Linear(16, 8))

    def train_augment(self) -> TokenDropout:  # type: ignore[override]
        return TokenDropout(self.cfg.method.drop)  # type: ignore[attr-defined]

    def finetune_augment(self) -> None:  # type: ignore[override]
        return None

    def eval_inputs(self, batch: torch.Tensor, resolution: int) -> torch.Tensor:
        return batch

    def training_step(self, batch, augment, generator) -> StepOutput:  # noqa: ANN001
        n = batch.shape[0]
        z = self.projector(self.backbone(self.two_views(batch, augment, generator)))
        return StepOutput(nt_xent(z[:n], z[n:], self.cfg.method.temperature))


@pytest.fixture
def token_method() -> Iterator[str]:
    name = "test_token_bag"
    register_method(name, config=TokenBagConfig, family="contrastive",
                    description="bags of tokens (tests only)", paper="-")(TokenBag)
    yield name
    del _REGISTRY[name]


def token_config(name: str, steps: int) -> Config:
    cfg = Config(method_name=name, method=TokenBagConfig())
    for k, v in {"optim.batch_size": 32, "optim.max_steps": steps, "optim.warmup_steps": 0,
                 "monitor.every_steps": 5, "monitor.monitor_size": 100}.items():
        cfg.set(k, v)
    return cfg


def test_token_sequences_train_monitor_resume_and_evaluate_through_the_engine(
        tmp_path, token_method):
    source = TokenSource()
    from engine.data import DataSource, load_dataset

    assert isinstance(source, DataSource)  # the contract, checked structurally
    assert isinstance(load_dataset("digits", resolution=16), DataSource)
    events = list(Trainer(token_config(token_method, 10), tmp_path, dataset=source).run())
    assert isinstance(events[-1], ev.Finished), events[-1]
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.backbone == "bag_of_tokens" and started.feature_dim == 16
    ms = next(e for e in events if isinstance(e, ev.MonitorSet))
    assert ms.thumbnails is None and len(ms.files) == 100
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    assert [r.step for r in reports] == [0, 5, 10] and reports[0].baseline
    assert all(r.knn_accuracy is not None and r.dim == 8 for r in reports)
    assert all(r.alignment is not None and math.isfinite(r.alignment) for r in reports)
    assert sum(isinstance(e, ev.EmbeddingSnapshot) for e in events) == 3

    run = RunFolder(events[-1].run_dir)
    assert run.load_monitor_set().thumbnails is None
    replayed = ev.replay(run.read_metrics())
    assert [e.step for e in replayed if isinstance(e, ev.MonitorReport)] == [0, 5, 10]
    assert list_runs(tmp_path)[0].status == "finished"

    resumed = list(Trainer.resume(run.path, max_steps=15, dataset=source).run())
    assert isinstance(resumed[-1], ev.Finished) and resumed[-1].step == 15
    steps = [r["step"] for r in run.read_metrics() if "loss" in r]
    assert steps == list(range(1, 16))

    from engine.checkpoint import load_run_model

    trained, name, step = load_run_model(run, token_config(token_method, 15), "cpu")
    assert (name, step) == ("bag_of_tokens", 15)
    base = random_init_model(trained.cfg, name, source.inputs[:100], "cpu")
    opts = EvalOptions(finetune_steps=5, fewshot_draws=2, fewshot_shots=(1, 5))
    result = evaluate_models({"trained": trained, "random_init": base}, source, PROTOCOLS,
                             opts, device="cpu", resolution=LENGTH)
    for p in PROTOCOLS:
        assert set(result["results"][p]) >= {"trained", "random_init"}
    assert 0.0 <= result["results"]["finetune"]["trained"]["accuracy"] <= 1.0
