"""Defaults for a user's image folder: resolution, crop scale and batch size from its size.

The presets are written for the built-in 32 px sets. A folder of 400 photos of 500 px
differs on every count that decides those three settings, so a new user who only picks
the folder would train at the wrong size (a photo squeezed to 32 px) or with a batch close
to the whole set. The rules are deliberately few and stated with the reason each holds on
data in general, so the dataset summary can say what was chosen and why, and the user can
override any of them:

- **Resolution**: the median short side of the images, never upsampled (enlarging adds no
  information and costs 4x per doubling), rounded down to a multiple of 16 (ViT patches of
  4, 8 and 16 px divide it), at least 32 px and at most 64 px on CPU (a step at 64 px costs
  about 4x one at 32 px) or 128 px with an accelerator.
- **Crop scale**: the smallest area a random resized crop keeps (a method whose preset
  has a crop scale of its own, such as relative patch's 0.6, keeps it). At 32 px a crop of 8 % of
  the image is 9 px across and holds little of an object, so the 32 px presets keep 0.4;
  from 64 px on, MoCo v2's and SimSiam's ImageNet value of 0.2 (Chen et al. 2020; Chen & He
  2021) leaves crops of at least 28 px; in between 0.3.
- **Batch size**: at most the preset's, and at most a tenth of the folder (a power of two,
  at least 16), so that an epoch has ten or more steps and a batch is never most of the
  set (a contrastive batch then holds near-duplicates of every image as negatives).

Torch-free: only image headers are read (PIL opens a file without decoding it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import AugmentConfig

#: images whose headers are read to find the typical size (evenly spaced over the folder)
SIZE_SAMPLE = 256
MIN_RESOLUTION = 32
MAX_RESOLUTION_CPU = 64
MAX_RESOLUTION_ACCELERATOR = 128
MIN_BATCH = 16
STEPS_PER_EPOCH = 10
#: the settings a folder may set, with their names in the summary line
KEYS = {"data.resolution": ("resolution", " px"), "augment.crop_min_scale":
        ("crop scale ≥", ""), "optim.batch_size": ("batch", "")}


@dataclass(frozen=True)
class FolderStats:
    """What the defaults are computed from."""

    images: int  # image files in the folder
    median_side: int | None  # median of the images' shorter sides in pixels (None: unread)


@dataclass(frozen=True)
class Suggestion:
    """One setting chosen for the folder, with the reason shown to the user."""

    key: str
    value: Any
    why: str


def folder_stats(root: str | Path, sample: int = SIZE_SAMPLE) -> FolderStats:
    """Count a folder's images and read the sizes of up to ``sample`` of them."""
    from PIL import Image

    from engine.data.folders import scan

    root = Path(root).expanduser()
    rels = [c.rel for c in scan(root)]
    n = len(rels)
    picked = rels if n <= sample else [rels[i * n // sample] for i in range(sample)]
    sides = []
    for rel in picked:
        try:
            with Image.open(root / rel) as im:
                sides.append(min(im.size))
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the loader
            continue
    sides.sort()
    return FolderStats(n, sides[len(sides) // 2] if sides else None)


def suggest(stats: FolderStats, preset: Any, accelerator: bool = False) -> list[Suggestion]:
    """The settings for a folder with ``stats``, given the method's preset config
    (``preset.get(key)``); only those that differ from the preset are returned."""
    out: list[Suggestion] = []
    resolution = int(preset.get("data.resolution"))
    if stats.median_side is not None:
        cap = MAX_RESOLUTION_ACCELERATOR if accelerator else MAX_RESOLUTION_CPU
        native = stats.median_side
        res = max(MIN_RESOLUTION, min(cap, native // 16 * 16))
        if res != resolution:
            if native < res:
                why = f"the images are about {native} px; {MIN_RESOLUTION} px is the smallest"
            elif res == cap and native > cap:
                device = "an accelerator" if accelerator else "the CPU"
                why = f"the images are about {native} px; {cap} px is the most for {device}"
            else:
                why = f"the images are about {native} px and are not enlarged"
            out.append(Suggestion("data.resolution", res, why))
            resolution = res
    scale = 0.4 if resolution <= 32 else 0.3 if resolution < 64 else 0.2
    # a method with a crop scale of its own (a pretext task that needs most of the image)
    # keeps it; the rule replaces only the general 32 px default
    own_scale = float(preset.get("augment.crop_min_scale")) != AugmentConfig().crop_min_scale
    if resolution > 32 and not own_scale and scale < float(preset.get("augment.crop_min_scale")):
        out.append(Suggestion("augment.crop_min_scale", scale,
                              f"at {resolution} px a crop of {scale:g} of the image is "
                              f"{int(resolution * scale ** 0.5)} px across"))
    batch = int(preset.get("optim.batch_size"))
    if stats.images:
        cap_batch = MIN_BATCH
        while cap_batch * 2 <= stats.images // STEPS_PER_EPOCH:
            cap_batch *= 2
        if cap_batch < batch:
            out.append(Suggestion("optim.batch_size", cap_batch,
                                  f"{stats.images} images: {STEPS_PER_EPOCH}+ steps an "
                                  "epoch"))
    return out


def describe(suggestions: list[Suggestion]) -> str:
    """One line for the dataset summary, e.g. 'Set for this folder: resolution 64 px (the
    images are about 500 px; ...), batch 32 (...)'."""
    if not suggestions:
        return ""
    parts = []
    for s in suggestions:
        name, unit = KEYS.get(s.key, (s.key, ""))
        parts.append(f"{name} {s.value:g}{unit} ({s.why})")
    return "Set for this folder: " + "; ".join(parts) + ". The form can change them."


def is_image_folder(source: str) -> bool:
    """Whether ``source`` is a folder path (not a built-in set) that loads as images."""
    from engine.data import BUILTIN_MODALITY, dataset_modality

    name = source.strip()
    if not name or name in BUILTIN_MODALITY:
        return False
    try:
        return Path(name).expanduser().is_dir() and dataset_modality(name) == "image"
    except OSError:
        return False


def apply(cfg: Any, suggestions: list[Suggestion],
          keep: frozenset[str] = frozenset()) -> list[Suggestion]:
    """Set ``suggestions`` on ``cfg`` except the keys in ``keep`` (set by the user), each
    only if the config stays valid (a method's own rule, such as a patch size that must
    divide the resolution, wins); returns the ones applied."""
    from engine.errors import ConfigError

    applied = []
    for s in suggestions:
        if s.key in keep:
            continue
        old = cfg.get(s.key)
        cfg.set(s.key, s.value)
        try:
            cfg.validate()
        except ConfigError:
            cfg.set(s.key, old)
            continue
        applied.append(s)
    return applied
