"""Denoising autoencoder: reconstruct the clean image from a corrupted copy.

Vincent, Larochelle, Bengio, Manzagol. "Extracting and Composing Robust Features with
Denoising Autoencoders", ICML 2008.

The input is corrupted and the network (the shared backbone, then its feature map ->
:class:`~engine.heads.ConvDecoder`) is trained to give back the clean image. A plain
autoencoder can learn the identity; having to undo the noise forces it to capture the
structure of the images (the paper's manifold view, section 4), which is the point.

Corruptions:

* ``masking`` (the paper's): a fixed fraction of the pixels, chosen at random per image,
  is set to 0 (black), all three channels of a pixel together.
* ``gaussian``: additive isotropic Gaussian noise of std ``sigma`` on [0, 1] pixels,
  clipped back to [0, 1] (the paper's follow-up, Vincent et al., JMLR 2010, uses it for
  real-valued inputs).

Details of this implementation:

* Loss: squared error on the normalised pixels, on every pixel (``loss_on = all``, the
  paper's) or only on the corrupted ones (``corrupted``, the "emphasised" variant of the
  JMLR 2010 paper with all weight on them); Gaussian noise corrupts every pixel, so there
  both choices are the same.
* The output is the raw reconstruction of the whole image (no pasting back of the clean
  pixels), as in the paper.
* Views are random crops and flips only (colour augmentation off); ``embed`` is the pooled
  backbone on the clean image, like every other method.
* Metrics: ``mse`` (normalised units), ``psnr`` of the output and ``input_psnr`` of the
  corrupted input, both in dB on [0, 1] pixels against the clean image; with masking noise
  also ``masked_mse`` on the corrupted pixels.

On several processes nothing is gathered: every image has as many pixels (and as many
masked ones), so the mean over processes of each MSE is the whole-batch one. The PSNRs (a
logarithm of an MSE) are taken of the MSE averaged over the processes, so they are the
whole batch's. BatchNorm stays per process (``run.sync_batchnorm = "on"`` synchronises
it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.augment import ViewAugment, denormalize, eval_transform, normalize, to_uint8
from engine.config import Config, MethodConfig, param
from engine.corruption import gaussian_noise, pixel_masks, psnr
from engine.distributed import mean_over_ranks
from engine.losses import masked_mse
from engine.methods._base import InputView, Preview, StepOutput
from engine.methods._reconstruction import ReconstructionMethod
from engine.registry import register_method

NOISES = ("masking", "gaussian")


@dataclass
class DenoisingConfig(MethodConfig):
    noise: str = param(
        "masking",
        "Corruption: 'masking' sets a random fraction of the pixels to black (the paper's "
        "masking noise); 'gaussian' adds Gaussian noise of std sigma.",
        choices=NOISES,
    )
    mask_fraction: float = param(
        0.25,
        "Masking noise: fraction of the pixels set to 0 in each image (the paper tries 10 "
        "to 50%; 25% in its filter figures).",
        min=0.0,
        max=0.95,
    )
    sigma: float = param(
        0.2,
        "Gaussian noise: std on [0, 1] pixels (the noisy image is clipped to [0, 1]).",
        min=0.0,
        max=2.0,
    )
    loss_on: str = param(
        "all",
        "Pixels the loss counts: 'all' (the paper) or 'corrupted' (masking noise: only the "
        "masked pixels; with Gaussian noise every pixel is corrupted, so the same as 'all').",
        choices=("all", "corrupted"),
    )


@register_method(
    "denoising",
    config=DenoisingConfig,
    family="reconstruction",
    description="Corrupt the image (masking or Gaussian noise) and reconstruct the clean one "
    "(denoising autoencoder).",
    paper="Vincent et al. 2008, Extracting and Composing Robust Features with Denoising "
    "Autoencoders",
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000},
    collapse_advice=(
        "No loss term spreads a reconstruction method's features; a low rank early is "
        "common. Judge the run by its reconstructions; stronger noise makes the task less "
        "trivial."
    ),
)
class Denoising(ReconstructionMethod):
    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim, out_channels=3)
        m: DenoisingConfig = cfg.method  # type: ignore[assignment]
        self.noise = m.noise
        self.mask_fraction = m.mask_fraction
        self.sigma = m.sigma
        self.loss_on = m.loss_on

    def corrupt(
        self, x01: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Corrupted images in [0, 1] and, for masking noise, the mask (True = zeroed)."""
        if self.noise == "gaussian":
            return gaussian_noise(x01, self.sigma, generator), None
        mask = pixel_masks(x01.shape[0], x01.shape[-1], self.mask_fraction, generator,
                           x01.device)
        return x01.masked_fill(mask, 0.0), mask

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        x = self.views(images, generator)
        x01 = denormalize(x).clamp_(0, 1)
        noisy01, mask = self.corrupt(x01, generator)
        pred = self.decode(normalize(noisy01))
        full = F.mse_loss(pred.float(), x)
        metrics: dict[str, torch.Tensor | float] = {"mse": full.detach()}
        loss = full
        if mask is not None:
            on_mask = masked_mse(pred, x, mask)
            metrics["masked_mse"] = on_mask.detach()
            if self.loss_on == "corrupted":
                loss = on_mask
        with torch.no_grad():
            out01 = denormalize(pred.detach().float()).clamp_(0, 1)
            metrics["psnr"] = psnr(mean_over_ranks(F.mse_loss(out01, x01)))
            metrics["input_psnr"] = psnr(mean_over_ranks(F.mse_loss(noisy01, x01)))
        return StepOutput(loss, metrics)

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The geometric view and its corruption, as the step makes them."""
        x = self.views(samples, generator)
        noisy01, _ = self.corrupt(denormalize(x).clamp_(0, 1), generator)
        what = (f"Gaussian noise, sigma {self.sigma:g}" if self.noise == "gaussian"
                else f"{self.mask_fraction:.0%} of pixels zeroed")
        return [InputView("target", to_uint8(x), caption="the clean image to restore"),
                InputView("noisy input", to_uint8(normalize(noisy01)), caption=what)]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        x01 = denormalize(eval_transform(images, self.resolution)).clamp_(0, 1)
        noisy01, _ = self.corrupt(x01, generator)
        inp = normalize(noisy01)
        pred = self.decode(inp).float()
        return Preview("reconstruction", originals=images, inputs=to_uint8(inp),
                       outputs=to_uint8(pred), input_title=f"{self.noise} noise",
                       output_title="denoised")
