"""DINO: self-distillation with no labels, from a momentum teacher to the student.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin. "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021.

The student (backbone + :class:`~engine.heads.DINOHead`) is trained to match, for every
other view, the teacher's probability distribution over ``K`` prototypes; the teacher is
an exponential moving average of the student and gets no gradient. Collapse is avoided
by balancing two opposite forces on the teacher's output (paper section 3.1 and 5.3):

* **centering** subtracts a running mean ``C`` of the teacher's outputs, so no single
  prototype can win for every image (it pushes towards the uniform distribution);
* **sharpening** uses a low teacher temperature (0.04 vs 0.1 for the student), which
  pushes each distribution towards one prototype (away from uniform).

Without centering one prototype dominates every image; without sharpening the outputs
become uniform. Either way the teacher's outputs stop depending on the image. Multi-crop
(optional ``local_crops``) adds small crops seen only by the student ("local-to-global"
correspondence).

On several processes the loss stays per process (each image's cross-entropy needs only its
own views; the mean over processes is the whole-batch mean), but the centre is updated
with the mean teacher output of the global batch (averaged over the processes without
gradient, as the paper's ``update_center`` all-reduces it), so every process keeps the
same centre. BatchNorm (in the backbone and, with ``head_batch_norm``, the head) is
synchronised by default, in the student and the teacher alike: the official
``main_dino.py`` converts both with ``nn.SyncBatchNorm.convert_sync_batchnorm`` when the
model has any.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.augment import ViewAugment, to_uint8
from engine.config import Config, MethodConfig, param
from engine.distributed import mean_over_ranks
from engine.errors import ConfigError
from engine.heads import DINOHead
from engine.losses import dino_center_update, dino_loss
from engine.methods._base import InputView, StepOutput
from engine.methods._joint import MomentumMethod
from engine.registry import register_method

#: the views panel shows at most this many local crops (multi-crop uses up to 10)
LOCAL_CROPS_SHOWN = 4


@dataclass
class DINOConfig(MethodConfig):
    out_dim: int = param(
        1024,
        "Number K of prototypes, the size of the output distributions (65536 in the paper "
        "on ImageNet, 2048-4096 in CIFAR recipes). At most 8192: the collapse scores are "
        "computed from a K x K matrix, which grows slow beyond a few thousand.",
        min=2,
        max=8192,
    )
    head_hidden_dim: int = param(
        2048, "Hidden width of the 3-layer head MLP (paper: 2048).", min=16, max=16384
    )
    bottleneck_dim: int = param(
        256, "Bottleneck before the L2-normalised prototype layer (paper: 256).",
        min=2, max=4096,
    )
    head_batch_norm: bool = param(
        False,
        "BatchNorm after the head's hidden layers (the paper code's use_bn_in_head, off "
        "there for ViTs; it speeds up the start with small CNNs and ResNets).",
    )
    student_temp: float = param(
        0.1, "Softmax temperature τs of the student (paper: 0.1).", min=0.001, max=10.0
    )
    teacher_temp: float = param(
        0.04,
        "Softmax temperature τt of the teacher after the warm-up (paper: 0.04; up to "
        "0.07 for long runs, with a warm-up). Lower sharpens more.",
        min=0.001,
        max=10.0,
    )
    warmup_teacher_temp: float = param(
        0.04, "Teacher temperature at step 0, raised linearly to teacher_temp during the "
        "warm-up (paper: 0.04).", min=0.001, max=10.0,
    )
    warmup_teacher_temp_steps: int = param(
        0, "Steps of the linear teacher-temperature warm-up (paper: 0 epochs by default, "
        "30 epochs with τt = 0.07).", min=0, max=10_000_000,
    )
    center_momentum: float = param(
        0.9, "Momentum m of the centre update C <- m C + (1 - m) mean(teacher outputs) "
        "(paper: 0.9).", min=0.0, max=0.9999,
    )
    momentum_teacher: float = param(
        0.996,
        "Starting EMA momentum of the teacher, raised to 1 on a cosine schedule (paper: "
        "0.996). Short runs need a teacher that follows the student faster: 0.97 in the "
        "500-step CPU preset, 0.99 in the GPU one.",
        min=0.0,
        max=1.0,
    )
    centering: bool = param(
        True,
        "Subtract the running mean of the teacher's outputs before its softmax.",
        collapse="Without centering one prototype dominates: the teacher gives (almost) "
        "the same one-hot distribution for every image.",
    )
    sharpening: bool = param(
        True,
        "Use the low teacher temperature; off uses the student temperature for the teacher "
        "too (the paper's 'no sharpening', τt = τs).",
        collapse="Without sharpening the centred teacher outputs become uniform over the "
        "prototypes for every image.",
    )
    local_crops: int = param(
        0,
        "Number of small local crops per image (multi-crop), seen only by the student "
        "(paper: 8 at 96 px for 224 px global crops). They are resolution/2 px.",
        min=0,
        max=16,
    )
    local_crop_min_scale: float = param(
        0.05, "Smallest area fraction of a local crop (paper: 0.05; global crops use the "
        "augment section, 0.4-1 in the paper).", min=0.01, max=1.0, advanced=True,
    )
    local_crop_max_scale: float = param(
        0.4, "Largest area fraction of a local crop (paper: 0.4).", min=0.01, max=1.0,
        advanced=True,
    )


    def validate(self, cfg: Config) -> None:
        """The local crops' scale range must not be empty."""
        if self.local_crop_min_scale > self.local_crop_max_scale:
            raise ConfigError(
                "method.local_crop_min_scale must not exceed method.local_crop_max_scale "
                f"({self.local_crop_min_scale:g} > {self.local_crop_max_scale:g})")


@register_method(
    "dino",
    config=DINOConfig,
    family="non-contrastive",
    description="Student matches a momentum teacher's centred, sharpened distribution "
    "over prototypes (self-distillation).",
    paper="Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers",
    # In a CPU time budget DINO gains most from more steps (teacher updates): 120 s on
    # shapes (bench/learning.py, 2026-12-01, one seed each) end at kNN 34.1 % with batch
    # 128 and lr 2e-3, 35.6 % at lr 1e-3, 43.8 % with batch 64 and 48.2 % with batch 32
    # (2,098 steps) at lr 1e-3; random init 22.0 %. The paper finds DINO robust to small
    # batches (Caron et al. 2021, Table 9: batch 128 within 2 points of 1024). Not better
    # (2026-12-02, one seed): teacher momentum 0.99 (32.0 %, 1,230 steps). The paper
    # evaluates the teacher, which leads the student there (its Fig. 6); here, after
    # 120 s, the teacher's backbone is behind: kNN 34.3 % / 31.8 % against the student's
    # 37.5 % / 33.1 % (seeds 0 / 1), so the student's backbone stays what is evaluated.
    preset={
        "method.head_hidden_dim": 512,
        "method.momentum_teacher": 0.97,
        "method.head_batch_norm": True,
        "optim.batch_size": 32,
        "optim.lr": 1e-3,
    },
    gpu_preset={
        "optim.lr": 2e-3,  # as before the CPU preset's change; not measured on a GPU
        "method.out_dim": 2048,
        "method.head_hidden_dim": 2048,
        "method.momentum_teacher": 0.99,
        "method.local_crops": 6,
        "optim.batch_size": 256,
        "optim.max_steps": 3000,
    },
    collapse_advice=(
        "Balance centering and sharpening: a teacher temperature too high makes the "
        "outputs uniform, too low one-hot; a slower teacher (momentum closer to 1) "
        "stabilises."
    ),
    sync_batchnorm=True,
)
class DINO(MomentumMethod):
    center: torch.Tensor
    steps_done: torch.Tensor

    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: DINOConfig = cfg.method  # type: ignore[assignment]
        m.validate(cfg)
        self.m = m
        self.head = DINOHead(
            feature_dim, m.out_dim, m.head_hidden_dim, m.bottleneck_dim,
            batch_norm=m.head_batch_norm,
        )
        self.base_momentum = m.momentum_teacher
        self.teacher_backbone = self.add_target(self.backbone)
        self.teacher_head = self.add_target(self.head)
        self.register_buffer("center", torch.zeros(1, m.out_dim))
        # Steps done so far, kept in the checkpoint so the temperature warm-up resumes.
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.local_augment: ViewAugment | None = None
        if m.local_crops > 0:
            local_cfg = dataclasses.replace(
                cfg.augment,
                crop_min_scale=m.local_crop_min_scale,
                crop_max_scale=m.local_crop_max_scale,
            )
            self.local_augment = ViewAugment(local_cfg, max(8, cfg.data.resolution // 2))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        # The K prototype scores the loss acts on. (The 256-d bottleneck would be cheaper
        # for the monitor but shows uniform collapse far less: it need not be constant.)
        return self.head(features)

    def local_views(self, images: torch.Tensor, generator: torch.Generator
                    ) -> torch.Tensor | None:
        """The ``local_crops`` small crops of every image, stacked crop by crop (rows
        ``k n + i`` are crop ``k`` of image ``i``); None without local crops."""
        if self.local_augment is None:
            return None
        return torch.cat([self.local_augment(images, generator)
                          for _ in range(self.m.local_crops)])

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The two global crops (student and teacher) and the student's local crops."""
        n = samples.shape[0]
        views = super().training_inputs(samples, generator)
        views[0].title, views[1].title = "global crop 1", "global crop 2"
        views[0].caption = views[1].caption = "seen by the student and the teacher"
        local = self.local_views(samples, generator)
        if local is not None:
            shown = to_uint8(local)
            for k in range(min(self.m.local_crops, LOCAL_CROPS_SHOWN)):
                views.append(InputView(f"local crop {k + 1}", shown[k * n:(k + 1) * n],
                                       caption="small crop, the student's only"))
        return views

    def teacher_temperature(self, step: int) -> float:
        """The teacher's temperature at ``step`` (the student's without sharpening)."""
        m = self.m
        if not m.sharpening:
            return m.student_temp
        if step < m.warmup_teacher_temp_steps:
            frac = step / m.warmup_teacher_temp_steps
            return m.warmup_teacher_temp + frac * (m.teacher_temp - m.warmup_teacher_temp)
        return m.teacher_temp

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        m = self.m
        views = self.two_views(images, augment, generator)
        student_out = list(self.head(self.backbone(views)).chunk(2))
        local = self.local_views(images, generator)
        if local is not None:
            student_out += list(self.head(self.backbone(local)).chunk(m.local_crops))
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(views)).float()
        center = self.center if m.centering else torch.zeros_like(self.center)
        t_temp = self.teacher_temperature(int(self.steps_done))
        loss = dino_loss(student_out, list(teacher.chunk(2)), center, m.student_temp, t_temp)
        with torch.no_grad():
            log_q = F.log_softmax((teacher - center) / t_temp, dim=-1)
            entropy = -(log_q.exp() * log_q).sum(dim=-1).mean()
            # Each teacher view meets the same number of student views, so the mean
            # cross-entropy minus the mean teacher entropy is the mean KL(q || p).
            kl = loss.detach() - entropy
            if m.centering:
                # the global batch's mean teacher output: every process has as many rows,
                # so the mean over processes of the local means is the whole-batch mean
                batch_mean = mean_over_ranks(teacher.mean(dim=0, keepdim=True))
                self.center.copy_(
                    dino_center_update(self.center, batch_mean, m.center_momentum))
        return StepOutput(loss, {"teacher_entropy": entropy, "kl": kl})

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        self.steps_done.fill_(step + 1)
        return super().after_step(step, total_steps)
