"""Jigsaw puzzles: recognise in which of a fixed set of orders the tiles were shuffled.

Noroozi, Favaro. "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles", ECCV 2016.

The image is cut into a ``grid x grid`` array of tiles, each a little smaller than its
cell (the *gap*) and at a random position inside it (the *jitter*), so that edges and
textures do not simply continue from one tile into the next. The tiles are shuffled by one
of ``n_permutations`` fixed orders, chosen greedily for maximal Hamming distance
(:func:`engine.pretext.hamming_permutations`), each tile goes through the same encoder (the
shared backbone: the paper's siamese "context-free network"), the tile features are
concatenated in puzzle order and an MLP classifies which order it was. To place a tile
without seeing its neighbours the encoder has to know what part of which object it shows.

Details of this implementation, at the workbench's 32 px:

* Tiles are tiny (a 3x3 grid on 32 px gives 10-px cells and 8-px tiles with the default
  gap), and the backbones downsample 8x. Tiles are therefore resized (bilinear) to
  ``tile_size`` pixels before the encoder: at 16 px the small CNN still has a 2x2 map in
  its last stage instead of a single padding-dominated pixel, and nine 16-px tiles cost
  about as much as 2.25 full images, close to a two-view method's 2. The pixel content is
  the same; only the scale changes. The GPU preset feeds them at 32 px (ResNet-18, the
  scale at which kNN sees whole images). A 2x2 grid (``grid = 2``: 24 orders) is the
  coarser alternative; 3x3 is kept as default because with four tiles most tiles show
  part of the shape and the puzzle is mostly solved by where the outline leaves a tile.
* ``n_permutations`` defaults to 100 (the paper uses 1000; its Table 3 shows fewer
  orders make an easier task with slightly weaker features). Greedy max-min selection
  over all 9! orders gives a minimum Hamming distance of 6 for 100 orders. The set is a
  pure function of the seed; class 0 is the unshuffled order.
* Every tile is normalised to zero mean and unit std on its own (the paper, Sec. 3.2),
  so brightness continuity across tiles is no shortcut.
* Views are random crops and flips only (the paper takes random crops of the image and
  no colour jitter beyond the tile normalisation): the puzzle is geometric.
* ``embed`` is the backbone on the whole image, as for every other method; the preview
  shows the shuffled tiles (raw pixels, before tile normalisation) in puzzle order.

On several processes nothing is gathered: the loss and ``pretext_accuracy`` are means over
puzzles, every process has as many, so their mean over processes is the whole batch's.
BatchNorm stays per process (``run.sync_batchnorm = "on"`` synchronises it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.augment import ViewAugment, eval_transform, to_uint8
from engine.config import Config, MethodConfig, param
from engine.errors import ConfigError
from engine.heads import mlp_head
from engine.losses import pretext_cross_entropy
from engine.methods._base import InputView, Preview, SSLMethod, StepOutput
from engine.methods._reconstruction import geometric_only
from engine.pretext import (
    accuracy,
    compose_tiles,
    encode_tiles,
    extract_tiles,
    hamming_permutations,
    max_permutations,
    normalize_tiles,
    random_labels,
    shuffle_tiles,
    tile_corners,
    tile_grid,
)
from engine.registry import register_method


@dataclass
class JigsawConfig(MethodConfig):
    grid: int = param(3, "Tiles per side of the puzzle (3 in the paper: 9 tiles).", min=2,
                      max=4)
    n_permutations: int = param(
        100,
        "Size of the fixed set of tile orders, i.e. the number of classes (1000 in the "
        "paper, 100 works; at most 24 for a 2x2 grid). Building a large set takes a few "
        "seconds.",
        min=2,
        max=1000,
    )
    gap: float = param(
        0.2,
        "Part of each cell's side not covered by its tile: room for the gap and the "
        "jitter (the paper: 64-px tiles in 75-px cells, 0.15).",
        min=0.0,
        max=0.7,
    )
    jitter: bool = param(
        True,
        "Place each tile at a random position inside its cell (the paper); off centres it.",
    )
    tile_size: int = param(
        16,
        "Side in pixels the tiles are resized to before the shared encoder (0 keeps them "
        "at their own size, e.g. 8 px for a 3x3 grid on 32 px images).",
        min=0,
        max=512,
    )
    normalize_tiles: bool = param(
        True,
        "Normalise each tile's mean and std on its own (the paper), so matching brightness "
        "across tiles is no shortcut.",
    )
    head_hidden_dim: int = param(
        512,
        "Hidden width of the MLP on the concatenated tile features (4096 in the paper).",
        min=16,
        max=16384,
    )
    permutation_seed: int = param(
        0, "Seed breaking ties in the greedy choice of the permutation set.", min=0,
        max=2**31 - 1, advanced=True,
    )


    def validate(self, cfg: Config) -> None:
        """The grid must fit the resolution, and there are only so many tile orders."""
        try:
            grid = tile_grid(cfg.data.resolution, self.grid, self.gap)
        except ValueError as e:
            raise ConfigError(f"method.grid = {self.grid}: {e}") from None
        if self.n_permutations > max_permutations(grid.n_tiles):
            raise ConfigError(
                f"method.n_permutations = {self.n_permutations} is more than the "
                f"{max_permutations(grid.n_tiles)} orders of a {self.grid}x{self.grid} grid")


@register_method(
    "jigsaw",
    config=JigsawConfig,
    family="pretext",
    description="Cut the image into a grid of tiles, shuffle them by one of a fixed set of "
    "orders and predict which order (permutation classification).",
    paper="Noroozi & Favaro 2016, Unsupervised Learning of Visual Representations by "
    "Solving Jigsaw Puzzles",
    preset={"augment.crop_min_scale": 0.6},
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000, "method.tile_size": 32},
)
class Jigsaw(SSLMethod):
    permutations: torch.Tensor

    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: JigsawConfig = cfg.method  # type: ignore[assignment]
        self.resolution = cfg.data.resolution
        m.validate(cfg)
        self.grid = tile_grid(self.resolution, m.grid, m.gap)
        n_tiles = self.grid.n_tiles
        perms, self.min_hamming = hamming_permutations(n_tiles, m.n_permutations,
                                                       m.permutation_seed)
        self.register_buffer("permutations", perms, persistent=False)
        self.pretext_chance = 1.0 / m.n_permutations
        self.jitter = m.jitter
        self.tile_size = m.tile_size
        self.normalize = m.normalize_tiles
        self.head = mlp_head(n_tiles * feature_dim, m.head_hidden_dim, m.n_permutations)
        self.views = ViewAugment(geometric_only(cfg.augment), self.resolution)

    def puzzles(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffled tiles ``(B, T, C, t, t)`` of normalised images and their labels (the
        index of the order in the permutation set)."""
        corners = tile_corners(x.shape[0], self.grid, self.jitter, generator, x.device)
        tiles = extract_tiles(x, corners, self.grid.tile)
        labels = random_labels(x.shape[0], self.permutations.shape[0], generator, x.device)
        return shuffle_tiles(tiles, self.permutations[labels]), labels

    def classify(self, shuffled: torch.Tensor) -> torch.Tensor:
        """Permutation logits ``(B, P)`` of shuffled tiles ``(B, T, C, t, t)``."""
        if self.normalize:
            shuffled = normalize_tiles(shuffled)
        feats = encode_tiles(self.backbone, shuffled, self.tile_size)
        return self.head(feats.flatten(1))

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        shuffled, labels = self.puzzles(self.views(images, generator), generator)
        logits = self.classify(shuffled)
        loss = pretext_cross_entropy(logits, labels)
        return StepOutput(loss, {"pretext_accuracy": accuracy(logits, labels)})

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The tiles of the geometric view, shuffled by a permutation of the set."""
        shuffled, labels = self.puzzles(self.views(samples, generator), generator)
        return [InputView("shuffled tiles", to_uint8(compose_tiles(shuffled, self.grid)),
                          caption=f"one of {self.permutations.shape[0]} orders to name")]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        shuffled, labels = self.puzzles(eval_transform(images, self.resolution), generator)
        pred = self.classify(shuffled).argmax(dim=1)
        return Preview(
            "classification", originals=images,
            inputs=to_uint8(compose_tiles(shuffled, self.grid)),
            predicted=[f"perm {i}" for i in pred.tolist()],
            true=[f"perm {i}" for i in labels.tolist()],
            input_title="shuffled tiles", output_title="permutation",
        )
