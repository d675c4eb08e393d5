"""The training loop, as a generator of events.

``Trainer.run()`` yields :mod:`engine.events` dataclasses; pause, resume and stop are
requests (thread-safe flags) checked between steps, so any client (CLI, GUI worker
thread, test) drives the same loop (after superqt's ``GeneratorWorker``).
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.augment import ViewAugment, eval_transform
from engine.backbones import build_backbone, resolve_backbone_name
from engine.config import Config, load_toml
from engine.data import ImageDataset, load_configured
from engine.errors import TrainingDiverged, UserInputError
from engine.events import (
    CheckpointSaved,
    DatasetReady,
    Diverged,
    EmbeddingSnapshot,
    Event,
    Failed,
    Finished,
    MonitorReport,
    MonitorSet,
    Paused,
    PreviewSnapshot,
    Resumed,
    RunStarted,
    RunWarning,
    StepMetrics,
)
from engine.methods._base import SSLMethod
from engine.monitor import (
    alignment,
    collapse_std,
    collapse_verdict,
    effective_rank,
    knn_accuracy,
    spectrum,
    uniformity,
)
from engine.registry import get_method_info
from engine.runs import RunFolder, atomic_write_bytes, default_runs_dir

CHECKPOINT_FORMAT = 1

#: settings a paused run may change before it resumes (the rest fix the model and data)
LIVE_SETTINGS = ("optim.lr", "optim.warmup_steps", "optim.weight_decay", "optim.max_steps",
                 "run.amp")


def pick_device(name: str = "auto") -> torch.device:
    """CUDA if available, else Apple's MPS, else CPU (or exactly what was asked for)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError("run.device = 'cuda' but no CUDA GPU is available (use 'auto')")
    return torch.device(name)


def has_accelerator() -> bool:
    """Whether 'auto' would train on a GPU (so GPU presets apply)."""
    return pick_device("auto").type != "cpu"


def lr_at(step: int, cfg: Config) -> float:
    """Linear warm-up to the peak LR, then cosine decay to zero at ``max_steps``."""
    o = cfg.optim
    if o.warmup_steps > 0 and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    span = max(1, o.max_steps - o.warmup_steps)
    progress = min(1.0, (step - o.warmup_steps) / span)
    return o.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_model(cfg: Config, device: torch.device) -> tuple[SSLMethod, str]:
    """The method (backbone + heads) for a config, on ``device``."""
    info = get_method_info(cfg.method_name)
    backbone_name = resolve_backbone_name(cfg.backbone.name, device)
    backbone, dim = build_backbone(
        backbone_name, cfg.data.resolution, cfg.backbone.width,
        patch_size=cfg.backbone.patch_size, vit_dim=cfg.backbone.vit_dim,
        vit_depth=cfg.backbone.vit_depth, vit_heads=cfg.backbone.vit_heads,
        vit_mlp_ratio=cfg.backbone.vit_mlp_ratio)
    model: SSLMethod = info.cls(cfg, backbone, dim)
    return model.to(device), backbone_name


def build_optimizer(model: SSLMethod, cfg: Config) -> torch.optim.Optimizer:
    """SGD or AdamW; biases and norm parameters get no weight decay.

    Each group carries ``lr_mult`` (from :meth:`SSLMethod.lr_multipliers`; the training
    loop sets its learning rate to the schedule's times it) and ``decays`` (whether the
    weight-decay setting applies to it).
    """
    mults = model.lr_multipliers()
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            mult = next((m for pre, m in mults.items() if name.startswith(pre)), 1.0)
            groups.setdefault((p.ndim > 1, mult), []).append(p)
    param_groups = [
        {"params": params, "weight_decay": cfg.optim.weight_decay if decays else 0.0,
         "decays": decays, "lr_mult": mult}
        for (decays, mult), params in sorted(groups.items(), key=lambda kv: (not kv[0][0],
                                                                              kv[0][1]))
    ]
    if cfg.optim.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    return torch.optim.AdamW(param_groups, lr=cfg.optim.lr)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> bool:
    """Restore a checkpoint's optimiser state; False if it does not fit (kept fresh then).

    The group settings (``lr_mult``, ``decays``) are what the method asks for now, so a
    checkpoint saved before they existed resumes too. A checkpoint whose parameters were
    grouped differently (saved before a method split off a group of its own) cannot be
    mapped onto the groups: the weights still resume, the optimiser moments start afresh.
    """
    own = [(g["lr_mult"], g["decays"]) for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except ValueError:
        return False
    for g, (mult, decays) in zip(optimizer.param_groups, own, strict=True):
        g["lr_mult"], g["decays"] = mult, decays
    return True


def monitor_set(ds: ImageDataset, indices: torch.Tensor, thumb: int = 64) -> MonitorSet:
    """The monitor subset's identity for embedding views: labels, names, thumbnails."""
    imgs = ds.images[indices]
    if imgs.shape[-1] > thumb:
        imgs = torch.nn.functional.interpolate(imgs.float(), size=(thumb, thumb),
                                               mode="bilinear", antialias=True)
        imgs = imgs.round().clamp(0, 255).to(torch.uint8)
    idx = indices.tolist()
    return MonitorSet(
        indices=indices.numpy().astype(np.int64),
        labels=None if ds.labels is None else ds.labels[indices].numpy().astype(np.int64),
        class_names=tuple(ds.class_names),
        files=tuple(ds.files[i] for i in idx),
        thumbnails=imgs.permute(0, 2, 3, 1).contiguous().numpy(),
    )


def monitor_indices(n_images: int, cfg: Config) -> torch.Tensor:
    """The monitor subset: fixed by the data seed, so every run on a dataset shares it."""
    mon_gen = torch.Generator().manual_seed(12345 + cfg.data.seed)
    n_mon = min(cfg.monitor.monitor_size, n_images)
    return torch.randperm(n_images, generator=mon_gen)[:n_mon]


@torch.no_grad()
def calibrate_batchnorm(
    model: SSLMethod, images: torch.Tensor, device: torch.device, resolution: int
) -> None:
    """Estimate BatchNorm statistics of the untrained model on the monitor images.

    A fresh network's running statistics are the placeholders mean 0 / variance 1, so
    in eval mode its features are badly scaled and the random-init baseline would look
    worse than random features really are. Averaging the batch statistics over the
    monitor set (no gradients, no weight change) gives the honest baseline. Leaves the
    model in train mode.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for i in range(0, images.shape[0], 256):
        chunk = images[i : i + 256]
        if chunk.shape[0] < 2:
            break
        x = eval_transform(chunk.to(device), resolution)
        model.project(model.embed(x))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


class Trainer:
    """Runs one training run and yields its events.

    Create with a config for a new run, or with :meth:`resume` to continue a run folder.
    """

    def __init__(
        self,
        cfg: Config,
        runs_dir: str | Path | None = None,
        *,
        dataset: ImageDataset | None = None,
        cache_dir: str | Path | None = None,
        pause_on_divergence: bool = True,
    ) -> None:
        """``pause_on_divergence``: on a non-finite loss, restore the last checkpoint and
        pause for new settings (the GUI); when False the run fails instead (the CLI)."""
        cfg.validate()
        self.cfg = cfg
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.cache_dir = cache_dir
        self._dataset = dataset
        self._mon_augment: ViewAugment | None = None
        self._resume_dir: Path | None = None
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._settings_lock = threading.Lock()
        self._pending_settings: dict[str, Any] = {}
        self.pause_on_divergence = pause_on_divergence
        self.run_folder: RunFolder | None = None

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        max_steps: int | None = None,
        dataset: ImageDataset | None = None,
        cache_dir: str | Path | None = None,
        pause_on_divergence: bool = True,
    ) -> Trainer:
        """Continue a stopped or interrupted run from its ``last.pt``."""
        run = RunFolder(run_dir)
        if not run.last_checkpoint.exists():
            raise UserInputError(f"no checkpoint to resume from in {run.path}")
        cfg = load_toml(run.config_path)
        if max_steps is not None:
            cfg.set("optim.max_steps", max_steps)
        t = cls(cfg, run.path.parent, dataset=dataset, cache_dir=cache_dir,
                pause_on_divergence=pause_on_divergence)
        t._resume_dir = run.path
        return t

    # requests (thread-safe, checked between steps) ------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_pause(self) -> None:
        self._pause.set()

    def request_resume(self) -> None:
        self._pause.clear()

    def request_settings(self, changes: dict[str, Any]) -> None:
        """Change :data:`LIVE_SETTINGS` when the run next resumes from a pause.

        Validated now (raises ConfigError naming the field and its range, or saying which
        settings can change), applied between steps by the training thread.
        """
        from engine.errors import ConfigError

        trial = self.cfg.copy()
        for key, value in changes.items():
            if key not in LIVE_SETTINGS:
                raise ConfigError(f"{key} cannot change in a running run; these can: "
                                  f"{', '.join(LIVE_SETTINGS)}")
            trial.set(key, value)
        with self._settings_lock:
            self._pending_settings.update({k: trial.get(k) for k in changes})

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    # the loop ---------------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        """Train, yielding events; never raises for a failed run (it yields :class:`Failed`)."""
        try:
            yield from self._run()
        except UserInputError as e:
            yield self._fail(str(e), "", input_error=True)
        except TrainingDiverged as e:
            yield self._fail(str(e), "")
        except Exception as e:  # the run fails, the caller (GUI, CLI) survives
            yield self._fail(f"{type(e).__name__}: {e}", traceback.format_exc())
        finally:
            if self.run_folder is not None:
                self.run_folder.close()

    def _fail(self, message: str, details: str, input_error: bool = False) -> Failed:
        run_dir = None
        if self.run_folder is not None:
            run_dir = str(self.run_folder.path)
            try:
                self.run_folder.update_summary(status="failed", error=message)
            except OSError:
                pass
        return Failed(message=message, details=details, run_dir=run_dir,
                      input_error=input_error)

    def _run(self) -> Iterator[Event]:
        cfg = self.cfg
        device = pick_device(cfg.run.device)
        torch.manual_seed(cfg.run.seed)

        ds = self._dataset
        if ds is None:
            ds = load_configured(cfg.data, self.cache_dir)
        counts = ds.class_counts()
        yield DatasetReady(
            name=ds.name,
            n_images=len(ds),
            resolution=ds.resolution,
            class_names=tuple(ds.class_names),
            class_counts=tuple(counts),
            skipped=tuple(ds.skipped),
            from_cache=ds.from_cache,
        )
        if len(ds) < 2:
            raise UserInputError(f"dataset {ds.name} has {len(ds)} image(s); at least 2 needed")
        batch_size = cfg.optim.batch_size
        if batch_size > len(ds):
            yield RunWarning(
                f"optim.batch_size = {batch_size} exceeds the {len(ds)} images of the "
                f"dataset; using {len(ds)}"
            )
            batch_size = len(ds)

        model, backbone_name = build_model(cfg, device)
        optimizer = build_optimizer(model, cfg)
        use_amp = cfg.run.amp and device.type == "cuda"
        amp_dtype = (
            torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        augment = ViewAugment(cfg.augment, cfg.data.resolution)
        gen = torch.Generator().manual_seed(cfg.run.seed)

        mon_idx = monitor_indices(len(ds), cfg)
        n_mon = len(mon_idx)
        mon_images = ds.images[mon_idx]
        mon_labels = ds.labels[mon_idx] if ds.labels is not None else None

        images = ds.images
        if device.type == "cuda":
            images = images.to(device) if images.numel() < 2**31 else images.pin_memory()

        start_step = 0
        elapsed_before = 0.0
        optimizer_resumed = True
        resume_order: tuple[torch.Tensor, int] | None = None
        if self._resume_dir is not None:
            run = RunFolder(self._resume_dir)
            ckpt = torch.load(run.last_checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["model"])
            optimizer_resumed = load_optimizer_state(optimizer, ckpt["optimizer"])
            if "scaler" in ckpt and ckpt["scaler"]:
                scaler.load_state_dict(ckpt["scaler"])
            start_step = int(ckpt["step"])
            elapsed_before = float(ckpt.get("elapsed", 0.0))
            gen.set_state(ckpt["rng"]["augment"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            resume_order = (ckpt["data_order"], int(ckpt["data_pos"]))
            run.truncate_metrics(start_step)
            run.truncate_previews(start_step)
            cfg.save(run.config_path)  # records an extended max_steps
            summary = run.update_summary(status="running", total_steps=cfg.optim.max_steps)
        else:
            run = RunFolder.create(self.runs_dir, cfg.method_name, ds.name, cfg.run.name)
            cfg.save(run.config_path)
            summary = {
                "status": "running",
                "run_id": run.id,
                "method": cfg.method_name,
                "dataset": ds.name,
                "backbone": backbone_name,
                "device": str(device),
                "n_images": len(ds),
                "classes": list(ds.class_names),
                "skipped_files": len(ds.skipped),
                "started": time.time(),
                "step": 0,
                "total_steps": cfg.optim.max_steps,
                "baseline_knn": None,
                "final": {},
            }
            run.write_summary(summary)
        self.run_folder = run
        steps_per_epoch = max(1, len(ds) // batch_size)
        total = cfg.optim.max_steps

        yield RunStarted(
            run_id=run.id,
            run_dir=str(run.path),
            method=cfg.method_name,
            device=str(device),
            backbone=backbone_name,
            feature_dim=model.feature_dim,
            n_images=len(ds),
            total_steps=total,
            start_step=start_step,
            steps_per_epoch=steps_per_epoch,
            config=cfg.to_dict(),
            pretext_chance=model.pretext_chance,
        )
        if not optimizer_resumed:
            yield RunWarning(
                "The checkpoint's optimiser state was saved with other parameter groups (an "
                "older version of this method); the weights resumed, the optimiser's moments "
                "start afresh."
            )
        mon_set = monitor_set(ds, mon_idx)
        if start_step == 0:
            run.save_monitor_set(mon_set)
        yield mon_set

        embeddings: list[EmbeddingSnapshot] = []  # the latest, handed out after its report

        def monitor(step: int, baseline: bool) -> MonitorReport:
            report, f, z = self._monitor(model, mon_images, mon_labels, device, step,
                                         step / steps_per_epoch, baseline)
            emb = EmbeddingSnapshot(step=step, features=f.half().numpy(),
                                    projections=z.half().numpy())
            run.save_embedding(emb)
            embeddings[:] = [emb]
            row = {"step": step, "epoch": report.epoch, "time": elapsed_before + clock(),
                   "knn_accuracy": report.knn_accuracy, "std": report.std,
                   "std_reference": report.std_reference,
                   "effective_rank": report.effective_rank,
                   "backbone_rank": report.backbone_rank, "verdict": report.verdict,
                   "alignment": report.alignment, "uniformity": report.uniformity,
                   "spectrum": [round(v, 3) for v in report.spectrum],
                   **report.extra}
            if baseline:
                row["baseline"] = True
            run.append_metrics(row)
            return report

        n_preview = min(cfg.monitor.preview_count, n_mon)

        def after_monitor(step: int) -> Iterator[Event]:
            """The embedding snapshot of the report just made, then the method's preview."""
            if embeddings:
                yield embeddings.pop()
            snap = self._preview(model, mon_images[:n_preview], device, step)
            if snap is not None:
                run.save_preview(snap)
                yield snap

        t_start = time.perf_counter()
        paused_total = 0.0

        def clock() -> float:
            return time.perf_counter() - t_start - paused_total

        if start_step == 0:
            self._calibrate_batchnorm(model, mon_images, device)
            base = monitor(0, baseline=True)
            summary = run.update_summary(baseline_knn=base.knn_accuracy,
                                         baseline_rank=base.effective_rank)
            yield base
            yield from after_monitor(0)

        def save(step: int) -> CheckpointSaved:
            state = {
                "format": CHECKPOINT_FORMAT,
                "method": cfg.method_name,
                "config": cfg.to_dict(),
                "backbone": backbone_name,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "step": step,
                "elapsed": elapsed_before + clock(),
                "rng": {"augment": gen.get_state(), "torch": torch.get_rng_state()},
                "data_order": order,
                "data_pos": pos,
            }
            import io

            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write_bytes(run.last_checkpoint, buf.getvalue())
            run.update_summary(step=step)
            return CheckpointSaved(step=step, path=str(run.last_checkpoint))

        def restore() -> int:
            """Back to ``last.pt`` (weights, optimiser, RNG, data position); its step."""
            nonlocal order, pos
            ckpt = torch.load(run.last_checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["model"])
            load_optimizer_state(optimizer, ckpt["optimizer"])  # saved by this run: fits
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            gen.set_state(ckpt["rng"]["augment"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            order, pos = ckpt["data_order"], int(ckpt["data_pos"])
            return int(ckpt["step"])

        def apply_settings(changes: dict[str, Any]) -> str:
            """Apply :data:`LIVE_SETTINGS` changes between steps; a readable summary."""
            nonlocal use_amp
            parts = []
            for key, value in changes.items():
                old_value = cfg.get(key)
                cfg.set(key, value)
                parts.append(f"{key} = {value} (was {old_value})")
            if "optim.weight_decay" in changes:  # norms and biases never decay
                for g in optimizer.param_groups:
                    if g["decays"]:
                        g["weight_decay"] = cfg.optim.weight_decay
            use_amp = cfg.run.amp and device.type == "cuda"
            cfg.save(run.config_path)
            run.update_summary(total_steps=cfg.optim.max_steps)
            return ", ".join(parts)

        if resume_order is not None and len(resume_order[0]) == len(ds):
            order, pos = resume_order
        else:
            order, pos = torch.randperm(len(ds), generator=gen), 0
        ips_ema: float | None = None
        last: dict[str, Any] = {}
        step = start_step
        status = "finished"
        model.train()
        if start_step == 0:
            yield save(0)  # a good state to come back to if the first steps diverge
        while step < total:
            if self._stop.is_set():
                status = "stopped"
                break
            if self._pause.is_set():
                yield save(step)
                yield Paused(step)
                t0 = time.perf_counter()
                while self._pause.is_set() and not self._stop.is_set():
                    time.sleep(0.05)
                paused_total += time.perf_counter() - t0
                if self._stop.is_set():
                    status = "stopped"
                    break
                with self._settings_lock:
                    changes, self._pending_settings = self._pending_settings, {}
                if changes:
                    text = apply_settings(changes)
                    total = cfg.optim.max_steps
                    yield RunWarning(f"Resumed at step {step} with {text}")
                yield Resumed(step)

            t0 = time.perf_counter()
            if pos + batch_size > len(ds):
                order = torch.randperm(len(ds), generator=gen)
                pos = 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            batch = images[idx.to(images.device)] if images.is_cuda else images[idx]
            if device.type == "cuda":
                batch = batch.to(device, non_blocking=True)
            lr = lr_at(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr * g["lr_mult"]
            autocast = (torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext())
            with autocast:
                out = model.training_step(batch, augment, gen)
            loss = out.loss
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                advice = (f"Try a lower learning rate (optim.lr = {cfg.optim.lr:g}), more "
                          f"warm-up steps (optim.warmup_steps = {cfg.optim.warmup_steps})"
                          + (", or AMP off (run.amp)" if use_amp else "") + ".")
                if not self.pause_on_divergence:
                    raise TrainingDiverged(
                        f"the loss became {loss_value} at step {step + 1}; the last good "
                        f"checkpoint is kept. {advice}")
                restored = restore()
                run.truncate_metrics(restored)
                run.truncate_previews(restored)
                self._pause.set()
                yield Diverged(
                    step=step + 1, value=str(loss_value), restored_step=restored,
                    message=(f"The loss became {loss_value} at step {step + 1}: training "
                             f"diverged. The model is back at its checkpoint of step "
                             f"{restored} and the run is paused. {advice} Then resume."),
                    settings=LIVE_SETTINGS)
                step = restored
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            extra = {k: float(v) for k, v in out.metrics.items()}
            extra.update(model.after_step(step, total))
            step += 1
            dt = time.perf_counter() - t0
            ips = batch_size / max(dt, 1e-9)
            ips_ema = ips if ips_ema is None else 0.9 * ips_ema + 0.1 * ips
            epoch = step / steps_per_epoch
            t_now = elapsed_before + clock()
            ev = StepMetrics(step=step, epoch=epoch, time=t_now, loss=loss_value, lr=lr,
                             images_per_sec=ips_ema, extra=extra)
            run.append_metrics({"step": step, "epoch": epoch, "time": t_now,
                                "loss": loss_value, "lr": lr,
                                "images_per_sec": ips_ema, **extra})
            last["loss"] = loss_value
            yield ev

            if step % cfg.monitor.every_steps == 0 or step == total:
                rep = monitor(step, baseline=False)
                last.update(knn_accuracy=rep.knn_accuracy, std=rep.std,
                            effective_rank=rep.effective_rank, verdict=rep.verdict)
                yield rep
                yield from after_monitor(step)
            if step % cfg.monitor.checkpoint_every == 0 and step < total:
                yield save(step)

        if status == "stopped" and step > start_step and step % cfg.monitor.every_steps != 0:
            # measure where the run stopped, so its summary holds its final state
            rep = monitor(step, baseline=False)
            last.update(knn_accuracy=rep.knn_accuracy, std=rep.std,
                        effective_rank=rep.effective_rank, verdict=rep.verdict)
            yield rep
            yield from after_monitor(step)
        if step > start_step or status == "stopped":
            yield save(step)
        summary = run.read_summary()
        final = {**summary.get("final", {}), **last}
        summary = run.update_summary(status=status, step=step, final=final)
        yield Finished(status=status, step=step, run_dir=str(run.path), summary=summary)

    def _calibrate_batchnorm(
        self, model: SSLMethod, images: torch.Tensor, device: torch.device
    ) -> None:
        calibrate_batchnorm(model, images, device, self.cfg.data.resolution)

    @torch.no_grad()
    def _preview(
        self, model: SSLMethod, images: torch.Tensor, device: torch.device, step: int
    ) -> PreviewSnapshot | None:
        """The method's preview of the first monitor images, with the same randomness
        (masks, noise, rotations) at every call so snapshots compare like with like."""
        was_training = model.training
        model.eval()
        gen = torch.Generator(device=device if device.type == "cuda" else "cpu")
        gen.manual_seed(777 + self.cfg.data.seed)
        try:
            p = model.preview(images.to(device), gen)
        finally:
            model.train(was_training)
        if p is None:
            return None

        def hwc(x: torch.Tensor) -> np.ndarray:
            if x.dtype != torch.uint8:
                raise TypeError(f"preview images must be uint8, got {x.dtype}")
            return x.detach().permute(0, 2, 3, 1).contiguous().cpu().numpy()

        return PreviewSnapshot(
            step=step,
            kind=p.kind,
            originals=hwc(p.originals),
            inputs=hwc(p.inputs),
            outputs=None if p.outputs is None else hwc(p.outputs),
            predicted=tuple(p.predicted),
            true=tuple(p.true),
            input_title=p.input_title,
            output_title=p.output_title,
        )

    @torch.no_grad()
    def _monitor(
        self,
        model: SSLMethod,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        device: torch.device,
        step: int,
        epoch: float,
        baseline: bool,
    ) -> tuple[MonitorReport, torch.Tensor, torch.Tensor]:
        """Embed the monitor subset in eval mode and score it; also returns the backbone
        features and projections (CPU float) for the embedding snapshot."""
        was_training = model.training
        model.eval()
        feats, projs = [], []
        for i in range(0, images.shape[0], 512):
            x = eval_transform(images[i : i + 512].to(device), self.cfg.data.resolution)
            f = model.embed(x)
            feats.append(f.float().cpu())
            projs.append(model.project(f).float().cpu())
        # alignment: two augmented views of the first monitor images, same draws each time
        n_pairs = min(256, images.shape[0])
        if self._mon_augment is None:
            self._mon_augment = ViewAugment(self.cfg.augment, self.cfg.data.resolution)
        gen = torch.Generator().manual_seed(4242 + self.cfg.data.seed)
        pair = images[:n_pairs].to(device)
        z1 = model.project(model.embed(self._mon_augment(pair, gen))).float().cpu()
        z2 = model.project(model.embed(self._mon_augment(pair, gen))).float().cpu()
        model.train(was_training)
        f = torch.cat(feats)
        z = torch.cat(projs)
        knn = None
        if labels is not None and len(set(labels.tolist())) > 1:
            knn = knn_accuracy(f, labels, self.cfg.monitor.knn_k, self.cfg.monitor.knn_temperature)
        std, ref, rank = collapse_std(z), 1.0 / math.sqrt(z.shape[1]), effective_rank(z)
        return MonitorReport(
            step=step,
            epoch=epoch,
            baseline=baseline,
            knn_accuracy=knn,
            std=std,
            std_reference=ref,
            effective_rank=rank,
            dim=int(z.shape[1]),
            backbone_rank=effective_rank(f),
            backbone_dim=int(f.shape[1]),
            verdict=collapse_verdict(std, ref, rank, int(z.shape[1]), int(z.shape[0])),
            spectrum=tuple(spectrum(z)),
            alignment=alignment(z1, z2),
            uniformity=uniformity(z),
        ), f, z
