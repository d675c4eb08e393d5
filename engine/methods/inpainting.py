"""Context encoder: fill in a masked square of the image from its surroundings.

Pathak, Krähenbühl, Donahue, Darrell, Efros. "Context Encoders: Feature Learning by
Inpainting", CVPR 2016.

A square region is masked out (the central square, or one at a random position: the
paper's "central region" and "random block"), filled with a constant, and the encoder
(the shared backbone, on the whole masked image) has to predict its content: feature map
-> :class:`~engine.heads.ConvDecoder` -> image. To fill a hole the encoder must know what
the object around it is and how its outline continues, which is the representation the
method is after.

Details of this implementation:

* Loss: the paper's masked L2 (eq. 1) on the normalised pixels, only where the mask is
  (:func:`engine.losses.masked_mse`). ``context_weight`` adds that weight times the MSE on
  the rest of the image (the paper predicts a band overlapping the context with its own
  weight); the default 0 is the mask-only loss. The adversarial term of the paper's joint
  loss (weight 0.001) is left out: it sharpens the fill but is not needed for features
  (the paper's feature-learning results in Table 2 hold with the L2 loss alone too).
* The fill is a constant: the normalisation mean (mid grey, the workbench's stand-in for
  the paper's dataset mean) or black.
* Views are random crops and flips only (colour augmentation off, see
  :func:`engine.methods._reconstruction.geometric_only`); ``embed`` is the pooled backbone
  on the whole, unmasked image, like every other method.
* Metrics: ``masked_mse`` (normalised units), ``masked_psnr`` (dB on [0, 1] pixels, inside
  the hole) and ``fill_psnr``, the PSNR of the constant fill itself, the bar to beat.

On several processes nothing is gathered: every image's hole has the same area, so the
mean over processes of the masked MSE is the whole-batch one. The PSNRs (a logarithm of
an MSE) are taken of the MSE averaged over the processes, so they are the whole batch's.
BatchNorm stays per process (``run.sync_batchnorm = "on"`` synchronises it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.augment import ViewAugment, denormalize, eval_transform, normalize, to_uint8
from engine.config import Config, MethodConfig, param
from engine.corruption import BOX_MODES, box_masks, box_size, psnr
from engine.distributed import mean_over_ranks
from engine.losses import masked_mse
from engine.methods._base import InputView, Preview, StepOutput
from engine.methods._reconstruction import ReconstructionMethod
from engine.registry import register_method

FILLS = ("mean", "zero")


@dataclass
class InpaintingConfig(MethodConfig):
    mask_mode: str = param(
        "central",
        "Where the masked square is: 'central' (the paper's central region) or 'random' (a "
        "random position per image, fully inside it: the paper's random block).",
        choices=BOX_MODES,
    )
    mask_size: float = param(
        0.5,
        "Side of the masked square as a fraction of the image side (the paper masks 64 of "
        "128 px: 0.5, a quarter of the area).",
        min=0.05,
        max=0.95,
    )
    fill: str = param(
        "mean",
        "What the masked square is filled with: 'mean' (mid grey, the normalisation mean; "
        "the paper fills with the dataset mean) or 'zero' (black).",
        choices=FILLS,
    )
    context_weight: float = param(
        0.0,
        "Weight of the reconstruction loss on the unmasked pixels, relative to the masked "
        "ones. 0 trains on the hole only (the paper's loss); a small value also asks for "
        "the visible context back.",
        min=0.0,
        max=1.0,
    )


@register_method(
    "inpainting",
    config=InpaintingConfig,
    family="reconstruction",
    description="Mask a square of the image and predict its content from the rest (context "
    "encoder, L2 loss on the hole).",
    paper="Pathak et al. 2016, Context Encoders: Feature Learning by Inpainting",
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000},
    collapse_advice=(
        "No loss term spreads a reconstruction method's features; a low rank early is "
        "common. Judge the run by its reconstructions, and train longer."
    ),
)
class Inpainting(ReconstructionMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim, out_channels=3)
        m: InpaintingConfig = cfg.method  # type: ignore[assignment]
        self.mode = m.mask_mode
        self.box = box_size(self.resolution, m.mask_size)
        self.fill = m.fill
        self.context_weight = m.context_weight

    def mask_input(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised images with the masked pixels set to the fill value."""
        fill = torch.zeros(3, 1, 1, dtype=x.dtype, device=x.device)  # mid grey, normalised
        if self.fill == "zero":
            fill = normalize(fill)  # black
        return torch.where(mask, fill, x)

    def masks(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return box_masks(n, self.resolution, self.box, self.mode, generator, device)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        x = self.views(images, generator)
        mask = self.masks(x.shape[0], generator, x.device)
        inp = self.mask_input(x, mask)
        pred = self.decode(inp)
        hole = masked_mse(pred, x, mask)
        loss = hole
        if self.context_weight > 0:
            loss = loss + self.context_weight * masked_mse(pred, x, ~mask)
        with torch.no_grad():
            x01 = denormalize(x).clamp_(0, 1)
            out01 = denormalize(pred.detach().float()).clamp_(0, 1)
            fill01 = denormalize(inp).clamp_(0, 1)
            metrics: dict[str, torch.Tensor | float] = {
                "masked_mse": hole.detach(),
                "masked_psnr": psnr(mean_over_ranks(masked_mse(out01, x01, mask))),
                "fill_psnr": psnr(mean_over_ranks(masked_mse(fill01, x01, mask))),
            }
        return StepOutput(loss, metrics)

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The geometric view with the step's hole; the network must fill it in."""
        x = self.views(samples, generator)
        inp = self.mask_input(x, self.masks(x.shape[0], generator, x.device))
        return [InputView("target", to_uint8(x), caption="what the decoder must paint"),
                InputView("masked input", to_uint8(inp),
                          caption=f"{self.mode} hole of {self.box} px, filled {self.fill}")]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        x = eval_transform(images, self.resolution)
        mask = self.masks(x.shape[0], generator, x.device)
        inp = self.mask_input(x, mask)
        pred = self.decode(inp).float()
        pasted = torch.where(mask, pred, x)
        return Preview("reconstruction", originals=images, inputs=to_uint8(inp),
                       outputs=to_uint8(pasted), input_title="masked",
                       output_title="inpainted")
