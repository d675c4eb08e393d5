"""Relative patch location: predict where a patch lies relative to a reference patch.

Doersch, Gupta, Efros. "Unsupervised Visual Representation Learning by Context
Prediction", ICCV 2015.

A 3x3 grid of cells is laid over the image; the patch of the centre cell is the reference
and one of its eight neighbours, chosen at random, the query. Both go through the same
encoder (the shared backbone: the paper's late-fusion siamese network), their features are
concatenated and an MLP classifies the position of the query (top-left, top, ...,
bottom-right). To say that a patch showing the tip of a star lies above the one showing
its centre, the encoder has to recognise object parts, which is the representation the
method is after.

Details of this implementation, at the workbench's 32 px:

* Geometry as in the paper (Sec. 3): patches smaller than their cells, so that a gap
  separates them (the paper: 96-px patches, a 48-px gap, a third of the 144-px cell pitch;
  ``gap`` is that fraction of the cell), each jittered by a random offset inside its cell
  (the paper: up to 7 px), so that lines and textures continuing across the border are no
  shortcut. On 32 px images the cells are 10 px and the patches 7 px.
* Patches are resized (bilinear) to ``tile_size`` pixels before the encoder, for the
  same reason as in :mod:`engine.methods.jigsaw`: at their own 7 px the backbone's last
  stage would see a single padding-dominated pixel. Two 16-px patches cost about half a
  full image; the CPU preset still keeps batch 128, for more steps in a short run (see
  the preset); the GPU preset feeds 32-px patches.
* The paper's colour projection / colour dropping counters chromatic aberration of real
  lenses, which synthetic images do not have; ``normalize_tiles`` (per-patch mean and
  std, as in the jigsaw paper) is available against brightness shortcuts, off by default.
* Views are random crops and flips only: the task is geometric. A flip mirrors the image
  before the patches are cut, so labels stay correct.
* ``embed`` is the backbone on the whole image, as for every other method; the preview
  shows the reference (left) and the query (right) side by side.

On several processes nothing is gathered: the loss and ``pretext_accuracy`` are means over
patch pairs, every process has as many, so their mean over processes is the whole batch's.
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
    NEIGHBOUR_NAMES,
    accuracy,
    compose_tiles,
    encode_tiles,
    extract_tiles,
    neighbour_tile,
    normalize_tiles,
    random_labels,
    side_by_side,
    tile_corners,
    tile_grid,
)
from engine.registry import register_method


@dataclass
class RelativePatchConfig(MethodConfig):
    gap: float = param(
        0.3,
        "Part of each cell's side not covered by its patch: the gap between patches and "
        "the room for jitter (the paper: 96-px patches at a 144-px pitch, 0.33).",
        min=0.0,
        max=0.7,
    )
    jitter: bool = param(
        True,
        "Place each patch at a random position inside its cell (the paper jitters by up to "
        "7 px); off centres it.",
    )
    all_neighbours: bool = param(
        True,
        "Pair the reference with all eight of its neighbours in every step (nine patch "
        "encodings give eight examples per image); off samples one neighbour per image, "
        "as in the paper.",
    )
    tile_size: int = param(
        16,
        "Side in pixels the patches are resized to before the shared encoder (0 keeps them "
        "at their own size, 7 px on 32 px images).",
        min=0,
        max=512,
    )
    normalize_tiles: bool = param(
        False,
        "Normalise each patch's mean and std on its own (as the jigsaw paper does), so that "
        "brightness differences are no shortcut.",
    )
    head_hidden_dim: int = param(
        512,
        "Hidden width of the MLP on the two concatenated patch features (4096 in the "
        "paper's fc7).",
        min=16,
        max=16384,
    )


    def validate(self, cfg: Config) -> None:
        """The 3x3 grid with its gap must fit the resolution."""
        try:
            tile_grid(cfg.data.resolution, 3, self.gap)
        except ValueError as e:
            raise ConfigError(f"method.gap = {self.gap:g}: {e}") from None


@register_method(
    "relative_patch",
    config=RelativePatchConfig,
    family="pretext",
    description="Show the centre patch and one of its 8 neighbours; predict where the "
    "neighbour lies (8-way classification).",
    paper="Doersch et al. 2015, Unsupervised Visual Representation Learning by Context "
    "Prediction",
    # two 16-px patches per image are a quarter of a two-view method's work per image
    # batch 128, not 256: twice the steps in a CPU budget. 120 s on shapes, 3 seeds
    # (bench/learning.py, 2026-12-01): kNN gain +14.9 ± 0.3 points at 256 (267 steps),
    # +20.7 ± 3.9 at 128 (588 steps).
    preset={"optim.batch_size": 128, "augment.crop_min_scale": 0.6},
    gpu_preset={"optim.batch_size": 256, "optim.max_steps": 3000, "method.tile_size": 32},
)
class RelativePatch(SSLMethod):
    pretext_chance = 0.125

    def __init__(self, cfg: Config, backbone: torch.nn.Module, feature_dim: int) -> None:
        super().__init__(cfg, backbone, feature_dim)
        m: RelativePatchConfig = cfg.method  # type: ignore[assignment]
        self.resolution = cfg.data.resolution
        m.validate(cfg)
        self.grid = tile_grid(self.resolution, 3, m.gap)
        self.jitter = m.jitter
        self.all_neighbours = m.all_neighbours
        self.tile_size = m.tile_size
        self.normalize = m.normalize_tiles
        self.head = mlp_head(2 * feature_dim, m.head_hidden_dim, 8)
        self.views = ViewAugment(geometric_only(cfg.augment), self.resolution)

    def pairs(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, C, t, t)`` reference and query patches of normalised images, and the
        query's position label (index into :data:`engine.pretext.NEIGHBOUR_NAMES`)."""
        b = x.shape[0]
        corners = tile_corners(b, self.grid, self.jitter, generator, x.device)  # (B, 9, 2)
        labels = random_labels(b, 8, generator, x.device)
        centre = torch.full_like(labels, self.grid.n_tiles // 2)
        which = torch.stack([centre, neighbour_tile(labels)], dim=1)  # (B, 2)
        chosen = torch.gather(corners, 1, which[..., None].expand(b, 2, 2))
        return extract_tiles(x, chosen, self.grid.tile), labels

    def encode(self, tiles: torch.Tensor) -> torch.Tensor:
        """Features ``(B, T, D)`` of patches ``(B, T, C, t, t)``."""
        if self.normalize:
            tiles = normalize_tiles(tiles)
        return encode_tiles(self.backbone, tiles, self.tile_size)

    def classify(self, pairs: torch.Tensor) -> torch.Tensor:
        """Position logits ``(B, 8)`` of reference / query pairs ``(B, 2, C, t, t)``."""
        return self.head(self.encode(pairs).flatten(1))

    def all_pairs(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(8B, 8)`` of every image's reference paired with each of its eight
        neighbours (label-major: rows ``k*B .. k*B + B - 1`` hold label ``k``), and labels."""
        b = x.shape[0]
        corners = tile_corners(b, self.grid, self.jitter, generator, x.device)
        feats = self.encode(extract_tiles(x, corners, self.grid.tile))  # (B, 9, D)
        labels = torch.arange(8, device=x.device)
        neighbours = feats[:, neighbour_tile(labels)].transpose(0, 1)  # (8, B, D)
        centre = feats[:, self.grid.n_tiles // 2].expand(8, -1, -1)
        logits = self.head(torch.cat([centre, neighbours], dim=2).flatten(0, 1))
        return logits, labels.repeat_interleave(b)

    def training_step(
        self, images: torch.Tensor, augment: ViewAugment, generator: torch.Generator
    ) -> StepOutput:
        x = self.views(images, generator)
        if self.all_neighbours:
            logits, labels = self.all_pairs(x, generator)
        else:
            pairs, labels = self.pairs(x, generator)
            logits = self.classify(pairs)
        loss = pretext_cross_entropy(logits, labels)
        return StepOutput(loss, {"pretext_accuracy": accuracy(logits, labels)})

    def training_inputs(self, samples: torch.Tensor, generator: torch.Generator
                        ) -> list[InputView]:
        """The centre patch and the query patch the step pairs (with all neighbours:
        the nine patches, the centre against each of the eight around it)."""
        x = self.views(samples, generator)
        if self.all_neighbours:
            corners = tile_corners(x.shape[0], self.grid, self.jitter, generator, x.device)
            tiles = extract_tiles(x, corners, self.grid.tile)
            return [InputView("3x3 patches", to_uint8(compose_tiles(tiles, self.grid)),
                              caption="the centre against each of its 8 neighbours")]
        pairs, labels = self.pairs(x, generator)
        shown = side_by_side(pairs[:, 0], pairs[:, 1], sep=max(1, self.grid.tile // 4))
        names = ", ".join(NEIGHBOUR_NAMES[i] for i in labels.tolist())
        return [InputView("reference | query", to_uint8(shown),
                          caption=f"where is the query? ({names})")]

    def preview(self, images: torch.Tensor, generator: torch.Generator) -> Preview:
        pairs, labels = self.pairs(eval_transform(images, self.resolution), generator)
        pred = self.classify(pairs).argmax(dim=1)
        shown = side_by_side(pairs[:, 0], pairs[:, 1], sep=max(1, self.grid.tile // 4))
        return Preview(
            "classification", originals=images, inputs=to_uint8(shown),
            predicted=[NEIGHBOUR_NAMES[i] for i in pred.tolist()],
            true=[NEIGHBOUR_NAMES[i] for i in labels.tolist()],
            input_title="reference | query", output_title="position",
        )
