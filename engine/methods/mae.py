"""MAE: mask most patches of the image and reconstruct their pixels from the rest.

He, Chen, Xie, Li, Dollár, Girshick. "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022.

The image is cut into patches; a random 75% of them are removed and the ViT encoder (the
shared backbone, :class:`~engine.backbones.ViT`) sees only the visible ones, which makes
it cheap. A lightweight transformer decoder gets the encoded visible tokens plus a shared,
learned mask token at every removed position (each with the decoder's own position
embedding) and predicts the pixels of every patch; the loss is the MSE on the removed
patches only. A high mask ratio leaves too little to interpolate from neighbours, so the
encoder has to model objects and their outlines (paper, section 3 and Fig. 5).

Details of this implementation (as the official code unless said):

* Masking: per-image uniform noise, ``argsort`` -> ``ids_shuffle``; the first
  ``round(N (1 - ratio))`` are kept (``ids_keep``), ``ids_restore = argsort(ids_shuffle)``
  puts the decoder's tokens back in place, and ``mask`` is 1 on removed patches.
* Targets are the normalised pixels of each patch, optionally normalised per patch
  (``norm_pix_loss``, :func:`engine.losses.mae_targets`).
* No class token: the encoder's feature (kNN, collapse scores, ``embed``) is the mean of
  its tokens on the whole, unmasked image (see :class:`~engine.backbones.ViT`).
* Views are random resized crops and flips only: the paper's MAE works with cropping
  alone and colour jitter slightly hurts it (Table 1e), since masking is already the
  strong corruption and colour changes would only alter what has to be reconstructed.
* All randomness (crops, flips, masks) comes from the ``generator`` the trainer passes, so
  resumed runs and preview snapshots repeat exactly.
* Metrics: ``masked_mse`` (the loss) and ``visible_mse``, the same error on the visible
  patches, which the loss ignores (in the units of the targets).

On several processes nothing is gathered: every image has the same number of masked
patches, so the mean over processes of the loss and of both metrics is the whole batch's;
the ViT has no BatchNorm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from engine.augment import ViewAugment, eval_transform, normalize, to_uint8
from engine.backbones import TransformerBlock, ViT, init_vit_weights, sincos_pos_embed_2d
from engine.config import Config, MethodConfig, param
from engine.errors import ConfigError
from engine.losses import mae_loss, mae_targets
from engine.methods._base import InputView, Preview, SSLMethod, StepOutput
from engine.registry import register_method

NORM_PIX_EPS = 1e-6


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Images ``(B, C, H, W)`` -> patches ``(B, N, p * p * C)``, row-major patch order.

    Within a patch the values are ordered (row, column, channel), as the official code.
    """
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}")
    gh, gw = h // p, w // p
    x = images.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, gh * gw, p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify` for square images: ``(B, N, p * p * C)`` -> images."""
    b, n, _ = patches.shape
    p = patch_size
    g = int(round(n**0.5))
    if g * g != n:
        raise ValueError(f"{n} patches do not make a square grid")
    x = patches.reshape(b, g, g, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, g * p, g * p)


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Patches left visible: ``round(N (1 - ratio))``, at least one."""
    return max(1, min(num_patches, round(num_patches * (1.0 - mask_ratio))))


def random_masking(
    batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-image random masking by sorting noise (official ``random_masking``).

    Returns ``ids_keep`` ``(B, K)`` (visible patch indices, in shuffled order),
    ``mask`` ``(B, N)`` float (1 on removed patches, 0 on visible ones, in the image's
    patch order) and ``ids_restore`` ``(B, N)``: gathering ``[kept tokens, mask tokens]``
    with it puts every token back at its patch. The noise is drawn on the generator's
    device, so a CPU generator gives the same masks whatever device the model is on.
    """
    keep = num_kept(num_patches, mask_ratio)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.rand(batch, num_patches, generator=generator, device=gen_device).to(device)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


@dataclass
class MAEConfig(MethodConfig):
    mask_ratio: float = param(
        0.75,
        "Fraction of patches removed; the encoder sees only the rest (0.75 in the paper, "
        "which finds 40-80% all work and 75% best for linear probing).",
        min=0.0,
        max=0.95,
        min_exclusive=True,
    )
    decoder_dim: int = param(
        64, "Token width of the decoder (512 in the paper; a multiple of 4 and of the "
        "decoder heads).", min=16, max=2048)
    decoder_depth: int = param(
        2, "Transformer blocks in the decoder (8 in the paper; 1 already reconstructs, "
        "deeper helps linear probing, Table 1a).", min=1, max=16)
    decoder_heads: int = param(4, "Attention heads of each decoder block.", min=1, max=32,
                               advanced=True)
    norm_pix_loss: bool = param(
        False,
        "Normalise each target patch by its own mean and std (the paper's improved target, "
        "Table 1c). Flat patches then become noise to predict, so it is off by default on "
        "the flat-coloured built-in shapes.",
        label="Norm-pix loss",
    )


    def validate(self, cfg: Config) -> None:
        """MAE's encoder sees only the visible patches: it needs the ViT; the decoder's
        width must split into its heads (and its sin-cos positions into four parts)."""
        if cfg.backbone.name != "vit":
            raise ConfigError(
                f"backbone.name = {cfg.backbone.name!r}: MAE needs the Vision Transformer "
                "backbone, set backbone.name = \"vit\" (its encoder must see only the "
                "visible patches)")
        if self.decoder_dim % 4 != 0 or self.decoder_dim % self.decoder_heads != 0:
            raise ConfigError(
                f"method.decoder_dim = {self.decoder_dim} must be a multiple of 4 and of "
                f"method.decoder_heads = {self.decoder_heads}")


@register_method(
    "mae",
    config=MAEConfig,
    family="reconstruction",
    description="Mask 75% of the patches, encode only the visible ones with a ViT and "
    "reconstruct the pixels of the masked ones with a small decoder.",
    paper="He et al. 2022, Masked Autoencoders Are Scalable Vision Learners",
    preset={
        "backbone.name": "vit",
        "backbone.patch_size": 4,
        "backbone.vit_dim": 128,
        "backbone.vit_depth": 4,
        "backbone.vit_heads": 4,
        "optim.weight_decay": 0.05,
    },
    gpu_preset={
        "backbone.vit_dim": 384,
        "backbone.vit_depth": 12,
        "backbone.vit_heads": 6,
        "method.decoder_dim": 256,
        "method.decoder_depth": 4,
        "method.decoder_heads": 8,
        "optim.batch_size": 256,
        "optim.max_steps": 6000,
        "optim.warmup_steps": 300,
        "optim.lr": 1e-3,
    },
    collapse_advice=(
        "No loss term spreads MAE's features: a low effective rank of the pooled features "
        "is common early in MAE training and not by itself a failure (He et al. 2022 "
        "report they need long training or fine-tuning to become linearly separable); "
        "judge the run by its reconstructions, and train longer."
    ),
)
class MAE(SSLMethod):
    backbone: ViT  # checked in __init__
    decoder_pos_embed: torch.Tensor

    def __init__(self, cfg: Config, backbone: nn.Module, feature_dim: int) -> None:
        if not isinstance(backbone, ViT):
            raise ConfigError(
                f"backbone.name = {cfg.backbone.name!r} ({type(backbone).__name__}): MAE "
                "needs the Vision Transformer backbone, set backbone.name = \"vit\" (its "
                "encoder must see only the visible patches)"
            )
        super().__init__(cfg, backbone, feature_dim)
        m: MAEConfig = cfg.method  # type: ignore[assignment]
        m.validate(cfg)
        self.patch_size = backbone.patch_size
        self.num_patches = backbone.num_patches
        self.mask_ratio = m.mask_ratio
        self.norm_pix = m.norm_pix_loss
        self.resolution = cfg.data.resolution
        d = m.decoder_dim
        self.decoder_embed = nn.Linear(feature_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("decoder_pos_embed",
                             sincos_pos_embed_2d(d, backbone.grid)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(
            [TransformerBlock(d, m.decoder_heads) for _ in range(m.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_pred = nn.Linear(d, self.patch_size**2 * 3)
        for mod in (self.decoder_embed, self.decoder_blocks, self.decoder_norm,
                    self.decoder_pred):
            init_vit_weights(mod)
        nn.init.normal_(self.mask_token, std=0.02)
        # Crops and flips only (see the module docstring).
        geometric = dataclasses.replace(cfg.augment, jitter_prob=0.0, grayscale_prob=0.0,
                                        blur_prob=0.0)
        self.views = ViewAugment(geometric, self.resolution)

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoded visible tokens ``(B, K, D)`` -> predicted patches ``(B, N, p * p * 3)``."""
        t = self.decoder_embed(latent)
        b, k, d = t.shape
        n = ids_restore.shape[1]
        t = torch.cat([t, self.mask_token.to(t.dtype).expand(b, n - k, d)], dim=1)
        t = torch.gather(t, 1, ids_restore[..., None].expand(-1, -1, d))  # unshuffle
        t = t + self.decoder_pos_embed.to(t.dtype)
        for blk in self.decoder_blocks:
            t = blk(t)
        return self.decoder_pred(self.decoder_norm(t))

    def reconstruct(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask normalised images, encode the visible patches, decode every patch.

        Returns the prediction ``(B, N, p * p * 3)`` (in target units) and the mask
        ``(B, N)`` (1 = removed).
        """
        ids_keep, mask, ids_restore = random_masking(
            x.shape[0], self.num_patches, self.mask_ratio, generator, x.device)
        latent = self.backbone.forward_tokens(x, ids_keep)
        return self.decode(latent, ids_restore), mask

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        x = self.views(images, generator)
        pred, mask = self.reconstruct(x, generator)
        target = mae_targets(patchify(x, self.patch_size), self.norm_pix, NORM_PIX_EPS)
        loss = mae_loss(pred, target, mask)
        with torch.no_grad():
            visible = mae_loss(pred.detach(), target, 1.0 - mask)
        return StepOutput(loss, {"masked_mse": loss.detach(), "visible_mse": visible})

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The geometric view with the patches the step's masking removes blacked out:
        the encoder sees only the visible ones."""
        x = self.views(samples, generator)
        _, mask, _ = random_masking(x.shape[0], self.num_patches, self.mask_ratio,
                                    generator, x.device)
        kept = num_kept(self.num_patches, self.mask_ratio)
        return [InputView("target", to_uint8(x), caption="every patch is predicted"),
                InputView("visible patches", to_uint8(self.visible_only(x, mask)),
                          caption=f"{kept} of {self.num_patches} patches of "
                                  f"{self.patch_size} px kept")]

    def visible_only(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised images with the removed patches (``mask`` 1) black."""
        patches = patchify(x, self.patch_size)
        black = normalize(torch.zeros(3, 1, 1, device=x.device))
        black_patch = patchify(black.expand(1, 3, self.patch_size, self.patch_size),
                               self.patch_size)
        return unpatchify(torch.where(mask[..., None].bool(), black_patch, patches),
                          self.patch_size)

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        x = eval_transform(images, self.resolution)
        pred, mask = self.reconstruct(x, generator)
        patches = patchify(x, self.patch_size)
        pred = pred.float()
        if self.norm_pix:  # back to pixels with the target patch's statistics (as the demo)
            mean = patches.mean(dim=-1, keepdim=True)
            var = patches.var(dim=-1, keepdim=True)
            pred = pred * (var + NORM_PIX_EPS) ** 0.5 + mean
        pasted = torch.where(mask[..., None].bool(), pred, patches)
        return Preview(
            "reconstruction",
            originals=images,
            inputs=to_uint8(self.visible_only(x, mask)),
            outputs=to_uint8(unpatchify(pasted, self.patch_size)),
            input_title="visible patches",
            output_title="reconstruction + visible",
        )
