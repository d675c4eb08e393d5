"""Rotation prediction (RotNet): recognise by how many quarter turns an image was rotated.

Gidaris, Singh, Komodakis. "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018.

Every image is rotated by 0, 90, 180 and 270 degrees (``torch.rot90``: exact, no
interpolation, so no resampling artefact gives the rotation away, the reason the paper
uses multiples of 90 degrees), the backbone encodes the rotated image and a head classifies
the rotation four ways. To tell "upright" from "upside down" the network has to find the
objects and their canonical orientation, which is the representation the method is after.

Details of this implementation:

* All four rotations of each image are in the same batch (the paper's choice, Sec. 3,
  which it found better than one random rotation per image); ``all_rotations = false``
  draws one rotation per image instead (4x cheaper per image).
* Views are random crops and flips only (the paper's CIFAR recipe); colour jitter adds
  nothing to a geometric task. A horizontal flip keeps an upright image upright, so it
  never changes the label.
* Head: an MLP (Linear-BN-ReLU-Linear) on the pooled backbone features, so the last
  backbone layer is not spent on the rotation classes alone (the paper finds the
  penultimate blocks transfer best); ``head_hidden_dim = 0`` gives a linear classifier.
* Loss: cross-entropy over the four rotations (:func:`engine.losses.pretext_cross_entropy`,
  the paper's eq. 2-3); ``pretext_accuracy`` is streamed at every step (chance 1/4).
* ``embed`` is the backbone on the whole, unrotated image, as for every other method.

Rotation prediction needs images that have an upright orientation (photos, digits, the
built-in ``shapes`` in their default "upright" pose, where shapes stand near their upright
pose and cast shadows downwards). On a dataset whose images are equally likely in every
orientation the four rotated copies are indistinguishable in distribution and the accuracy
stays at chance by construction: ``data.shapes_orientation = "any"`` shows this.

On several processes nothing is gathered: the loss and ``pretext_accuracy`` are means over
examples, every process has as many, so their mean over processes is the whole batch's.
BatchNorm stays per process (``run.sync_batchnorm = "on"`` synchronises it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.augment import ViewAugment, eval_transform, to_uint8
from engine.config import Config, MethodConfig, param
from engine.heads import mlp_head
from engine.losses import pretext_cross_entropy
from engine.methods._base import InputView, Preview, SSLMethod, StepOutput
from engine.methods._reconstruction import geometric_only
from engine.pretext import ROTATION_NAMES, accuracy, all_rotations, random_labels, rotate
from engine.registry import register_method


@dataclass
class RotationConfig(MethodConfig):
    all_rotations: bool = param(
        True,
        "Put all four rotations of every image in the batch (as in the paper); off draws "
        "one random rotation per image (a quarter of the compute per image).",
    )
    head_hidden_dim: int = param(
        256,
        "Hidden width of the rotation classifier MLP; 0 makes it a single linear layer.",
        min=0,
        max=8192,
    )


def rotation_head(feature_dim: int, hidden_dim: int, classes: int) -> torch.nn.Sequential:
    """Linear-BN-ReLU-Linear classifier, or one linear layer when ``hidden_dim`` is 0."""
    if hidden_dim == 0:
        return mlp_head(feature_dim, feature_dim, classes, layers=1)
    return mlp_head(feature_dim, hidden_dim, classes)


@register_method(
    "rotation",
    config=RotationConfig,
    family="pretext",
    description="Rotate each image by 0/90/180/270 degrees and predict the rotation "
    "(4-way classification).",
    paper="Gidaris et al. 2018, Unsupervised Representation Learning by Predicting Image "
    "Rotations",
    # four rotated copies per image: 64 images make 256 backbone inputs, as many as a
    # two-view method's 128.
    preset={"optim.batch_size": 64, "augment.crop_min_scale": 0.6},
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000},
    collapse_advice=(
        "Rotation prediction has no signal on images without an upright orientation "
        "(built-in shapes with data.shapes_orientation = any): check that the pretext "
        "accuracy rises above chance."
    ),
)
class Rotation(SSLMethod):
    pretext_chance = 0.25

    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: RotationConfig = cfg.method  # type: ignore[assignment]
        self.all_rotations = m.all_rotations
        self.resolution = cfg.data.resolution
        self.head = rotation_head(feature_dim, m.head_hidden_dim, 4)
        self.views = ViewAugment(geometric_only(cfg.augment), self.resolution)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        x = self.views(images, generator)
        if self.all_rotations:
            x, labels = all_rotations(x)
        else:
            labels = random_labels(x.shape[0], 4, generator, x.device)
            x = rotate(x, labels)
        logits = self.head(self.backbone(x))
        loss = pretext_cross_entropy(logits, labels)
        return StepOutput(loss, {"pretext_accuracy": accuracy(logits, labels)})

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The geometric view, rotated as the step rotates it: all four rotations, or
        one random rotation per image."""
        x = self.views(samples, generator)
        if self.all_rotations:
            rotated, _ = all_rotations(x)
            n = x.shape[0]
            return [InputView(f"rotated {name}", to_uint8(rotated[k * n:(k + 1) * n]),
                              caption=f"label {k}: the network must say {name}")
                    for k, name in enumerate(ROTATION_NAMES)]
        labels = random_labels(x.shape[0], 4, generator, x.device)
        names = ", ".join(ROTATION_NAMES[i] for i in labels.tolist())
        return [InputView("rotated", to_uint8(rotate(x, labels)),
                          caption=f"one random rotation each ({names})")]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        x = eval_transform(images, self.resolution)
        labels = random_labels(x.shape[0], 4, generator, x.device)
        rotated = rotate(x, labels)
        pred = self.head(self.backbone(rotated)).argmax(dim=1)
        return Preview(
            "classification", originals=images, inputs=to_uint8(rotated),
            predicted=[ROTATION_NAMES[i] for i in pred.tolist()],
            true=[ROTATION_NAMES[i] for i in labels.tolist()],
            input_title="rotated", output_title="rotation",
        )
