"""Colorization: predict the colour (CIE ab) of an image from its lightness (L).

Zhang, Isola, Efros. "Colorful Image Colorization", ECCV 2016.

The image is converted to CIE Lab (:mod:`engine.colour`); the encoder sees only L and the
decoder (backbone feature map -> :class:`~engine.heads.ConvDecoder`) predicts ab. To know
that grass is green and the sky blue the encoder must recognise what is in the image,
which is the representation the method is after.

Two ways to predict ab, selected by ``loss``:

* ``classification`` (the paper's): ab space is quantised into bins (grid 10, the in-gamut
  cells), the target of each pixel is its soft encoding on the 5 nearest bins (Gaussian
  kernel, sigma 5) or its nearest bin, the loss is the multinomial cross-entropy (eq. 2),
  and the colour shown is the annealed mean of the predicted distribution (eq. 5, T =
  0.38). Classification keeps the several plausible colours of a pixel apart instead of
  averaging them.
* ``regression``: smooth L1 on ab. The best constant under such a loss is a mean or
  median of the plausible colours, so outputs come out greyish (paper, Fig. 3).

Class rebalancing (eq. 3-4, on by default as in the paper) weights each pixel by
``w ~ ((1 - lambda) p~ + lambda / Q)^-1`` of its nearest bin, where ``p~`` is the
empirical distribution of the training colours smoothed with a Gaussian (sigma 5). The
paper measures ``p~`` on ImageNet once; here it is the running average of the bin
histograms of every batch seen so far (a buffer saved with the model, so resumed runs
continue exactly). It works with both losses.

Details of this implementation:

* The encoder input is the neutral grey of the image's lightness (Lab ``(L, 0, 0)`` in
  sRGB, :func:`engine.colour.rgb_to_grey`), the same value on all three channels, then the
  usual normalisation. The paper's network takes L as its one input channel; the shared
  backbone has a 3-channel stem, and a grey *image* is what it would also be shown as a
  greyscale photo, so the stem needs no change and inputs stay in the range every method
  uses.
* ``embed`` applies the same conversion: kNN and the monitor pass normalised RGB images,
  and the encoder is evaluated on the grey input it was trained on (it never saw colour).
* ab is predicted at ``1 / out_stride`` of the resolution (the paper predicts at a quarter
  and upsamples), with the targets average-pooled to match; the preview upsamples the
  prediction bilinearly and combines it with the full-resolution L.
* Views are random crops and flips only: colour jitter or grayscale would change the very
  colours to be predicted.
* Metrics: ``ab_error`` (mean Euclidean ab distance per pixel), ``pred_chroma`` and
  ``true_chroma`` (mean CIE chroma of prediction and target: how colourful the output is),
  and with classification ``bin_accuracy`` (arg-max bin = nearest bin of the target),
  read on the first ``METRIC_IMAGES`` images of each batch.
* Data in colour only: a dataset whose sampled images have a mean chroma under
  ``MIN_CHROMA`` (greyscale, such as the built-in digits) is refused before the run
  starts, with a message that names it and suggests another reconstruction method.

On several processes the loss and the metrics are per-pixel means (the mean over processes
is the whole-batch mean); the one statistic of the batch, the histogram added to the
colour prior, is summed over the processes, so every process keeps the prior a single
process on the whole batch would. BatchNorm stays per process
(``run.sync_batchnorm = "on"`` synchronises it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import ViewAugment, denormalize, eval_transform, normalize, to_uint8
from engine.colour import (
    AB_SCALE,
    ab_bin_centres,
    chroma,
    decode_ab,
    encode_ab,
    gaussian_smoothing_matrix,
    lab_to_rgb,
    rebalance_weights,
    rgb_to_grey,
    rgb_to_lab,
)
from engine.config import Config, MethodConfig, param
from engine.distributed import all_reduce_sum, world_size
from engine.errors import DatasetError
from engine.losses import ab_regression_loss, colorization_ce
from engine.methods._base import InputView, Preview, StepOutput
from engine.methods._reconstruction import ReconstructionMethod
from engine.registry import register_method

_HIDDEN = 64  # channels before the 1x1 bin classifier
#: images of each batch the step's curves (ab error, chroma, bin accuracy) are read on
METRIC_IMAGES = 32
#: below this mean CIE chroma (ab units) a dataset has no colour to predict: grey images
#: saved as RGB have 0, colour photographs tens (shapes: 56)
MIN_CHROMA = 1.0
#: images of the dataset whose colourfulness is checked before a run
CHROMA_SAMPLE = 64


@dataclass
class ColorizationConfig(MethodConfig):
    loss: str = param(
        "classification",
        "'classification' over quantised ab bins (the paper's, vivid colours) or "
        "'regression' of ab with smooth L1 (tends to greyish, averaged colours).",
        choices=("classification", "regression"),
    )
    grid: float = param(
        10.0,
        "Side of the ab bins in Lab units (10 in the paper: a few hundred in-gamut bins).",
        min=4.0,
        max=40.0,
        advanced=True,
    )
    soft_encoding: bool = param(
        True,
        "Classification target: soft encoding on the nearest bins with a Gaussian kernel "
        "(the paper's) instead of the single nearest bin.",
    )
    neighbours: int = param(5, "Bins of the soft encoding (5 in the paper).", min=2, max=32,
                            advanced=True)
    soft_sigma: float = param(
        5.0, "Gaussian kernel of the soft encoding and of the rebalancing prior, in ab "
        "units (5 in the paper).", min=0.5, max=50.0, advanced=True)
    rebalance: bool = param(
        True,
        "Class rebalancing: weight each pixel by the rarity of its colour (the paper's), "
        "so rare saturated colours are not drowned by common dull ones.",
    )
    rebalance_mix: float = param(
        0.5,
        "Lambda: weight of the uniform distribution mixed into the colour prior before "
        "inverting it (0.5 in the paper; 1 = no rebalancing, 0 = full inverse frequency).",
        min=0.0,
        max=1.0,
    )
    temperature: float = param(
        0.38,
        "Annealed-mean temperature for showing classification outputs (0.38 in the paper; "
        "1 = mean, greyish; 0 = mode, vivid but patchy).",
        min=0.0,
        max=5.0,
    )
    huber_beta: float = param(
        1.0, "Regression: smooth L1 turns quadratic below this ab error.", min=0.01,
        max=50.0, advanced=True)
    out_stride: int = param(
        2,
        "Predict ab at 1/out_stride of the resolution, then upsample (the paper uses 4 at "
        "224 px; colour needs less resolution than lightness).",
        choices=(1, 2, 4),
        advanced=True,
    )


@register_method(
    "colorization",
    config=ColorizationConfig,
    family="reconstruction",
    description="Predict the colours (CIE ab) of a greyscale image from its lightness, as "
    "classification over quantised colours with class rebalancing.",
    paper="Zhang, Isola & Efros 2016, Colorful Image Colorization",
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000},
    collapse_advice=(
        "No loss term spreads a reconstruction method's features; a low rank early is "
        "common. Judge the run by its colours; class rebalancing counters greyish output."
    ),
)
class Colorization(ReconstructionMethod):
    centres: torch.Tensor
    smoothing: torch.Tensor
    colour_prior: torch.Tensor
    prior_batches: torch.Tensor

    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        m: ColorizationConfig = cfg.method  # type: ignore[assignment]
        centres = ab_bin_centres(m.grid)
        classify = m.loss == "classification"
        # Classification: the decoder gives a 64-channel map and a 1x1 conv scores the bins
        # (the paper's last layer is a 1x1 conv to its 313 bins too).
        head = nn.Sequential(nn.BatchNorm2d(_HIDDEN), nn.ReLU(inplace=True),
                             nn.Conv2d(_HIDDEN, centres.shape[0], 1)) if classify else None
        super().__init__(cfg, backbone, feature_dim,
                         out_channels=_HIDDEN if classify else 2,
                         out_stride=m.out_stride, head=head)
        self.classify = classify
        self.grid = m.grid
        self.neighbours = m.neighbours if classify and m.soft_encoding else 1
        self.sigma = m.soft_sigma
        self.rebalance = m.rebalance
        self.mix = m.rebalance_mix
        self.temperature = m.temperature
        self.huber_beta = m.huber_beta
        self.register_buffer("centres", centres, persistent=False)
        self.register_buffer("smoothing", gaussian_smoothing_matrix(centres, m.soft_sigma),
                             persistent=False)
        # running average of the per-batch nearest-bin histograms: the colour prior p
        self.register_buffer("colour_prior", torch.zeros(centres.shape[0]))
        self.register_buffer("prior_batches", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ inputs

    @staticmethod
    def grey_input(x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB images -> the normalised neutral grey of their CIE lightness."""
        return normalize(rgb_to_grey(denormalize(x.float()).clamp_(0, 1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of the grey version of ``x``: the encoder was trained on grey
        input only, so it is evaluated on the same (kNN and the monitor pass RGB)."""
        return self.backbone(self.grey_input(x))

    def predict_ab(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> ab point estimate ``(B, 2, S, S)`` (annealed mean or regression)."""
        if self.classify:
            return decode_ab(out, self.centres, self.temperature)
        return AB_SCALE * out.float()

    def attach_source(self, source: object) -> None:
        """Refuse data without colour: on greyscale images every target is the neutral
        bin, so the encoder gets nothing to learn from (on *digits*, three seeds ended
        below the random encoder's kNN, by 3.6 ± 7.5 points)."""
        super().attach_source(source)
        inputs = getattr(source, "inputs", None)
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or len(inputs) == 0:
            return
        # every k-th image at most 32 px a side: the mean chroma needs no more, and the
        # views panel runs this on the GUI thread at every redraw
        sample = inputs[:: max(1, len(inputs) // CHROMA_SAMPLE)][:CHROMA_SAMPLE]
        px = max(1, max(sample.shape[-2:]) // 32)
        sample = sample[..., ::px, ::px]
        x01 = sample.float() / 255 if sample.dtype == torch.uint8 else sample.float()
        c = float(chroma(rgb_to_lab(x01.clamp(0, 1))[:, 1:]))
        if c < MIN_CHROMA:
            name = getattr(source, "name", "the dataset")
            raise DatasetError(
                f"colorization needs colour images, and the images of {name} are "
                f"greyscale (mean CIE chroma {c:.2f}, under {MIN_CHROMA:g}): there is no "
                "colour to predict. Choose another method (inpainting, denoising or MAE "
                "also reconstruct) or a dataset in colour.")

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def _update_prior(self, nearest: torch.Tensor) -> torch.Tensor:
        """Add a batch's nearest-bin histogram to the running colour prior; return it.
        On several processes the histogram is the global batch's (counts summed)."""
        q = self.colour_prior.shape[0]
        counts = all_reduce_sum(torch.bincount(nearest, minlength=q).float())
        hist = counts / max(1, nearest.numel() * world_size())
        self.prior_batches += 1
        self.colour_prior += (hist - self.colour_prior) / self.prior_batches.float()
        return self.colour_prior

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        x01 = denormalize(self.views(images, generator)).clamp_(0, 1)
        lab = rgb_to_lab(x01)
        out = self.decode(normalize(rgb_to_grey(x01)))
        s = out.shape[-1]
        ab = lab[:, 1:]
        if ab.shape[-1] != s:
            ab = F.adaptive_avg_pool2d(ab, s)
        b = ab.shape[0]
        bins = weights = pixel_w = None
        if self.classify or self.rebalance:
            flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
            bins, weights = encode_ab(flat, self.centres, self.grid, self.neighbours,
                                      self.sigma)
        if self.rebalance:
            assert bins is not None
            prior = self._update_prior(bins[:, 0])
            pixel_w = rebalance_weights(prior, self.smoothing, self.mix)[bins[:, 0]]
        metrics: dict[str, torch.Tensor | float] = {}
        # The step's curves are read on the first METRIC_IMAGES images of the batch: the
        # annealed mean over every pixel's Q bins cost ~12 % of a step at batch 128
        # (bench/step_profile.py, 2026-12-02) and only feeds the curves.
        k = min(b, METRIC_IMAGES)
        if self.classify:
            assert bins is not None and weights is not None
            loss = colorization_ce(out, bins, weights, pixel_w)
            with torch.no_grad():
                hit = out[:k].detach().argmax(1).reshape(-1) == bins[: k * s * s, 0]
                metrics["bin_accuracy"] = hit.float().mean()
        else:
            pw = None if pixel_w is None else pixel_w.view(b, s, s)
            loss = ab_regression_loss(AB_SCALE * out.float(), ab, pw, self.huber_beta)
        with torch.no_grad():
            pred = self.predict_ab(out[:k].detach())
            metrics["ab_error"] = torch.linalg.vector_norm(pred - ab[:k], dim=1).mean()
            metrics["pred_chroma"] = chroma(pred)
            metrics["true_chroma"] = chroma(ab[:k])
        return StepOutput(loss, metrics)

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The grey input of the step's view, and the colours it must predict."""
        x01 = denormalize(self.views(samples, generator)).clamp_(0, 1)
        grey = to_uint8(normalize(rgb_to_grey(x01)))
        return [InputView("grey input", grey, caption="lightness only"),
                InputView("colours to predict", to_uint8(normalize(x01)),
                          caption="the colour channels are the target")]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        x01 = denormalize(eval_transform(images, self.resolution)).clamp_(0, 1)
        grey01 = rgb_to_grey(x01)
        ab = self.predict_ab(self.decode(normalize(grey01)))
        if ab.shape[-1] != self.resolution:
            ab = F.interpolate(ab, size=(self.resolution, self.resolution), mode="bilinear",
                               align_corners=False)
        lightness = rgb_to_lab(x01)[:, :1]
        coloured = lab_to_rgb(torch.cat([lightness, ab], dim=1))

        def u8(t: torch.Tensor) -> torch.Tensor:
            return t.clamp(0, 1).mul(255).round().to(torch.uint8)

        return Preview("reconstruction", originals=images, inputs=u8(grey01),
                       outputs=u8(coloured), input_title="grey (L)",
                       output_title="colourised")
