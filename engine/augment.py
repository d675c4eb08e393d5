"""Batched two-view augmentations after SimCLR (Chen et al. 2020), run on the batch's device.

SimCLR's recipe is random resized crop + horizontal flip, colour jitter (p=0.8), random
grayscale (p=0.2) and, at higher resolutions, Gaussian blur. torchvision applies these one
image at a time in Python, which would dominate a training step on a small CPU. Here every
step is a whole-batch tensor op with per-image random parameters:

* crop + flip + resize: one ``F.grid_sample`` over an axis-aligned affine grid;
* colour jitter: each op (brightness, contrast, saturation, hue) is a per-image 3x3 colour
  matrix plus a bias, so every jitter "slot" is one ``baddbmm`` followed by a clamp;
* grayscale: a per-image 3x3 matrix (luma rows or identity);
* blur: separable Gaussian as two batched matmuls with per-image banded matrices that
  include the reflect padding.

On the CPU the float input, the sampling grid and one spare buffer are kept between calls:
faulting in fresh pages for them costs as much as the arithmetic on a small machine.

All random numbers of a call come from a single ``torch.rand`` draw, on the generator's
device (CPU when no generator is given), so a seeded CPU generator reproduces the same views
whether the images live on the CPU or on a GPU.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
import torch.nn.functional as F

from engine.config import AugmentConfig

# Dataset-agnostic constants: models here are trained from scratch on synthetic shapes,
# digits or user folders, so ImageNet statistics mean nothing. 0.5 / 0.25 maps [0, 1] to
# [-2, 2] with roughly unit variance for typical images.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.25, 0.25, 0.25)

# ITU-R BT.601 luma weights (torchvision's rgb_to_grayscale uses 0.2989 for red).
LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)

# RandomResizedCrop's aspect-ratio range and number of tries, as in torchvision.
_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_CROP_TRIES = 10

# Layout of the per-image uniform draws (columns of one ``torch.rand(B, _N_RAND)``). The
# layout never depends on the config so a seed always means the same stream.
_SCALE = slice(0, _CROP_TRIES)
_LOGRATIO = slice(_CROP_TRIES, 2 * _CROP_TRIES)
_CX, _CY, _FLIP = 2 * _CROP_TRIES, 2 * _CROP_TRIES + 1, 2 * _CROP_TRIES + 2
_JITTER = _FLIP + 1
_FACTORS = slice(_JITTER + 1, _JITTER + 5)  # brightness, contrast, saturation, hue
_ORDER = slice(_JITTER + 5, _JITTER + 9)
_GRAY = _JITTER + 9
_BLUR, _SIGMA = _GRAY + 1, _GRAY + 2
_N_RAND = _SIGMA + 1

_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)

# RGB -> YIQ (NTSC). A hue shift is a rotation of the (I, Q) chroma plane (as NVIDIA DALI's
# hue op): it keeps luma exactly and costs one 3x3 matrix per image instead of an
# RGB -> HSV -> RGB round trip of ~30 elementwise passes.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) uint8 on any device -> float32 in [0,1] (float input is only cast)."""
    if images_uint8.dtype == torch.uint8:
        return images_uint8.to(torch.float32).div_(255.0)
    return images_uint8.to(torch.float32)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (3, 1, 1)
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(shape)
    return mean, std


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """[0,1] images (..., 3, H, W) -> network input, centred with MEAN / STD."""
    mean, std = _stats(x01)
    return torch.sub(x01, mean).div_(std)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, for showing views as images."""
    mean, std = _stats(x)
    return torch.mul(x, std).add_(mean)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Normalised network images -> uint8 in [0, 255], for previews."""
    return denormalize(x.float()).clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def _as_rgb(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images


#: light augmentation for fine-tuning: random resized crop of 80-100 % of the area and a
#: horizontal flip, no colour changes (enough to curb overfitting in a few hundred steps)
FINETUNE_AUGMENT = AugmentConfig(crop_min_scale=0.8, crop_max_scale=1.0, flip_prob=0.5,
                                 jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)


def eval_transform(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """Deterministic: uint8 batch -> resized (if needed) normalised float; used for monitoring.

    Equals a :class:`ViewAugment` view with every augmentation off and crop scale 1 (for
    images already at ``out_size``). Downscaling is antialiased so monitor features do not
    alias; non-square images are resized (squashed) to ``out_size`` x ``out_size``.
    """
    x = to_float(_as_rgb(images))
    h, w = x.shape[-2:]
    if (h, w) != (out_size, out_size):
        shrink = h > out_size or w > out_size
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False,
                          antialias=shrink)
    return normalize(x)


class _Consts:
    """Per-device constants of a :class:`ViewAugment`, built once."""

    def __init__(self, aug: ViewAugment, device: torch.device) -> None:
        self.base = aug._base.to(device)
        luma = torch.tensor(LUMA, device=device)
        self.luma = luma
        self.eye = torch.eye(3, device=device)
        self.to_gray = luma.expand(3, 3).contiguous()  # every row is the luma weights
        yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
        self.yiq = yiq.to(device=device, dtype=torch.float32)
        self.yiq_inv = torch.linalg.inv(yiq).to(device=device, dtype=torch.float32)
        self.mean = torch.tensor(MEAN, device=device).view(3, 1)
        self.std = torch.tensor(STD, device=device).view(3, 1)
        self.reflect: torch.Tensor | None = None
        if aug._blur_on:
            s, k = aug.out_size, aug._ksize
            src = torch.arange(s)[:, None] + torch.arange(k)[None, :] - k // 2  # (S, k)
            src = torch.where(src < 0, -src, src)
            src = torch.where(src >= s, 2 * (s - 1) - src, src)
            # reflect[t, i * S + j] = 1 where tap t of output pixel i reads input pixel j.
            onehot = F.one_hot(src.t(), s).to(torch.float32).reshape(k, s * s)
            self.reflect = onehot.to(device)


class ViewAugment:
    """Batched random augmentation of a uint8 batch on its own device (no per-image Python loop).

    Two independent calls on the same batch give SimCLR's two views (Chen et al. 2020). Each
    image gets its own random parameters, with torchvision's distributions:

    * RandomResizedCrop: area fraction uniform in [crop_min_scale, crop_max_scale], aspect
      ratio log-uniform in [3/4, 4/3], 10 tries for a box inside the image, else the
      centred whole image (so crop scale 1 means exactly the full image). The box is
      continuous (sub-pixel), not rounded to whole pixels. Resampling is bilinear without
      antialiasing, so feed images near ``out_size`` (the data is resized once on load).
    * ColorJitter with probability ``jitter_prob``: brightness, contrast and saturation
      factors uniform in [max(0, 1 - s), 1 + s], hue shift uniform in [-hue, hue] of the
      colour wheel (done as a YIQ rotation: cheaper than HSV and keeps luma; saturated
      colours come out slightly different from torchvision's HSV shift). The four ops run
      in a random order per image, clamping to [0, 1] after each, as torchvision does.
    * RandomGrayscale with probability ``grayscale_prob`` (BT.601 luma, on all 3 channels).
    * GaussianBlur with probability ``blur_prob``: sigma uniform in [0.1, blur_sigma_max],
      kernel size 2 * ceil(3 * blur_sigma_max) + 1 capped to the image, reflect padding.
    """

    def __init__(self, cfg: AugmentConfig, out_size: int) -> None:
        if out_size < 1:
            raise ValueError(f"out_size must be positive, got {out_size}")
        if cfg.crop_min_scale > cfg.crop_max_scale:
            raise ValueError("crop_min_scale must not exceed crop_max_scale")
        self.cfg = cfg
        self.out_size = out_size
        strengths = (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
        # Ops with zero strength are identities: leave them out of the per-image order.
        self._ops = [i for i, st in enumerate(strengths) if st > 0]
        self._jitter_on = cfg.jitter_prob > 0 and bool(self._ops)
        self._gray_on = cfg.grayscale_prob > 0
        self._blur_on = cfg.blur_prob > 0
        k = 2 * math.ceil(3 * cfg.blur_sigma_max) + 1
        largest_odd = out_size if out_size % 2 else out_size - 1
        self._ksize = max(1, min(k, largest_odd))
        # Output pixel centres in normalised coordinates, exactly antisymmetric so that a
        # flip (x scale -1) samples exactly the mirrored pixel centres.
        n = torch.arange(out_size, dtype=torch.float64)
        self._base = ((2 * n + 1 - out_size) / out_size).to(torch.float32)
        self._consts: dict[torch.device, _Consts] = {}
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_consts"] = {}
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _workspace(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float input, grid and spare buffers, reused between calls on the CPU.

        GPUs have a caching allocator already. Kept per thread so that concurrent calls never
        share buffers; the returned views never alias them.
        """
        b, _, h, w = images.shape
        s = self.out_size
        dev = images.device

        def fresh() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (torch.empty(b, 3, h, w, device=dev), torch.empty(b, s, s, 2, device=dev),
                    torch.empty(b, 3, s * s, device=dev))

        if dev.type != "cpu":
            return fresh()
        key = (b, h, w)
        if getattr(self._local, "key", None) != key:
            self._local.key, self._local.bufs = key, fresh()
        return self._local.bufs

    def _get_consts(self, device: torch.device) -> _Consts:
        if device not in self._consts:
            self._consts[device] = _Consts(self, device)
        return self._consts[device]

    # ------------------------------------------------------------------ parameters

    def _crop_params(self, u: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, 4) = x scale (negative when flipped), x centre, y scale, y centre."""
        cfg = self.cfg
        aspect = w / h
        scale = cfg.crop_min_scale + u[:, _SCALE] * (cfg.crop_max_scale - cfg.crop_min_scale)
        lo, hi = math.log(_RATIO[0]), math.log(_RATIO[1])
        ratio = torch.exp(lo + u[:, _LOGRATIO] * (hi - lo))
        fw = torch.sqrt(scale * ratio / aspect)  # box width / image width
        fh = torch.sqrt(scale * aspect / ratio)
        ok = (fw <= 1) & (fh <= 1)
        first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first successful try
        fw = fw.gather(1, first).squeeze(1)
        fh = fh.gather(1, first).squeeze(1)
        # torchvision's fallback: the centred whole image, ratio clamped to the range.
        if aspect < _RATIO[0]:
            fb_w, fb_h = 1.0, aspect / _RATIO[0]
        elif aspect > _RATIO[1]:
            fb_w, fb_h = _RATIO[1] / aspect, 1.0
        else:
            fb_w, fb_h = 1.0, 1.0
        found = ok.any(dim=1)
        fw = torch.where(found, fw, fb_w)
        fh = torch.where(found, fh, fb_h)
        # Centres keep the box inside [-1, 1]; the fallback box is centred.
        cx = torch.where(found, (2 * u[:, _CX] - 1) * (1 - fw), 0.0)
        cy = torch.where(found, (2 * u[:, _CY] - 1) * (1 - fh), 0.0)
        sign = torch.where(u[:, _FLIP] < cfg.flip_prob, -1.0, 1.0)
        return torch.stack([fw * sign, cx, fh, cy], dim=1)

    def _jitter_params(self, u: torch.Tensor, c: _Consts) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slot colour matrices (B, n, 3, 3) and contrast bias weights (B, n)."""
        cfg = self.cfg
        b = u.shape[0]
        dev = u.device
        f = u[:, _FACTORS]
        eye = c.eye.expand(b, 3, 3)
        mats = torch.empty(b, 4, 3, 3, device=dev)
        bias = torch.zeros(b, 4, device=dev)

        def factor(i: int, strength: float) -> torch.Tensor:
            lo = max(0.0, 1.0 - strength)
            return (lo + f[:, i] * (1.0 + strength - lo)).view(b, 1, 1)

        mats[:, _BRIGHTNESS] = factor(_BRIGHTNESS, cfg.brightness) * eye
        cf = factor(_CONTRAST, cfg.contrast)
        mats[:, _CONTRAST] = cf * eye
        bias[:, _CONTRAST] = 1 - cf.view(b)  # times the image's mean luma, added later
        sf = factor(_SATURATION, cfg.saturation)
        mats[:, _SATURATION] = sf * eye + (1 - sf) * c.to_gray
        theta = (2 * f[:, _HUE] - 1) * (cfg.hue * 2 * math.pi)
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(b, 3, 3, device=dev)
        rot[:, 0, 0] = 1
        # Clockwise in the (I, Q) plane: the direction in which HSV hue increases.
        rot[:, 1, 1], rot[:, 1, 2] = cos, sin
        rot[:, 2, 1], rot[:, 2, 2] = -sin, cos
        mats[:, _HUE] = c.yiq_inv @ rot @ c.yiq

        n = len(self._ops)
        ops = torch.tensor(self._ops, device=dev)
        order = ops[torch.argsort(u[:, _ORDER][:, :n], dim=1)]  # (B, n) op id per slot
        rows = torch.arange(b, device=dev)[:, None]
        mats, bias = mats[rows, order], bias[rows, order]
        off = u[:, _JITTER] >= cfg.jitter_prob
        mats = torch.where(off.view(b, 1, 1, 1), c.eye, mats)
        bias = torch.where(off.view(b, 1), 0.0, bias)
        return mats, bias

    def _blur_weights(self, u: torch.Tensor) -> torch.Tensor:
        """(B, k) normalised Gaussian taps; a centred delta (identity) for unblurred images."""
        k = self._ksize
        sigma = 0.1 + u[:, _SIGMA] * max(0.0, self.cfg.blur_sigma_max - 0.1)
        t = torch.arange(k, device=u.device, dtype=torch.float32) - k // 2
        g = torch.exp(-(t**2) / (2 * sigma[:, None] ** 2))
        g = g / g.sum(dim=1, keepdim=True)
        # Drop negligible tails: denormal weights make the CPU matmuls ~100x slower.
        g = torch.where(g < 1e-8, 0.0, g)
        delta = (t == 0).to(torch.float32).expand_as(g)
        return torch.where((u[:, _BLUR] < self.cfg.blur_prob)[:, None], g, delta)

    # ------------------------------------------------------------------ apply

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B,3,H,W) uint8 (or float in [0,1]) -> (B,3,S,S) normalised float32 views."""
        images = _as_rgb(images)
        b, _, h, w = images.shape
        s = self.out_size
        dev = images.device
        if b == 0:
            return torch.empty(0, 3, s, s, device=dev)
        rand_dev = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(b, _N_RAND, generator=generator, device=rand_dev)

        # Small per-image parameters are built where they were drawn, then moved in one go.
        parts = [self._crop_params(u, h, w)]
        n_slots = len(self._ops) if self._jitter_on else 0
        if n_slots:
            mats, bias = self._jitter_params(u, self._get_consts(rand_dev))
            parts += [mats.reshape(b, 9 * n_slots), bias]
        if self._gray_on:
            parts.append((u[:, _GRAY] < self.cfg.grayscale_prob).to(torch.float32)[:, None])
        if self._blur_on:
            parts.append(self._blur_weights(u))
        params = torch.cat(parts, dim=1).to(dev, non_blocking=True)
        crop, params = params[:, :4], params[:, 4:]
        c = self._get_consts(dev)

        # Crop + flip + resize in one bilinear pass. The affine map has no rotation, so the
        # grid is built from its two 1-D axes: equal to F.affine_grid(theta) but far cheaper.
        gx = crop[:, 0:1] * c.base + crop[:, 1:2]  # (B, S)
        gy = crop[:, 2:3] * c.base + crop[:, 3:4]
        inp, grid, spare = self._workspace(images)
        torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1, out=grid)
        if images.dtype == torch.uint8:
            inp.copy_(images).div_(255.0)
        else:
            inp.copy_(images)
        x = F.grid_sample(inp, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # The colour steps ping-pong between x and a spare buffer instead of allocating per op.
        x = out = x.view(b, 3, s * s)

        if n_slots:
            mats = params[:, : 9 * n_slots].view(b, n_slots, 3, 3)
            bias = params[:, 9 * n_slots : 10 * n_slots]
            params = params[:, 10 * n_slots :]
            for slot in range(n_slots):
                shift = bias[:, slot]
                if _CONTRAST in self._ops:  # blend towards the mean luma of the current image
                    shift = shift * (x.mean(dim=2) @ c.luma)
                torch.baddbmm(shift.view(b, 1, 1), mats[:, slot], x, out=spare)
                x, spare = spare.clamp_(0.0, 1.0), x

        if self._gray_on:
            gray = params[:, 0].view(b, 1, 1)
            params = params[:, 1:]
            torch.bmm(torch.where(gray > 0.5, c.to_gray, c.eye), x, out=spare)
            x, spare = spare, x

        if self._blur_on:
            # Banded (S, S) matrix per image with reflect padding folded in: blur = K x K^T.
            # Far cheaper on CPU than a grouped conv with B*3 groups.
            assert c.reflect is not None
            kmat = (params @ c.reflect).view(b, s, s)
            # Rows: x K^T as one (B, 3S, S) @ (B, S, S) product; columns: K x per channel.
            torch.bmm(x.view(b, 3 * s, s), kmat.transpose(1, 2), out=spare.view(b, 3 * s, s))
            kmat3 = kmat[:, None].expand(b, 3, s, s).reshape(b * 3, s, s)
            torch.bmm(kmat3, spare.view(b * 3, s, s), out=x.view(b * 3, s, s))

        # The result must be the fresh grid_sample buffer, never the reused spare.
        x = x.sub_(c.mean) if x is out else torch.sub(x, c.mean, out=out)
        return x.div_(c.std).view(b, 3, s, s)
