"""What every method shares: a backbone, the step contract and the monitor hooks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from engine.augment import ViewAugment
    from engine.config import Config
    from engine.data.source import Inputs


@dataclass
class Preview:
    """What a method makes of a few fixed monitor inputs.

    Images are uint8 tensors ``(N, 3, H, W)`` (any device). ``kind`` is
    ``"reconstruction"`` (``outputs`` holds the model's images) or ``"classification"``
    (``predicted`` / ``true`` hold one label per input). The titles name the columns in
    the preview panel ("grey input", "masked", "rotated", ...). Text methods use kind
    ``"text"`` with no images and one plain (JSON-able) dict per input in ``items``
    (see :class:`engine.events.PreviewSnapshot`).
    """

    kind: str
    originals: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    predicted: list[str] = field(default_factory=list)
    true: list[str] = field(default_factory=list)
    input_title: str = "input"
    output_title: str = "output"
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class InputView:
    """One kind of input a method's training step builds from raw samples, for the
    views panel: what the network is actually shown.

    ``images`` are uint8 ``(N, 3, h, w)`` on the CPU, row ``i`` made from sample ``i``
    (a crop may be smaller than the samples); text methods give one string per sample in
    ``texts`` instead. ``caption`` says in a few words what the column is ("2nd random
    crop + colour jitter", "75 % of the patches hidden").
    """

    title: str
    images: torch.Tensor | None = None
    texts: list[str] = field(default_factory=list)
    caption: str = ""


@dataclass
class StepOutput:
    """The loss to minimise and named metrics (scalars) to stream and plot."""

    loss: torch.Tensor
    metrics: Mapping[str, torch.Tensor | float] = field(default_factory=dict)


class SSLMethod(nn.Module):
    """Base class: ``backbone`` is the encoder evaluated by kNN and the collapse scores.

    Subclasses build their heads in ``__init__`` and implement :meth:`training_step`.
    Pretext methods set ``pretext_chance`` (the accuracy of guessing) and stream their
    accuracy as the metric ``pretext_accuracy``; pretext and reconstruction methods
    implement :meth:`preview` for the live preview panel.
    """

    pretext_chance: float | None = None

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.feature_dim = feature_dim

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        """One step's loss from a raw dataset batch already on the device (for images
        uint8 ``(B, 3, R, R)``); ``augment`` is :meth:`train_augment`'s result."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, augment: ViewAugment | None,
                generator: torch.Generator) -> StepOutput:
        """:meth:`training_step`, so that a ``DistributedDataParallel`` wrapper, which only
        hooks ``forward``, synchronises the step's gradients across processes."""
        return self.training_step(images, augment, generator)  # type: ignore[arg-type]

    def train_augment(self) -> ViewAugment | None:
        """What the trainer hands to :meth:`training_step` as ``augment``, and what the
        monitor draws two views with to measure alignment (None: no views). Image
        methods use the configured two-view augmentation."""
        from engine.augment import ViewAugment

        return ViewAugment(self.cfg.augment, self.cfg.data.resolution)

    def finetune_augment(self) -> ViewAugment | None:
        """The light augmentation of the fine-tuning protocol (None: none, the inputs go
        through :meth:`eval_inputs`)."""
        from engine.augment import FINETUNE_AUGMENT, ViewAugment

        return ViewAugment(FINETUNE_AUGMENT, self.cfg.data.resolution)

    @classmethod
    def make_backbone(cls, cfg: Config, device: torch.device) -> tuple[nn.Module, int, str]:
        """The encoder this method trains, its feature dimension and its name. Image
        methods build the configured image backbone (``backbone.name``, 'auto' resolved
        by device); a method for other data builds its own encoder here."""
        from engine.backbones import build_backbone, resolve_backbone_name

        name = resolve_backbone_name(cfg.backbone.name, device)
        b = cfg.backbone
        net, dim = build_backbone(name, cfg.data.resolution, b.width,
                                  patch_size=b.patch_size, vit_dim=b.vit_dim,
                                  vit_depth=b.vit_depth, vit_heads=b.vit_heads,
                                  vit_mlp_ratio=b.vit_mlp_ratio)
        return net, dim, name

    def eval_inputs(self, batch: Inputs, resolution: int) -> torch.Tensor:
        """A raw dataset batch (on the device) as the network's evaluation input: for
        images, uint8 resized and normalised (:func:`engine.augment.eval_transform`)."""
        from engine.augment import eval_transform

        assert isinstance(batch, torch.Tensor), "an image method's inputs are one tensor"
        return eval_transform(batch, resolution)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of normalised images: what kNN and exports use."""
        return self.backbone(x)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The embedding the loss acts on, used for the collapse scores."""
        return features

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview | None:
        """The preview of uint8 monitor images ``(N, 3, R, R)`` on the device, or None.

        Called in eval mode under ``torch.no_grad()`` with a generator seeded the same way
        at every call, so successive snapshots show the same masks, noise and rotations.
        """
        return None

    def training_inputs(self, samples: Any, generator: torch.Generator) -> list[InputView]:
        """What :meth:`training_step` feeds the network for raw ``samples`` (a few
        dataset inputs on the CPU), made by the step's own functions with ``generator``
        in place of the trainer's: the views panel shows them, live before Start. A
        subclass that changes how its step builds inputs changes this with it. [] (the
        default) when a method has nothing to show."""
        return []

    def attach_source(self, source: object) -> None:
        """Called by the trainer with the dataset source before training: what a method
        needs of the data beyond its batches (a text method keeps the tokenizer, to show
        its predictions as text). Nothing by default."""

    def heldout_metrics(self, inputs: torch.Tensor) -> dict[str, float]:
        """Scores on the dataset's held-out split (raw inputs on the device, never
        trained on), measured at every monitor step in eval mode under no_grad: a
        language model's bits per token, a masked model's accuracy. {} by default."""
        return {}

    def monitor_metrics(self, inputs: Any, labels: torch.Tensor | None,
                        projections: torch.Tensor | None = None,
                        text_projections: torch.Tensor | None = None) -> dict[str, float]:
        """Scores of the method's own on the monitor inputs (on the device; ``labels``
        on the CPU or None), measured at every monitor step in eval mode under no_grad
        beside kNN and the collapse scores: an image-text model's retrieval recall and
        zero-shot accuracy. ``projections`` and ``text_projections`` (CPU, row i for
        input i, or None) are the monitor's own :meth:`project` and
        :meth:`text_projections` of the same inputs, passed so that a method need not
        embed them again. {} by default."""
        return {}

    def text_projections(self, inputs: Any) -> torch.Tensor | None:
        """The texts paired with a raw batch of inputs (on the device) as vectors of the
        space :meth:`project` maps the inputs into, row ``i`` beside input ``i``: the
        monitor maps both modalities together and scores the text tower's collapse from
        them. None (the default) when the method has no text tower. Called in eval mode
        under no_grad."""
        return None

    def embed_query(self, text: str) -> torch.Tensor | None:
        """A typed sentence as a vector of the space :meth:`project` maps inputs into
        (1-D, CPU float32), for searching the monitor inputs by text; None when the
        method has no text tower. Called in eval mode under no_grad."""
        return None

    def lr_multipliers(self) -> dict[str, float]:
        """Learning-rate factors by parameter-name prefix (e.g. ``{"predictor.": 10.0}``).

        The optimiser gives the parameters under each prefix the schedule's learning rate
        times the factor; all others get it unchanged.
        """
        return {}

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Hook after the optimiser step (EMA updates); returns extra metrics."""
        return {}
