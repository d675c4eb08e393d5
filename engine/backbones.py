"""Encoders shared by every method, so all methods are compared on equal terms."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from engine.errors import ConfigError


class SmallCNN(nn.Module):
    """A four-stage conv net (0.3 M parameters at width 16) that trains fast on CPU.

    Each stage is conv-BN-ReLU twice with a stride-2 first conv; global average pooling
    gives a ``8 * width`` feature vector.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(c_in, c, 3, stride, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def resnet18_small(resolution: int) -> nn.Module:
    """torchvision's ResNet-18 with a stem for small images.

    Below 96 px the 7x7/2 stem and max-pool throw away most of the image, so it uses a
    3x3/1 stem without max-pool, as in SimCLR's CIFAR experiments (Chen et al. 2020).
    The classifier is replaced by identity; features are 512-d.
    """
    net = torchvision.models.resnet18(weights=None)
    if resolution < 96:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 512
    return net


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``(grid * grid, dim)``, as MAE's.

    He et al. 2022 (MAE) use fixed sin-cos embeddings in encoder and decoder (their
    ``get_2d_sincos_pos_embed``): half the channels encode the row, half the column, each
    as ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 1 / 10000^(k / (dim / 4))``.
    Tokens are in row-major order (row ``i``, column ``j`` is token ``i * grid + j``).
    """
    if dim % 4 != 0:
        raise ValueError(f"sin-cos position embeddings need dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    pos = torch.arange(grid, dtype=torch.float64)

    def embed_1d(p: torch.Tensor) -> torch.Tensor:
        out = p[:, None] * omega[None, :]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    rows = pos.repeat_interleave(grid)  # row index of each token
    cols = pos.repeat(grid)  # column index of each token
    # MAE's code uses grid[0] = w (column) for the first half, then h (row).
    return torch.cat([embed_1d(cols), embed_1d(rows)], dim=1).to(torch.float32)


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``.

    The ViT block (Dosovitskiy et al. 2021) that MAE uses in encoder and decoder, with
    GELU and no dropout. Attention is ``F.scaled_dot_product_attention`` (fused kernels).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, d_head)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


def init_vit_weights(module: nn.Module) -> None:
    """MAE's initialisation: Xavier-uniform linears with zero bias, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) in MAE's form (He et al. 2022).

    Patch embedding (a conv with stride = patch size), fixed 2-D sin-cos position
    embeddings, pre-norm blocks and a final LayerNorm. There is no class token: the
    image feature is the mean of the final tokens. MAE reports that average pooling
    works as well as the class token (paper, appendix A), and the pooled tokens need no
    extra training signal, so every method (not only MAE) gets a useful feature vector
    from the same encoder.

    :meth:`forward_tokens` with ``ids_keep`` encodes only a subset of patches: MAE's
    encoder sees only the visible 25% of the tokens, which is what makes it cheap.
    """

    pos_embed: torch.Tensor

    def __init__(self, resolution: int, patch_size: int = 4, dim: int = 128, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if patch_size < 1 or resolution % patch_size != 0:
            raise ConfigError(
                f"backbone.patch_size = {patch_size} does not divide the resolution "
                f"(data.resolution = {resolution}); pick a patch size that divides it"
            )
        if dim % 4 != 0:
            raise ConfigError(f"backbone.vit_dim = {dim} must be a multiple of 4 (the 2-D "
                              "sin-cos position embeddings split it in four)")
        if dim % heads != 0:
            raise ConfigError(f"backbone.vit_dim = {dim} is not divisible by "
                              f"backbone.vit_heads = {heads}")
        self.patch_size = patch_size
        self.grid = resolution // patch_size
        self.num_patches = self.grid * self.grid
        self.out_dim = dim
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)
        # Fixed, not learned (as MAE); rebuilt from the config, so not in the state_dict.
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, self.grid)[None],
                             persistent=False)
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        init_vit_weights(self)
        # MAE initialises the patch projection like a linear layer (xavier on the flat view).
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        assert self.patch_embed.bias is not None  # nn.Conv2d's default bias=True
        nn.init.zeros_(self.patch_embed.bias)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, R, R)`` -> patch tokens with positions ``(B, N, D)``."""
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        return t + self.pos_embed.to(t.dtype)

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Encoded tokens ``(B, K, D)`` of the patches ``ids_keep`` ``(B, K)`` (all if None).

        Position embeddings are added before the subset is taken, so each kept token
        knows where it is; the order of ``ids_keep`` is the order of the output.
        """
        t = self.embed_patches(x)
        if ids_keep is not None:
            t = torch.gather(t, 1, ids_keep[..., None].expand(-1, -1, t.shape[-1]))
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the final tokens: the ``(B, D)`` feature kNN and probes use."""
        return self.forward_tokens(x).mean(dim=1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The tokens as a spatial map ``(B, D, R/p, R/p)``, for decoders of feature maps."""
        t = self.forward_tokens(x)
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], self.grid, self.grid)


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's last spatial feature map, before pooling: ``(B, C, R/8, R/8)``.

    Reconstruction methods decode it back to an image (with
    :class:`~engine.heads.ConvDecoder`), so they train the same encoder every other
    method trains, and kNN and collapse scores compare them on equal terms.
    """
    if isinstance(backbone, SmallCNN):
        return backbone.features(x)
    if isinstance(backbone, torchvision.models.ResNet):
        x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
        return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))
    fmap = getattr(backbone, "feature_map", None)
    if fmap is None:
        raise ValueError(f"{type(backbone).__name__} has no spatial feature map")
    return fmap(x)


def resolve_backbone_name(name: str, device: torch.device) -> str:
    """'auto' means the small CNN on CPU and ResNet-18 on an accelerator."""
    if name != "auto":
        return name
    return "small_cnn" if device.type == "cpu" else "resnet18"


def build_backbone(
    name: str,
    resolution: int,
    width: int,
    *,
    patch_size: int = 4,
    vit_dim: int = 128,
    vit_depth: int = 4,
    vit_heads: int = 4,
    vit_mlp_ratio: float = 4.0,
) -> tuple[nn.Module, int]:
    """The encoder and its feature dimension.

    The keyword arguments are the ViT's and carry the names of their ``backbone.*``
    settings (the exported loader passes them by name); other backbones ignore them.
    """
    if name == "small_cnn":
        net: nn.Module = SmallCNN(width)
    elif name == "resnet18":
        net = resnet18_small(resolution)
    elif name == "vit":
        net = ViT(resolution, patch_size, vit_dim, vit_depth, vit_heads, vit_mlp_ratio)
    else:
        raise ValueError(f"unknown backbone {name!r}")
    # each backbone above sets an int ``out_dim``; nn.Module's __getattr__ cannot say so
    return net, int(cast(int, net.out_dim))
