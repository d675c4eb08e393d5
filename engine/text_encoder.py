"""A small Transformer text encoder: token ids in, one state per token out.

The encoder of the text methods (GPT, BERT's MLM, SimCSE), written once. Its parts are
those of GPT-2 and of the pre-norm Transformer (Radford et al. 2019; Xiong et al. 2020,
"On Layer Normalization in the Transformer Architecture"), which trains stably without
the post-norm warm-up tricks:

* token embedding, plus position embeddings (learned, as GPT and BERT; or the fixed
  sinusoids of Vaswani et al. 2017, section 3.5), plus an optional segment embedding
  (BERT's sentence A / B embedding, Devlin et al. 2019, section 3), then dropout;
* ``depth`` blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` with a GELU MLP (GPT, BERT)
  and dropout on both residual branches and on the attention weights;
* a final LayerNorm.

Attention is :func:`torch.nn.functional.scaled_dot_product_attention` with one boolean
mask: a key is visible when it is not [PAD] (the key padding mask) and, in causal mode,
not after the query (the language model's mask). Each token may always see itself, so a
[PAD] query never has an empty row (whose softmax would be NaN); real tokens never see
[PAD], so right-padding a row does not change its real tokens' states.

CPU default (dim 128, depth 4, heads 4, MLP x4, 128 positions, 260 byte tokens): about
0.84 M parameters, a few minutes of training on a 2-core CPU; the GPU preset (dim 384,
depth 6) has about 11 M.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.data.tokens import PAD

#: where the token states come from, 'learned' (GPT, BERT) or 'sinusoidal' (Vaswani 2017)
POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed position encodings of Vaswani et al. 2017 (section 3.5), ``(length, dim)``:
    ``PE(p, 2i) = sin(p / 10000^(2i/dim))``, ``PE(p, 2i+1) = cos(p / 10000^(2i/dim))``."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    freq = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    out = torch.zeros(length, dim, dtype=torch.float64)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out.to(torch.float32)


def attention_mask(ids: torch.Tensor, causal: bool) -> torch.Tensor:
    """The boolean mask ``(B, 1, L, L)`` of :func:`scaled_dot_product_attention` (True:
    the query may attend to the key): keys that are not [PAD], in causal mode only those
    at or before the query; and always the query itself."""
    n = ids.shape[1]
    keep = (ids != PAD)[:, None, None, :]  # (B, 1, 1, L)
    eye = torch.eye(n, dtype=torch.bool, device=ids.device)
    if causal:
        keep = keep & torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
    return keep | eye


class TextBlock(nn.Module):
    """One pre-norm block: ``x + Drop(Attn(LN(x)))``, then ``x + Drop(MLP(LN(x)))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, d_head)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class TextEncoder(nn.Module):
    """Token ids ``(B, L)`` (int64, right-padded with [PAD]) -> token states ``(B, L, D)``.

    ``max_len`` is the number of positions (the run's ``data.seq_len``); ``segments`` the
    number of segment embeddings (0: none; 2 for BERT's sentence pairs). GPT-2's
    initialisation: normal(0, 0.02) weights, zero biases, and the residual projections
    scaled by ``1 / sqrt(2 * depth)`` so the residual stream's variance does not grow with
    depth (Radford et al. 2019, section 2.3).
    """

    pos_table: torch.Tensor

    def __init__(self, vocab_size: int, max_len: int, dim: int = 128, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.1,
                 positions: str = "learned", segments: int = 0) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.out_dim = dim
        self.positions = positions
        self.token = nn.Embedding(vocab_size, dim)
        self.position: nn.Embedding | None = None
        if positions == "learned":
            self.position = nn.Embedding(max_len, dim)
        else:  # fixed, rebuilt from the config: not in the state_dict
            self.register_buffer("pos_table", sinusoidal_positions(max_len, dim),
                                 persistent=False)
        self.segment = nn.Embedding(segments, dim) if segments > 0 else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [TextBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            assert isinstance(blk, TextBlock)
            out = blk.mlp[2]
            assert isinstance(out, nn.Linear)
            for w in (blk.proj.weight, out.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * depth))

    def forward(self, ids: torch.Tensor, causal: bool = False,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """Token states ``(B, L, D)`` after the final LayerNorm; ``causal`` hides later
        tokens from each token; ``segments`` ``(B, L)`` are segment ids (needs
        ``segments > 0`` at construction)."""
        n = ids.shape[1]
        if n > self.max_len:
            raise ValueError(f"{n} tokens but the encoder has {self.max_len} positions "
                             "(data.seq_len)")
        x = self.token(ids)
        if self.position is not None:
            x = x + self.position.weight[:n]
        else:
            x = x + self.pos_table[:n].to(x.dtype)
        if self.segment is not None:
            seg = segments if segments is not None else torch.zeros_like(ids)
            x = x + self.segment(seg)
        elif segments is not None:
            raise ValueError("segment ids given to an encoder without segment embeddings")
        x = self.drop(x)
        mask = attention_mask(ids, causal)
        for blk in self.blocks:
            x = blk(x, mask)
        return self.norm(x)


def mean_pool(states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The mean of the token states ``(B, L, D)`` over each row's non-[PAD] tokens: a
    sentence embedding ``(B, D)`` (the mean pooling of Reimers & Gurevych 2019,
    Sentence-BERT, which Gao et al. 2021 also evaluate). Float32."""
    keep = (ids != PAD).to(torch.float32)[..., None]
    return (states.float() * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def parameter_count(module: nn.Module) -> int:
    """Trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
