"""Geometry of the pretext tasks: exact rotations, tile grids, Hamming permutation sets.

Pure functions shared by rotation prediction (Gidaris et al. 2018), jigsaw puzzles (Noroozi
& Favaro 2016) and relative patch location (Doersch et al. 2015), written once so that the
label of every example is built by code that is tested on its own:

* :func:`rotate` turns each image by its own multiple of 90 degrees with ``torch.rot90``:
  a permutation of the pixels, so rotating back gives the original bit for bit.
* :class:`TileGrid` lays a ``grid x grid`` array of square cells over the image; each tile
  is smaller than its cell (the *gap*) and sits at a random integer offset inside it (the
  *jitter*). Both papers use gap and jitter so that the network cannot solve the task by
  matching low-level edge continuations across tile borders.
* :func:`hamming_permutations` picks a fixed set of tile orders greedily for maximal
  minimum Hamming distance (Noroozi & Favaro, Sec. 3.3): the more orders differ, the less
  two classes can be confused by a few ambiguous tiles.

Every random number comes from the ``generator`` passed in, drawn on the generator's
device and then moved to the images' device (as :mod:`engine.corruption` does), so a
seeded CPU generator gives the same tiles and labels wherever the images live and resumed
runs repeat exactly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

#: rotation labels: k quarter turns counter-clockwise, as ``torch.rot90(x, k, (-2, -1))``
ROTATION_NAMES = ("0°", "90°", "180°", "270°")

#: relative patch labels (Doersch et al. 2015, Fig. 2): where the neighbour lies relative
#: to the reference (centre) patch, in reading order
NEIGHBOUR_NAMES = ("top-left", "top", "top-right", "left", "right", "bottom-left", "bottom",
                   "bottom-right")
#: (row, column) step from the centre cell of a 3x3 grid to each neighbour label
NEIGHBOUR_STEPS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))

#: candidate permutations beyond which the greedy search runs over a random sample of them
#: instead of all ``n!`` (9! = 362,880 are enumerated; 16! are not)
_MAX_ENUMERATED = 400_000
_SAMPLED_CANDIDATES = 100_000


def _rand_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def random_labels(
    n: int, classes: int, generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """``n`` labels uniform in ``[0, classes)``, drawn on the generator's device."""
    u = torch.randint(classes, (n,), generator=generator, device=_rand_device(generator))
    return u.to(device)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max logit is the label (a detached scalar)."""
    return (logits.detach().argmax(dim=1) == labels).float().mean()


# ----------------------------------------------------------------------------- rotation


def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Images ``(B, C, S, S)`` each turned ``k[i]`` quarter turns counter-clockwise.

    Exact (a pixel permutation); ``rotate(rotate(x, k), -k)`` is ``x``. ``k`` may be any
    integers, taken modulo 4.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotations need square images, got {tuple(x.shape[-2:])}")
    k = k.to(x.device).remainder(4)
    out = torch.empty_like(x)
    for r in range(4):
        idx = (k == r).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = torch.rot90(x[idx], r, dims=(-2, -1))
    return out


def all_rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The four rotations of every image, ``(4B, C, S, S)``, and their labels ``(4B,)``.

    Gidaris et al. (Sec. 3, "Implementation details") feed all four rotated copies of each
    image in the same batch, which they found better than one random rotation per image.
    Ordered rotation-major: rows ``r*B .. r*B + B - 1`` hold rotation ``r``.
    """
    b = x.shape[0]
    rotated = torch.cat([torch.rot90(x, r, dims=(-2, -1)) for r in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(b)
    return rotated, labels


# ----------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class TileGrid:
    """A ``grid x grid`` array of ``cell``-pixel cells centred on a ``size``-pixel image,
    holding ``tile``-pixel tiles (``cell - tile`` pixels of gap and jitter room)."""

    size: int
    grid: int
    cell: int
    tile: int

    @property
    def n_tiles(self) -> int:
        return self.grid * self.grid

    @property
    def margin(self) -> int:
        """Pixels between the image border and the first cell (the grid is centred)."""
        return (self.size - self.grid * self.cell) // 2

    @property
    def slack(self) -> int:
        """Largest jitter offset of a tile inside its cell."""
        return self.cell - self.tile

    def cell_origins(self) -> torch.Tensor:
        """``(T, 2)`` top-left (row, column) of every cell, in reading order."""
        r = torch.arange(self.grid)
        rows, cols = torch.meshgrid(r, r, indexing="ij")
        return torch.stack([rows.flatten(), cols.flatten()], dim=1) * self.cell + self.margin


def tile_grid(size: int, grid: int, gap: float) -> TileGrid:
    """The grid of ``grid x grid`` cells over a ``size``-pixel image; tiles leave ``gap``
    (a fraction of the cell side, rounded to whole pixels) free in every cell."""
    if grid < 1:
        raise ValueError(f"grid must be at least 1, got {grid}")
    if not 0.0 <= gap < 1.0:
        raise ValueError(f"gap must be in [0, 1), got {gap}")
    cell = size // grid
    tile = round(cell * (1.0 - gap))
    if cell < 2 or tile < 1:
        raise ValueError(f"a {grid}x{grid} grid on {size} px images leaves {cell}-px cells: "
                         "too small for tiles; use a coarser grid or a higher resolution")
    return TileGrid(size=size, grid=grid, cell=cell, tile=tile)


def tile_corners(
    n: int, g: TileGrid, jitter: bool, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(n, T, 2)`` top-left (row, column) of every tile of ``n`` images.

    With ``jitter`` each tile sits at an offset uniform over the ``slack + 1`` integer
    positions inside its cell, per axis, per tile (Noroozi & Favaro place a 64-px tile at a
    random position in a 75-px cell); without it, in the middle of its cell.
    """
    origins = g.cell_origins()
    if jitter and g.slack > 0:
        u = torch.randint(g.slack + 1, (n, g.n_tiles, 2), generator=generator,
                          device=_rand_device(generator)).cpu()
    else:
        u = torch.full((n, g.n_tiles, 2), g.slack // 2, dtype=torch.long)
    return (origins[None] + u).to(device)


def extract_tiles(x: torch.Tensor, corners: torch.Tensor, tile: int) -> torch.Tensor:
    """Tiles ``(B, T, C, tile, tile)`` of images ``(B, C, H, W)`` at ``corners`` ``(B, T, 2)``.

    Exact crops (one gather), so ``tiles[b, t] == x[b, :, r:r + tile, c:c + tile]``.
    """
    b, c, h, w = x.shape
    t = corners.shape[1]
    span = torch.arange(tile, device=x.device)
    rows = corners[..., 0, None].to(x.device) + span  # (B, T, tile)
    cols = corners[..., 1, None].to(x.device) + span
    if rows.min() < 0 or rows.max() >= h or cols.min() < 0 or cols.max() >= w:
        raise ValueError("a tile reaches outside the image")
    flat = (rows[..., :, None] * w + cols[..., None, :]).view(b, 1, t * tile * tile)
    out = torch.gather(x.reshape(b, c, h * w), 2, flat.expand(b, c, -1))
    return out.view(b, c, t, tile, tile).transpose(1, 2)


def compose_tiles(tiles: torch.Tensor, g: TileGrid, fill: float = 0.0) -> torch.Tensor:
    """Tiles ``(B, T, C, t, t)`` laid out in reading order on a ``size``-pixel canvas, each
    in the middle of its cell, the gaps filled with ``fill``: what a jigsaw input looks like."""
    b, t, c = tiles.shape[:3]
    canvas = tiles.new_full((b, c, g.size, g.size), fill)
    for i, (r, col) in enumerate((g.cell_origins() + g.slack // 2).tolist()):
        canvas[:, :, r : r + g.tile, col : col + g.tile] = tiles[:, i]
    return canvas


def side_by_side(a: torch.Tensor, b: torch.Tensor, sep: int, fill: float = 0.0) -> torch.Tensor:
    """Two batches of equal-size images ``(B, C, h, w)`` next to each other, ``sep`` pixels
    of ``fill`` between them: ``(B, C, h, 2w + sep)``."""
    bar = a.new_full((*a.shape[:-1], sep), fill)
    return torch.cat([a, bar, b], dim=-1)


def normalize_tiles(tiles: torch.Tensor, min_std: float = 0.25) -> torch.Tensor:
    """Each tile ``(..., C, t, t)`` with its per-channel mean removed and divided by its
    standard deviation (over channels and pixels), floored at ``min_std``.

    Noroozi & Favaro (Sec. 3.2) normalise mean and std of every tile independently so that
    matching brightness and contrast across tiles is no shortcut. The floor (in normalised
    units; 0.25 is about 16/255) keeps flat tiles from being blown up to pure noise.
    """
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-3, -2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / std.clamp(min=min_std)


def encode_tiles(backbone: nn.Module, tiles: torch.Tensor, size: int) -> torch.Tensor:
    """Backbone features ``(B, T, D)`` of tiles ``(B, T, C, t, t)``: the shared (siamese)
    tile encoder of both papers, every tile resized to ``size`` pixels first (bilinear;
    ``size`` 0 keeps the tiles as they are)."""
    b, t = tiles.shape[:2]
    flat = tiles.reshape(b * t, *tiles.shape[2:])
    if size > 0 and size != flat.shape[-1]:
        flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return backbone(flat).view(b, t, -1)


# ----------------------------------------------------------------------------- jigsaw


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """``out[b, i] = tiles[b, perms[b, i]]``: position ``i`` of the puzzle shows tile
    ``perms[b, i]`` (tiles ``(B, T, ...)``, perms ``(B, T)``)."""
    idx = perms.to(tiles.device).view(*perms.shape, *([1] * (tiles.ndim - 2)))
    return torch.gather(tiles, 1, idx.expand_as(tiles))


def invert_permutations(perms: torch.Tensor) -> torch.Tensor:
    """The inverse of each row of ``perms`` ``(..., T)``: ``inv[perms[i]] = i``."""
    return torch.argsort(perms, dim=-1)


def unshuffle_tiles(shuffled: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Undo :func:`shuffle_tiles`: the tiles back in reading order."""
    return shuffle_tiles(shuffled, invert_permutations(perms))


def hamming_distances(perms: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``(N,)`` number of positions where each row of ``perms`` ``(N, T)`` differs from
    ``other`` ``(T,)``."""
    return (perms != other).sum(dim=1)


@lru_cache(maxsize=8)
def _greedy_set(n_items: int, n_perms: int, seed: int) -> tuple[tuple[tuple[int, ...], ...], int]:
    g = torch.Generator().manual_seed(seed)
    if math.factorial(n_items) <= _MAX_ENUMERATED:
        cands = torch.tensor(list(itertools.permutations(range(n_items))), dtype=torch.int8)
    else:
        sample = torch.argsort(torch.rand(_SAMPLED_CANDIDATES, n_items, generator=g), dim=1)
        cands = torch.cat([torch.arange(n_items)[None], sample]).to(torch.int8)
    if n_perms > cands.shape[0]:
        raise ValueError(f"only {cands.shape[0]} permutations of {n_items} tiles to choose "
                         f"from, {n_perms} asked for")
    # Random priorities in [0, 0.5) only break ties between equally distant candidates.
    priority = torch.rand(cands.shape[0], generator=g) * 0.5
    chosen = [0]  # the identity (the solved puzzle) is class 0
    # min_dist[c]: Hamming distance from candidate c to the nearest chosen permutation
    min_dist = hamming_distances(cands, cands[0]).to(torch.int16)
    claimed = n_items
    for _ in range(n_perms - 1):
        j = int(torch.argmax(min_dist + priority))
        claimed = min(claimed, int(min_dist[j]))
        chosen.append(j)
        min_dist = torch.minimum(min_dist, hamming_distances(cands, cands[j]).to(torch.int16))
    return tuple(tuple(int(v) for v in cands[j]) for j in chosen), claimed


def hamming_permutations(n_items: int, n_perms: int, seed: int = 0) -> tuple[torch.Tensor, int]:
    """A fixed set of ``n_perms`` permutations of ``n_items`` tiles and its minimum pairwise
    Hamming distance.

    Greedy farthest-point selection (Noroozi & Favaro, Sec. 3.3 and Algorithm 1, with the
    max-min criterion): start from the identity, then repeatedly add the permutation whose
    smallest Hamming distance to those already chosen is largest, ties broken by a seeded
    random order. The distance returned is the smallest of the distances at which the
    permutations were selected, which is the minimum over all pairs. Deterministic for a
    given seed (and cached). Up to
    ``_MAX_ENUMERATED`` candidates (9 tiles) every permutation is considered; beyond, a
    seeded sample of ``_SAMPLED_CANDIDATES``.
    """
    if n_items < 2:
        raise ValueError(f"need at least 2 tiles to permute, got {n_items}")
    if n_perms < 2:
        raise ValueError(f"need at least 2 permutations, got {n_perms}")
    rows, claimed = _greedy_set(n_items, n_perms, seed)
    return torch.tensor(rows, dtype=torch.long), claimed


def max_permutations(n_items: int) -> int:
    """How many distinct permutations :func:`hamming_permutations` can choose from."""
    if math.factorial(n_items) <= _MAX_ENUMERATED:
        return math.factorial(n_items)
    return _SAMPLED_CANDIDATES + 1


# ----------------------------------------------------------------------------- neighbours


def neighbour_tile(labels: torch.Tensor, grid: int = 3) -> torch.Tensor:
    """Reading-order index in a ``grid x grid`` tiling of the neighbour named by each
    relative-position label (0 = top-left ... 7 = bottom-right) of the centre cell."""
    steps = torch.tensor(NEIGHBOUR_STEPS, device=labels.device)[labels]
    centre = grid // 2
    return (centre + steps[:, 0]) * grid + centre + steps[:, 1]
