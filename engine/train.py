"""The training loop, as a generator of events.

``Trainer.run()`` yields :mod:`engine.events` dataclasses; pause, resume and stop are
requests (thread-safe flags) checked between steps, so any client (CLI, GUI worker
thread, test) drives the same loop (after superqt's ``GeneratorWorker``).

The loop is a short sequence of named steps over a small :class:`RunState`: prepare,
then per step pause / train step / diverge / monitor / checkpoint, then finish. Models,
checkpoints and measurements come from the layers below (:mod:`engine.model`,
:mod:`engine.checkpoint`, :mod:`engine.monitoring`); the loop only orders them. It never
looks inside a batch: a dataset source hands out ``inputs`` and the method turns them
into a loss, so new modalities plug in as new sources and methods.

Under torchrun (:mod:`engine.distributed`) the same loop runs in every process:
``optim.batch_size`` is the global batch, each rank trains on its contiguous share of it
through ``DistributedDataParallel``, the data order is drawn identically on every rank
and kept in the checkpoint (so a run resumes under any process count), the monitor's
embedding work is split across the ranks, and only rank 0 writes the run folder and
yields events to its client.
"""

from __future__ import annotations

import collections
import json
import math
import os
import threading
import time
import traceback
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from engine import checkpoint as ckpt_io
from engine import distributed
from engine.config import Config
from engine.data import DataSource, load_configured
from engine.data.source import Inputs
from engine.errors import ConfigError, TrainingDiverged, UserInputError
from engine.events import (
    CheckpointSaved,
    DatasetReady,
    Diverged,
    Event,
    Failed,
    Finished,
    MonitorReport,
    Paused,
    QueryResult,
    Resumed,
    RunStarted,
    RunWarning,
    StepMetrics,
)
from engine.model import (
    autocast_dtype,
    build_model,
    build_optimizer,
    calibrate_batchnorm,
    pick_device,
    precision,
    schedule_lr,
    set_lr,
)
from engine.monitoring import Monitor, monitor_indices, monitor_set
from engine.presets import load_toml
from engine.registry import get_method_info
from engine.retrieval import rank_by_similarity
from engine.runs import TOKENIZER_FILE, RunFolder, atomic_write_bytes, default_runs_dir
from engine.verdict import not_learning_message

#: settings a paused run may change before it resumes (the rest fix the model and data)
#: monitor inputs a typed query returns (image-text methods' search)
QUERY_RESULTS = 12
LIVE_SETTINGS = ("optim.lr", "optim.warmup_steps", "optim.weight_decay", "optim.max_steps",
                 "run.amp")

#: seconds between owner heartbeats in the run folder (see :meth:`RunFolder.owner_alive`)
HEARTBEAT_SECONDS = 5.0

#: offset of ``run.seed`` for the data order, apart from the augmentation draws (the
#: order is the same on every rank, the augmentation differs per rank)
ORDER_SEED = 7919


@dataclass
class RunState:
    """What the loop carries from step to step (all of it goes into a checkpoint)."""

    step: int
    total: int
    order: torch.Tensor
    pos: int
    elapsed_before: float  # training seconds of earlier sessions of this run
    status: str = "finished"
    last: dict[str, Any] = field(default_factory=dict)  # latest loss and monitor scores
    ips_ema: float | None = None
    last_save: float = 0.0  # clock() of the last checkpoint
    last_beat: float = 0.0  # perf_counter() of the last heartbeat
    saved_step: int | None = None  # step of the last checkpoint written (rank 0)


class Trainer:
    """Runs one training run and yields its events.

    Create with a config for a new run, or with :meth:`resume` to continue a run folder.
    """

    def __init__(
        self,
        cfg: Config,
        runs_dir: str | Path | None = None,
        *,
        dataset: DataSource | None = None,
        cache_dir: str | Path | None = None,
        pause_on_divergence: bool = True,
    ) -> None:
        """``dataset``: a loaded source (else the config's is loaded); ``pause_on_divergence``:
        on a non-finite loss, restore the last checkpoint and pause for new settings (the
        GUI); when False the run fails instead (the CLI)."""
        self._notes: list[str] = []
        note = cfg.fit_schedule()
        if note:
            self._notes.append(note)
        cfg.validate()
        self.cfg = cfg
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.cache_dir = cache_dir
        self._dataset = dataset
        self._resume_dir: Path | None = None
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._settings_lock = threading.Lock()
        self._pending_settings: dict[str, Any] = {}
        self.pause_on_divergence = pause_on_divergence
        self.run_folder: RunFolder | None = None  # rank 0's only
        self._run_dir: str | None = None  # every rank's, once known
        self.world = distributed.World()
        self._tensorboard: Any = None  # engine.tensorboard.TensorBoardMirror when on
        self._said_not_learning = False
        self._baseline_knn: float | None = None  # the random-init kNN, for the verdict
        self._owns_group = False
        self._ddp: DistributedDataParallel | None = None
        self._stop_agreed = False  # under torchrun: some rank asked to stop (all know)
        self._queries: collections.deque[tuple[str, int]] = collections.deque()
        #: the monitor inputs' projections at the latest monitor step (what queries rank)
        self._search_space: torch.Tensor | None = None

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        max_steps: int | None = None,
        dataset: DataSource | None = None,
        cache_dir: str | Path | None = None,
        pause_on_divergence: bool = True,
    ) -> Trainer:
        """Continue a stopped or interrupted run from its ``last.pt``."""
        run = RunFolder(run_dir)
        if not run.last_checkpoint.exists():
            raise UserInputError(f"no checkpoint to resume from in {run.path}")
        if run.owner_alive():
            owner = run.read_owner()
            raise UserInputError(f"run {run.id} is being trained right now by process "
                                 f"{owner.get('pid')} on {owner.get('host')}")
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
        trial = self.cfg.copy()
        for key, value in changes.items():
            if key not in LIVE_SETTINGS:
                raise ConfigError(f"{key} cannot change in a running run; these can: "
                                  f"{', '.join(LIVE_SETTINGS)}")
            trial.set(key, value)
        with self._settings_lock:
            self._pending_settings.update({k: trial.get(k) for k in changes})

    def request_query(self, text: str, k: int = QUERY_RESULTS) -> None:
        """Rank the monitor inputs against a typed sentence (image-text methods): the
        answer is a :class:`QueryResult` event, made between steps (or while paused)
        from the latest monitor step's embeddings."""
        self._queries.append((str(text), int(k)))

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    # the loop ---------------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        """Train, yielding events; never raises for a failed run (it yields :class:`Failed`)."""
        try:
            for e in self._run():
                yield e
                warning = self._mirror(e)
                if warning is not None:
                    yield warning
        except UserInputError as e:
            yield self._fail(str(e), "", input_error=True)
        except TrainingDiverged as e:
            yield self._fail(str(e), "")
        except Exception as e:  # the run fails, the caller (GUI, CLI) survives
            yield self._fail(self._describe_failure(e), traceback.format_exc())
        finally:
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
            if self.run_folder is not None:
                self.run_folder.release()
                self.run_folder.close()
            if self._owns_group:
                distributed.shutdown()

    def _mirror(self, e: Event) -> RunWarning | None:
        """Feed ``e`` to the TensorBoard mirror (``run.tensorboard``, the main process
        only), started at RunStarted; a warning when the package is missing, and the
        run goes on without it."""
        if isinstance(e, RunStarted):
            if not (self.cfg.run.tensorboard and self.world.is_main):
                return None
            from engine.tensorboard import TensorBoardMirror

            try:
                self._tensorboard = TensorBoardMirror(e.run_dir, purge_step=e.start_step or None)
            except ImportError as err:
                return RunWarning(f"{err}. The run goes on without the mirror.")
            return None
        if self._tensorboard is not None:
            self._tensorboard.add(e)
        return None

    def _describe_failure(self, e: Exception) -> str:
        """The failure in plain words; under torchrun, which process and how to resume."""
        text = f"{type(e).__name__}: {e}"
        w = self.world
        if not w.distributed:
            return text
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        lost = isinstance(e, (RuntimeError, ConnectionError)) and any(
            k in str(e).lower() for k in ("connection", "peer", "closed", "timed out",
                                          "timeout", "broken pipe", "nccl", "gloo"))
        what = ("lost contact with another process of the run (it crashed or was killed)"
                if lost else f"failed ({type(e).__name__}: {first})")
        step = getattr(getattr(self, "state", None), "saved_step", None)
        where = self._run_dir or "the run folder"
        keep = (f" The checkpoint of step {step} is kept: resume with `python -m engine "
                f"train --resume {where}` (any process count)." if step is not None else "")
        return f"process {w.rank} of {w.size} {what}.{keep}"

    def _fail(self, message: str, details: str, input_error: bool = False) -> Failed:
        run_dir = self._run_dir
        if self.run_folder is not None:
            run_dir = str(self.run_folder.path)
            try:
                self.run_folder.update_summary(status="failed", error=message)
            except OSError:
                pass
        return Failed(message=message, details=details, run_dir=run_dir,
                      input_error=input_error)

    def _run(self) -> Iterator[Event]:
        yield from self._prepare()
        s = self.state
        while s.step < s.total:
            if self._stop_now():
                s.status = "stopped"
                break
            yield from self._answer_queries()
            if self._pause.is_set():
                yield from self._pause_point()
                if s.status == "stopped":
                    break
                continue
            if not (yield from self._train_step()):
                continue  # diverged: back at the checkpoint, paused
            if s.step % self.cfg.monitor.every_steps == 0 or s.step == s.total:
                yield from self._monitor_step(s.step)
            if s.step < s.total and self._checkpoint_due():
                yield self._checkpoint()
            self._heartbeat()
        yield from self._finish()

    def _stop_now(self) -> bool:
        """Whether to stop before the next step. Under torchrun a stop counts only once
        the ranks have agreed on it (the per-step all-reduce), so all stop together."""
        return self._stop_agreed if self.world.distributed else self._stop.is_set()

    # prepare ------------------------------------------------------------------------
    def _prepare(self) -> Iterator[Event]:
        """Load the data, build the model, open or create the run folder, restore a
        checkpoint, announce the run and measure the random-init baseline."""
        cfg = self.cfg
        self._join_group()
        w = self.world
        main = w.is_main
        if w.distributed:
            self.device = device = self._rank_device
        else:
            self.device = device = pick_device(cfg.run.device)
        torch.manual_seed(cfg.run.seed)
        ds = self._load_data()
        if main:
            yield DatasetReady(name=ds.name, n_images=len(ds), resolution=ds.resolution,
                               class_names=tuple(ds.class_names),
                               class_counts=tuple(ds.class_counts()),
                               skipped=tuple(ds.skipped), from_cache=ds.from_cache)
        if len(ds) < 2:
            raise UserInputError(f"dataset {ds.name} has {len(ds)} item(s); at least 2 needed")
        self.batch_size = cfg.optim.batch_size  # the global batch, over all processes
        if self.batch_size % w.size:
            raise UserInputError(
                f"optim.batch_size = {self.batch_size} is the global batch and must be "
                f"divisible by the {w.size} processes of the run (each takes "
                f"batch_size / {w.size}); try {max(w.size, self.batch_size // w.size * w.size)}")
        if self.batch_size > len(ds):
            fit = len(ds) // w.size * w.size
            if fit < w.size:
                raise UserInputError(f"dataset {ds.name} has {len(ds)} items, fewer than the "
                                     f"{w.size} processes of the run")
            if main:
                yield RunWarning(f"optim.batch_size = {self.batch_size} exceeds the "
                                 f"{len(ds)} items of the dataset; using {fit}")
            self.batch_size = fit
        self.local_batch = self.batch_size // w.size
        if main:
            for note in self._notes:
                yield RunWarning(note)

        self.model, self.backbone_name = build_model(cfg, device)
        self.model.attach_source(ds)
        self.sync_bn = w.distributed and (
            cfg.run.sync_batchnorm == "on" or (cfg.run.sync_batchnorm == "auto"
                                              and get_method_info(cfg.method_name).sync_batchnorm))
        if self.sync_bn:
            converted = distributed.convert_sync_batchnorm(self.model, device)
            assert converted is self.model  # the method object itself is never a BatchNorm
        self.optimizer = build_optimizer(self.model, cfg)
        # mixed precision where the device has a fast low-precision path (autocast_dtype);
        # the losses compute in float32 under it. float16 (older GPUs) needs loss scaling.
        self.amp_dtype = autocast_dtype(device, self.backbone_name)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.run.amp
                                           and self.amp_dtype == torch.float16)
        # the method's own augmentation: the loop only hands it back to training_step
        self.augment: Any = self.model.train_augment()
        # augmentation draws differ per rank; the data order is the same on every rank
        self.gen = torch.Generator().manual_seed(cfg.run.seed + 1_000_003 * w.rank)
        self.order_gen = torch.Generator().manual_seed(cfg.run.seed + ORDER_SEED)

        mon_idx = monitor_indices(len(ds), cfg)
        labels = ds.labels[mon_idx] if ds.labels is not None else None
        unigram = getattr(ds, "unigram_bits", None)
        self.monitor = Monitor(cfg, ds.inputs[mon_idx], labels, device,
                               heldout=getattr(ds, "heldout", None),
                               reference={} if unigram is None else {"unigram_bits": unigram})
        self.inputs = self._place_inputs(ds.inputs, device)
        self.n_items = len(ds)
        self.steps_per_epoch = max(1, len(ds) // self.batch_size)

        run, start_step, elapsed, order = self._open_run_folder(ds)
        self.run_folder = run
        if order is None or len(order[0]) != len(ds):
            order = (torch.randperm(len(ds), generator=self.order_gen), 0)
        self._start_step = start_step
        self.state = RunState(step=start_step, total=cfg.optim.max_steps, order=order[0],
                              pos=order[1], elapsed_before=elapsed)
        self.state.saved_step = start_step if start_step else None
        if w.distributed:
            # after any restore: DDP starts every rank from rank 0's weights and buffers
            self._ddp = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self._t_start = time.perf_counter()
        self._paused_total = 0.0
        if run is not None:
            run.claim()
        self.state.last_beat = time.perf_counter()

        base_needed = start_step == 0 and (run is None or not run.has_baseline())
        base_needed = bool(distributed.broadcast_object(base_needed))
        if run is not None:
            yield RunStarted(run_id=run.id, run_dir=str(run.path), method=cfg.method_name,
                             device=self._device_text(), backbone=self.backbone_name,
                             feature_dim=self.model.feature_dim, n_images=len(ds),
                             total_steps=self.state.total, start_step=start_step,
                             steps_per_epoch=self.steps_per_epoch, config=cfg.to_dict(),
                             pretext_chance=self.model.pretext_chance)
            if not self._optimizer_resumed:
                yield RunWarning(
                    "The checkpoint's optimiser state was saved with other parameter groups "
                    "(an older version of this method); the weights resumed, the "
                    "optimiser's moments start afresh.")
            ms = monitor_set(ds, mon_idx)
            if start_step == 0:
                run.save_monitor_set(ms)
            yield ms
        self._pending_embedding: Any = None
        if base_needed:
            calibrate_batchnorm(self.model, self.monitor.inputs, device, cfg.data.resolution)
            base = self._measure(0, baseline=True)
            if run is not None and base is not None:
                run.update_summary(baseline_knn=base.knn_accuracy,
                                   baseline_rank=base.effective_rank)
                self._baseline_knn = base.knn_accuracy
                yield base
                yield from self._after_measure(0)
        self.model.train()
        if start_step == 0 and run is not None:
            yield self._checkpoint()  # a good state to come back to if the first steps diverge

    def _join_group(self) -> None:
        """Under torchrun: join the process group (once per process)."""
        if not distributed.launched():
            return
        if not distributed.is_distributed():
            self.world, self._rank_device = distributed.init(self.cfg.run.device)
            self._owns_group = True
        else:
            import torch.distributed as dist

            self.world = distributed.World(dist.get_rank(), dist.get_world_size(),
                                           int(os.environ.get("LOCAL_RANK", 0)),
                                           str(dist.get_backend()))
            self._rank_device = distributed.init(self.cfg.run.device)[1]

    def _load_data(self) -> DataSource:
        """The dataset; under torchrun rank 0 decodes (and caches) it first, so the other
        ranks map the cached copy instead of decoding it again."""
        if self._dataset is not None:
            return self._dataset
        modality = get_method_info(self.cfg.method_name).modality
        if self.world.distributed and not self.world.is_main:
            distributed.barrier()  # rank 0 has loaded it
            return load_configured(self.cfg.data, self.cache_dir, modality=modality)
        try:
            return load_configured(self.cfg.data, self.cache_dir, modality=modality)
        finally:
            if self.world.distributed:
                distributed.barrier()

    def _place_inputs(self, inputs: Inputs, device: torch.device) -> Inputs:
        """Where batches are cut from: on a GPU when the decoded set fits comfortably in
        its memory, else left on the CPU (a memory-mapped cache stays mapped) and each
        batch is pinned and copied."""
        if device.type != "cuda":
            return inputs
        free, _ = torch.cuda.mem_get_info(device)
        nbytes = inputs.numel() * inputs.element_size()
        return inputs.to(device) if nbytes < free // 4 else inputs

    @property
    def use_amp(self) -> bool:
        """Whether steps run in mixed precision now (``run.amp`` may change while paused)."""
        return self.cfg.run.amp and self.amp_dtype is not None

    def _device_text(self) -> str:
        """Where the run trains, and in what precision when it is not float32."""
        w = self.world
        amp = (f" (AMP, {str(self.amp_dtype).removeprefix('torch.')})"
               if self.use_amp else "")
        if not w.distributed:
            return f"{self.device}{amp}"
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        return f"{kind} × {w.size} processes ({w.backend}){amp}"

    def _open_run_folder(self, ds: DataSource
                         ) -> tuple[RunFolder | None, int, float,
                                    tuple[torch.Tensor, int] | None]:
        """The resumed run's folder restored to its checkpoint, or a new run's folder.

        Under torchrun only rank 0 opens the folder and reads the checkpoint; it hands the
        checkpoint to the other ranks (no shared file system needed), which restore it
        too, and the folder's path. Other ranks get no folder (None)."""
        cfg, w = self.cfg, self.world
        self._optimizer_resumed = True
        run: RunFolder | None = None
        if self._resume_dir is not None:
            ck = None
            if w.is_main:
                run = RunFolder(self._resume_dir)
                ck = ckpt_io.load(run.last_checkpoint)
            ck = distributed.broadcast_object(ck)
            assert ck is not None
            self._optimizer_resumed = ckpt_io.restore_training(
                ck, self.model, self.optimizer, self.scaler, self.gen)
            if "order" in ck.rng:
                self.order_gen.set_state(ck.rng["order"])
            elif "augment" in ck.rng:  # older runs drew the order from the augment stream
                self.order_gen.set_state(ck.rng["augment"])
            if w.rank > 0:  # each rank's own augmentation stream, continued from the step
                self.gen.manual_seed(cfg.run.seed + 1_000_003 * w.rank + ck.step)
            self._run_dir = str(self._resume_dir)
            if run is not None:
                run.truncate_metrics(ck.step)
                run.truncate_previews(ck.step)
                cfg.save(run.config_path)  # records an extended max_steps
                run.update_summary(status="running", total_steps=cfg.optim.max_steps,
                                   processes=w.size)
            order = (ck.data_order, ck.data_pos) if ck.data_order is not None else None
            return run, ck.step, ck.elapsed, order
        if not w.is_main:
            self._run_dir = distributed.broadcast_object(None)
            return None, 0, 0.0, None
        run = RunFolder.create(self.runs_dir, cfg.method_name, ds.name, cfg.run.name)
        self._run_dir = distributed.broadcast_object(str(run.path))
        tokenizer = getattr(ds, "tokenizer", None)
        if tokenizer is not None:  # a text run reopens and exports with its vocabulary
            atomic_write_bytes(run.path / TOKENIZER_FILE,
                               json.dumps(tokenizer.to_dict(), indent=1).encode("utf-8"))
        cfg.save(run.config_path)
        run.write_summary({
            "status": "running", "run_id": run.id, "method": cfg.method_name,
            "dataset": ds.name, "backbone": self.backbone_name, "device": self._device_text(),
            "n_images": len(ds), "classes": list(ds.class_names),
            "skipped_files": len(ds.skipped), "started": time.time(), "step": 0,
            "total_steps": cfg.optim.max_steps, "baseline_knn": None, "final": {},
            "processes": w.size,
        })
        return run, 0, 0.0, None

    # per step ------------------------------------------------------------------------
    def _clock(self) -> float:
        """Training seconds of this run so far (pauses excluded, earlier sessions included)."""
        return (self.state.elapsed_before + time.perf_counter() - self._t_start
                - self._paused_total)

    def _next_batch(self) -> Inputs:
        """This rank's share of the next global batch: rows ``rank * b .. (rank + 1) * b``
        of it, so the shares in rank order are the batch one process would take."""
        s, w = self.state, self.world
        if s.pos + self.batch_size > self.n_items:
            s.order = torch.randperm(self.n_items, generator=self.order_gen)
            s.pos = 0
        start = s.pos + w.rank * self.local_batch
        idx = s.order[start : start + self.local_batch]
        s.pos += self.batch_size
        inputs = self.inputs
        if inputs.is_cuda:
            return inputs[idx.to(inputs.device)]
        batch = inputs[idx]
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        return batch

    def _train_step(self) -> Generator[Event, None, bool]:
        """One optimisation step (True), or the divergence path when the loss is not
        finite (False)."""
        s, cfg = self.state, self.cfg
        t0 = time.perf_counter()
        batch = self._next_batch()
        lr = schedule_lr(s.step, cfg)
        set_lr(self.optimizer, lr)
        with precision(self.device, self.amp_dtype if self.use_amp else None):
            if self._ddp is not None:
                out = self._ddp(batch, self.augment, self.gen)
            else:
                out = self.model.training_step(batch, self.augment,  # type: ignore[arg-type]
                                               self.gen)
        names = list(out.metrics)
        if self.world.distributed:
            # one small all-reduce: the mean loss and metrics over the ranks, and whether
            # any rank was asked to stop (so all stop at the same step)
            values = torch.tensor([float(out.loss.detach())]
                                  + [float(out.metrics[k]) for k in names]
                                  + [float(self._stop.is_set())], dtype=torch.float64)
            values = distributed.mean_over_ranks(values.to(self.device)).cpu()
            loss_value = float(values[0])
            metrics = {k: float(v) for k, v in zip(names, values[1:-1].tolist(), strict=True)}
            if float(values[-1]) > 0:
                self._stop_agreed = True
        else:
            loss_value = float(out.loss.detach())
            metrics = {k: float(v) for k, v in out.metrics.items()}
        if not math.isfinite(loss_value):
            yield from self._diverge(loss_value)
            return False
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        extra = metrics
        extra.update(self.model.after_step(s.step, s.total))
        s.step += 1
        ips = self.batch_size / max(time.perf_counter() - t0, 1e-9)
        s.ips_ema = ips if s.ips_ema is None else 0.9 * s.ips_ema + 0.1 * ips
        s.last["loss"] = loss_value
        if self.run_folder is None:
            return True  # not rank 0: nothing to log or tell
        ev = StepMetrics(step=s.step, epoch=s.step / self.steps_per_epoch, time=self._clock(),
                         loss=loss_value, lr=lr, images_per_sec=s.ips_ema, extra=extra)
        self.run_folder.append_metrics(ev.to_row())
        yield ev
        return True

    def _diverge(self, loss_value: float) -> Iterator[Event]:
        """Non-finite loss: fail (CLI) or go back to the last checkpoint and pause (GUI)."""
        s, cfg, run = self.state, self.cfg, self.run_folder
        assert run is not None
        advice = (f"Try a lower learning rate (optim.lr = {cfg.optim.lr:g}), more "
                  f"warm-up steps (optim.warmup_steps = {cfg.optim.warmup_steps})"
                  + (", or AMP off (run.amp)" if self.use_amp else "") + ".")
        if not self.pause_on_divergence:
            raise TrainingDiverged(f"the loss became {loss_value} at step {s.step + 1}; the "
                                   f"last good checkpoint is kept. {advice}")
        ck = ckpt_io.load(run.last_checkpoint)
        ckpt_io.restore_training(ck, self.model, self.optimizer, self.scaler, self.gen)
        if ck.data_order is not None:
            s.order, s.pos = ck.data_order, ck.data_pos
        run.truncate_metrics(ck.step)
        run.truncate_previews(ck.step)
        self._pause.set()
        yield Diverged(
            step=s.step + 1, value=str(loss_value), restored_step=ck.step,
            message=(f"The loss became {loss_value} at step {s.step + 1}: training "
                     f"diverged. The model is back at its checkpoint of step {ck.step} and "
                     f"the run is paused. {advice} Then resume."),
            settings=LIVE_SETTINGS)
        s.step = ck.step

    def _pause_point(self) -> Iterator[Event]:
        """Checkpoint, wait for resume or stop, then apply the settings changed meanwhile."""
        s = self.state
        yield self._checkpoint()
        yield Paused(s.step)
        t0 = time.perf_counter()
        while self._pause.is_set() and not self._stop.is_set():
            time.sleep(0.05)
            self._heartbeat()
            yield from self._answer_queries()
        self._paused_total += time.perf_counter() - t0
        if self._stop.is_set():
            s.status = "stopped"
            return
        with self._settings_lock:
            changes, self._pending_settings = self._pending_settings, {}
        if changes:
            yield RunWarning(f"Resumed at step {s.step} with {self._apply_settings(changes)}")
        yield Resumed(s.step)

    def _apply_settings(self, changes: dict[str, Any]) -> str:
        """Apply :data:`LIVE_SETTINGS` changes between steps; a readable summary."""
        cfg, run = self.cfg, self.run_folder
        assert run is not None
        parts = []
        for key, value in changes.items():
            old_value = cfg.get(key)
            cfg.set(key, value)
            parts.append(f"{key} = {value} (was {old_value})")
        if "optim.weight_decay" in changes:  # norms and biases never decay
            for g in self.optimizer.param_groups:
                if g["decays"]:
                    g["weight_decay"] = cfg.optim.weight_decay
        self.state.total = cfg.optim.max_steps
        cfg.save(run.config_path)
        run.update_summary(total_steps=cfg.optim.max_steps)
        return ", ".join(parts)

    # monitor -------------------------------------------------------------------------
    def _measure(self, step: int, baseline: bool) -> MonitorReport | None:
        """Score the model on the monitor set and log the report; its embedding snapshot
        waits for :meth:`_after_measure` (clients get the report first). Every rank takes
        part (each embeds its share); rank 0 gets the report, the others None."""
        measured = self.monitor.measure(self.model, step, step / self.steps_per_epoch,
                                        baseline)
        run = self.run_folder
        if measured is None or run is None:
            return None
        report, emb = measured
        self._search_space = torch.from_numpy(emb.projections).float()
        run.save_embedding(emb)
        self._pending_embedding = emb
        run.append_metrics({**report.to_row(), "time": self._clock()})
        return report

    def _answer_queries(self) -> Iterator[Event]:
        """Answer the typed queries waiting (rank 0 only: the window drives one-process
        runs; under torchrun nobody asks)."""
        while self._queries:
            text, k = self._queries.popleft()
            step = self.state.step
            if not text.strip():
                yield QueryResult(step, text, message="Type a sentence to search for.")
                continue
            if self._search_space is None:
                yield QueryResult(step, text, message="The first monitor step has not "
                                  "been measured yet.")
                continue
            query = self.model.embed_query(text)
            if query is None:
                yield QueryResult(step, text, message=f"{self.cfg.method_name} has no "
                                  "text tower: only image-text methods answer queries.")
                continue
            idx, scores = rank_by_similarity(query, self._search_space, k)
            yield QueryResult(step, text, tuple(idx.tolist()), tuple(scores.tolist()))

    def _after_measure(self, step: int) -> Iterator[Event]:
        """The embedding snapshot of the report just made, then the method's preview."""
        run = self.run_folder
        assert run is not None
        if self._pending_embedding is not None:
            yield self._pending_embedding
            self._pending_embedding = None
        snap = self.monitor.preview(self.model, step)
        if snap is not None:
            run.save_preview(snap)
            yield snap

    def _monitor_step(self, step: int) -> Iterator[Event]:
        rep = self._measure(step, baseline=False)
        if rep is None:
            return
        self.state.last.update(knn_accuracy=rep.knn_accuracy, std=rep.std,
                               effective_rank=rep.effective_rank, verdict=rep.verdict)
        yield rep
        yield from self._after_measure(step)
        if not self._said_not_learning and self.run_folder is not None:
            if self._baseline_knn is None:  # a resumed run measured it in an earlier session
                self._baseline_knn = self.run_folder.read_summary().get("baseline_knn")
            text = not_learning_message(self._baseline_knn, rep.knn_accuracy, step,
                                        self.state.total,
                                        get_method_info(self.cfg.method_name).family,
                                        rep.verdict)
            if text is not None:
                self._said_not_learning = True  # once per session of the run
                self.run_folder.update_summary(not_learning_at=step)
                yield RunWarning(text)

    # checkpoint ----------------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        """By step (``monitor.checkpoint_every``) or by time (``monitor.checkpoint_seconds``),
        so a killed run loses at most that much training."""
        m = self.cfg.monitor
        if self.run_folder is None:
            return False  # only rank 0 writes checkpoints
        if self.state.step % m.checkpoint_every == 0:
            return True
        return m.checkpoint_seconds > 0 and \
            self._clock() - self.state.last_save >= m.checkpoint_seconds

    def _checkpoint(self) -> CheckpointSaved:
        s, run = self.state, self.run_folder
        assert run is not None
        elapsed = self._clock()
        ckpt_io.save(run.last_checkpoint, ckpt_io.Checkpoint(
            step=s.step, method=self.cfg.method_name, config=self.cfg.to_dict(),
            backbone=self.backbone_name, model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
            elapsed=elapsed,
            rng={"augment": self.gen.get_state(), "order": self.order_gen.get_state(),
                 "torch": torch.get_rng_state()},
            data_order=s.order, data_pos=s.pos))
        s.last_save = elapsed
        s.saved_step = s.step
        run.update_summary(step=s.step)
        return CheckpointSaved(step=s.step, path=str(run.last_checkpoint))

    def _heartbeat(self) -> None:
        now = time.perf_counter()
        if now - self.state.last_beat >= HEARTBEAT_SECONDS and self.run_folder is not None:
            self.state.last_beat = now
            self.run_folder.heartbeat(self.state.step)

    # finish --------------------------------------------------------------------------
    def _finish(self) -> Iterator[Event]:
        s, run = self.state, self.run_folder
        stopped_between = s.status == "stopped" and s.step % self.cfg.monitor.every_steps
        if stopped_between and s.step > self._start_step:
            # measure where the run stopped, so its summary holds its final state
            yield from self._monitor_step(s.step)
        if run is None:  # not rank 0
            distributed.barrier()  # rank 0's checkpoint is written before anyone leaves
            yield Finished(status=s.status, step=s.step, run_dir=self._run_dir or "",
                           summary={})
            return
        yield self._checkpoint()
        distributed.barrier()
        summary = run.read_summary()
        final = {**summary.get("final", {}), **s.last}
        summary = run.update_summary(status=s.status, step=s.step, final=final)
        yield Finished(status=s.status, step=s.step, run_dir=str(run.path), summary=summary)
