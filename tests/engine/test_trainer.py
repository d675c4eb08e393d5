"""The trainer as an event stream: pause, resume and stop between steps; interrupted runs."""

from __future__ import annotations

import threading

import pytest
import torch

from engine import events as ev
from engine.errors import ConfigError
from engine.model import schedule_lr as lr_at
from engine.presets import load_toml
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import small_config


def test_events_in_order_and_plain_data(tmp_path):
    events = list(Trainer(small_config("simclr", 6), tmp_path).run())
    kinds = [type(e).__name__ for e in events]
    assert kinds[:5] == ["DatasetReady", "RunStarted", "MonitorSet", "MonitorReport",
                         "EmbeddingSnapshot"]
    assert kinds[-1] == "Finished"
    assert kinds.count("StepMetrics") == 6
    for e in events:  # never live tensors
        for value in vars(e).values():
            assert not isinstance(value, torch.Tensor)


def test_pause_resume_stop_between_steps(tmp_path):
    t = Trainer(small_config("simclr", 10_000), tmp_path)
    seen = []
    for e in t.run():
        seen.append(e)
        if isinstance(e, ev.StepMetrics) and e.step == 3:
            t.request_pause()
            threading.Timer(0.3, t.request_resume).start()
        if isinstance(e, ev.StepMetrics) and e.step == 6:
            t.request_stop()
    kinds = [type(e).__name__ for e in seen]
    i = kinds.index("Paused")
    assert kinds[i - 1] == "CheckpointSaved"
    assert kinds[i + 1] == "Resumed"
    assert seen[i].step == 3
    fin = seen[-1]
    assert isinstance(fin, ev.Finished) and fin.status == "stopped" and fin.step == 6
    # a stopped run is measured where it stopped, and its summary keeps that measurement
    last = [e for e in seen if isinstance(e, ev.MonitorReport) and e.step == 6]
    assert last and last[-1].knn_accuracy is not None
    assert fin.summary["final"]["knn_accuracy"] == last[-1].knn_accuracy
    run = RunFolder(fin.run_dir)
    assert run.read_summary()["status"] == "stopped"
    assert torch.load(run.last_checkpoint, weights_only=True)["step"] == 6


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    cfg = small_config("simclr", 20)
    cfg.set("monitor.checkpoint_every", 5)
    t = Trainer(cfg, tmp_path)
    run_dir = None
    for e in t.run():  # simulate a crash: abandon the generator after step 7
        if isinstance(e, ev.RunStarted):
            run_dir = e.run_dir
        if isinstance(e, ev.StepMetrics) and e.step == 7:
            break
    resumed = list(Trainer.resume(run_dir).run())
    started = next(e for e in resumed if isinstance(e, ev.RunStarted))
    assert started.start_step == 5
    steps = [r["step"] for r in RunFolder(run_dir).read_metrics() if "loss" in r]
    assert steps == list(range(1, 21))
    assert resumed[-1].status == "finished"


def test_resume_is_exact(tmp_path):
    """Stopping and resuming gives the same weights as an uninterrupted run."""
    full = Trainer(small_config("simclr", 8), tmp_path / "a")
    fin = list(full.run())[-1]
    w_full = torch.load(RunFolder(fin.run_dir).last_checkpoint, weights_only=True)["model"]

    part = Trainer(small_config("simclr", 8), tmp_path / "b")
    for e in part.run():
        if isinstance(e, ev.StepMetrics) and e.step == 4:
            part.request_stop()
    assert isinstance(e, ev.Finished) and e.status == "stopped" and e.step == 4
    fin_b = list(Trainer.resume(e.run_dir).run())[-1]
    w_res = torch.load(RunFolder(fin_b.run_dir).last_checkpoint, weights_only=True)["model"]
    for k in w_full:
        assert torch.allclose(w_full[k].float(), w_res[k].float(), atol=1e-5), k


def test_schedule_warmup_then_cosine():
    cfg = small_config("simclr", 100)
    cfg.set("optim.warmup_steps", 10)
    lr = cfg.optim.lr
    assert abs(lr_at(0, cfg) - lr / 10) < 1e-12
    assert abs(lr_at(9, cfg) - lr) < 1e-12
    assert abs(lr_at(55, cfg) - lr / 2) < 1e-9
    assert lr_at(100, cfg) < 1e-12


def test_bad_dataset_fails_as_input_error(tmp_path):
    cfg = small_config("simclr", 5)
    cfg.set("data.dataset", str(tmp_path / "missing"))
    events = list(Trainer(cfg, tmp_path).run())
    assert isinstance(events[-1], ev.Failed) and events[-1].input_error
    assert "dataset folder not found" in events[-1].message


def test_non_finite_loss_restores_the_checkpoint_pauses_and_resumes_with_new_settings(
        tmp_path, monkeypatch):
    from engine.methods.simclr import SimCLR

    real_step = SimCLR.training_step
    calls = {"n": 0}

    def flaky(self, images, augment, generator):
        out = real_step(self, images, augment, generator)
        calls["n"] += 1
        if calls["n"] == 8:  # the 8th step blows up once
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(SimCLR, "training_step", flaky)
    cfg = small_config("simclr", 12)
    cfg.set("monitor.checkpoint_every", 5)
    t = Trainer(cfg, tmp_path)
    seen = []
    for e in t.run():
        seen.append(e)
        if isinstance(e, ev.Diverged):
            assert t.paused
            with pytest.raises(ConfigError, match="optim.lr"):
                t.request_settings({"optim.lr": -1.0})
            with pytest.raises(ConfigError, match="cannot change"):
                t.request_settings({"method.temperature": 0.1})
            t.request_settings({"optim.lr": 1e-4})
            threading.Timer(0.2, t.request_resume).start()
    div = next(e for e in seen if isinstance(e, ev.Diverged))
    assert div.step == 8 and div.restored_step == 5 and div.value == "nan"
    assert "optim.lr" in div.message and "optim.lr" in div.settings
    kinds = [type(e).__name__ for e in seen]
    i = kinds.index("Diverged")
    assert kinds[i + 1 : i + 3] == ["CheckpointSaved", "Paused"]
    assert any(isinstance(e, ev.RunWarning) and "optim.lr = 0.0001" in e.message
               for e in seen)
    fin = seen[-1]
    assert isinstance(fin, ev.Finished) and fin.status == "finished" and fin.step == 12
    steps = [e.step for e in seen if isinstance(e, ev.StepMetrics)]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 10, 11, 12]  # 6-7 redone after 5
    run = RunFolder(fin.run_dir)
    rows = [r["step"] for r in run.read_metrics() if "loss" in r]
    assert rows == list(range(1, 13))  # the diverged branch left no rows behind
    assert run.read_summary()["status"] == "finished"
    assert load_toml(run.config_path).optim.lr == 1e-4  # the run records what it used


def test_cli_runs_fail_on_divergence_instead_of_waiting(tmp_path, monkeypatch):
    from engine.methods.simclr import SimCLR

    real_step = SimCLR.training_step

    def broken(self, images, augment, generator):
        out = real_step(self, images, augment, generator)
        out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(SimCLR, "training_step", broken)
    events = list(Trainer(small_config("simclr", 5), tmp_path, pause_on_divergence=False).run())
    assert isinstance(events[-1], ev.Failed) and "inf" in events[-1].message


def test_adamw_is_fused_on_the_cpu_and_steps_as_the_loop_does():
    """The fused kernel is the default on the CPU, and one step of it moves the weights as
    the per-tensor AdamW does."""
    from engine.model import build_model, build_optimizer, load_optimizer_state, param_groups

    cfg = small_config("simclr")
    model, _ = build_model(cfg, torch.device("cpu"))
    opt = build_optimizer(model, cfg)
    assert opt.defaults["fused"] is True
    twin, _ = build_model(cfg, torch.device("cpu"))
    twin.load_state_dict(model.state_dict())
    plain = torch.optim.AdamW(param_groups(twin.named_parameters(), cfg.optim.weight_decay,
                                           twin.lr_multipliers()), lr=cfg.optim.lr)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        p.grad = torch.full_like(p, 0.3)
        q.grad = torch.full_like(q, 0.3)
    opt.step()
    plain.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    # a checkpoint of the per-tensor optimiser (saved before, or on another device)
    # resumes into the fused one, which stays fused
    assert load_optimizer_state(opt, plain.state_dict())
    assert all(g["fused"] is True for g in opt.param_groups)


@pytest.mark.parametrize(("probes", "expected"), [
    ({"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, torch.bfloat16),
    ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, torch.bfloat16),
    ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, None),
    ({}, None),  # a torch without the probes: float32, as before
])
def test_cpu_mixed_precision_only_where_the_cpu_has_bf16(monkeypatch, probes, expected):
    """bf16 is emulated (slower than float32) on CPUs without AVX512-BF16 or AMX, and
    slower for transformers even with them: only convolutional backbones take it."""
    import engine.model as model_mod

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if name in probes:
            monkeypatch.setattr(torch.cpu, name, lambda v=probes[name]: v, raising=False)
        else:
            monkeypatch.delattr(torch.cpu, name, raising=False)
    assert model_mod.autocast_dtype(torch.device("cpu"), "small_cnn") is expected
    assert model_mod.autocast_dtype(torch.device("cpu"), "resnet18") is expected
    for transformer in ("vit", "transformer"):
        assert model_mod.autocast_dtype(torch.device("cpu"), transformer) is None
    assert model_mod.autocast_dtype(torch.device("mps"), "small_cnn") is None


@pytest.mark.parametrize("amp", [True, False])
def test_cpu_steps_run_in_bfloat16_under_amp_with_float32_losses(tmp_path, monkeypatch, amp):
    """With ``run.amp`` on a bf16 CPU the network computes in bfloat16 (the speed-up) while
    the weights, the loss and the optimiser stay float32; off, everything is float32."""
    import engine.train as train_mod
    from engine.methods.simclr import SimCLR

    monkeypatch.setattr(train_mod, "autocast_dtype", lambda device, name: torch.bfloat16)
    seen: dict[str, torch.dtype] = {}
    step = SimCLR.training_step

    def spy(self, images, augment, generator):
        out = step(self, images, augment, generator)
        seen["features"] = self.backbone(augment(images, generator)).dtype
        seen["loss"] = out.loss.dtype
        return out

    monkeypatch.setattr(SimCLR, "training_step", spy)
    t = Trainer(small_config("simclr", 3, **{"run.amp": amp}), tmp_path)
    events = list(t.run())
    assert isinstance(events[-1], ev.Finished) and events[-1].status == "finished"
    assert seen == {"features": torch.bfloat16 if amp else torch.float32,
                    "loss": torch.float32}
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    # the run says where and in what precision it trains (window and CLI show it)
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.device == ("cpu (AMP, bfloat16)" if amp else "cpu")
