"""Built-in datasets that need no download: procedural shapes and scikit-learn's digits.

``shapes`` is designed so that only the outline tells the classes apart: background and
fill colours, size, position and pose are drawn independently of the class, so a method
that learns colour statistics alone scores near chance on it.

Like photographs, the default ("upright") scenes have an up direction: each shape stands
near its canonical pose (triangle and star pointing up, square and cross level, within
±15°) and casts a shadow downwards, as under light from above. Pretext tasks such as
rotation prediction (Gidaris et al. 2018) rely on exactly this. With orientation "any"
the pose and the light direction are uniform, so no image has an up and the rotation of
an image cannot be told: a demonstration of what the rotation task needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from engine.data import cache
from engine.data.captions import (
    CAPTIONS_VERSION,
    SIZE_WORDS,
    SceneFacts,
    caption_scenes,
    colour_names,
)
from engine.data.dataset import ImageDataset

BUILTIN_DATASETS: dict[str, str] = {
    "shapes": "Generated shapes (circle, square, triangle, star, cross, ring) on random "
    "colours; classes differ only in shape.",
    "digits": "scikit-learn's 1797 handwritten digits (8×8 px, upscaled), 10 classes.",
    "pydocs": "Text: the docstrings of Python's own standard library (read from this "
    "interpreter's sources), 8 classes by package: asyncio, concurrency, email, importlib, "
    "logging, unittest, web, xml.",
}

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
SHAPE_ORIENTATIONS = ("upright", "any")

# Bump when generation changes, so cached copies of the old images are not served.
SHAPES_VERSION = 2

# Pose of each class that looks upright: the angle turning its drawn vertices so the
# triangle and the star point up (image y grows downwards); the others are level at 0.
_UPRIGHT_ANGLE = {"triangle": -math.pi / 2, "star": -math.pi / 2}
_UPRIGHT_JITTER = math.radians(15)  # below the star's 36° half-symmetry, so up stays up
# Turn that maps each non-round class onto itself (circle and ring have no pose).
_SYMMETRY = {"square": math.pi / 2, "cross": math.pi / 2, "triangle": 2 * math.pi / 3,
             "star": 2 * math.pi / 5}
_SHADOW_OFFSET = 0.25  # shadow shift as a fraction of the shape's radius
_SHADOW_DARKEN = 0.55  # background brightness kept under the shadow

_SIZE_RANGE = (0.35, 0.85)  # circumscribed-circle diameter as a fraction of the side
_MIN_COLOUR_DIST = 110.0  # RGB distance of the fill from every background colour
_COLOUR_TRIES = 64
_CHUNK_PIXELS = 2**20  # pixels composited at once: bounds float memory at high resolution

Progress = Callable[[int, int], None]


def make_shapes(
    count: int,
    resolution: int,
    seed: int = 0,
    progress: Progress | None = None,
    orientation: str = "upright",
) -> ImageDataset:
    """``count`` labelled shape images, identical for the same arguments.

    ``orientation`` "upright" gives every scene an up direction (shape pose and shadow);
    "any" draws both uniformly, so the scenes have none.
    """
    if count < 1:
        raise ValueError(f"shapes_count must be at least 1, got {count}")
    if orientation not in SHAPE_ORIENTATIONS:
        raise ValueError(
            f"shapes orientation must be one of {', '.join(SHAPE_ORIENTATIONS)}, "
            f"got {orientation!r}"
        )
    sc = shape_scenes(count, resolution, seed, orientation)
    n, r_px, labels = count, resolution, sc.labels
    radius, cx, cy, angle = sc.radius, sc.cx, sc.cy, sc.angle
    shadow_dx = _SHADOW_OFFSET * radius * np.cos(sc.light)
    shadow_dy = _SHADOW_OFFSET * radius * np.sin(sc.light)
    c0, c1, grad_angle, noise_std, fill = sc.c0, sc.c1, sc.grad_angle, sc.noise_std, sc.fill

    # Shape and shadow masks: drawn at ss× and box-reduced for antialiased edges.
    ss = 4 if r_px <= 64 else 2 if r_px <= 256 else 1
    masks = np.empty((n, r_px, r_px), dtype=np.uint8)
    shadows = np.empty((n, r_px, r_px), dtype=np.uint8)
    step = max(1, n // 20)
    for i in range(n):
        shape = SHAPE_CLASSES[labels[i]]
        masks[i] = _draw_mask(shape, r_px, ss, cx[i], cy[i], radius[i], angle[i])
        shadows[i] = _draw_mask(shape, r_px, ss, cx[i] + shadow_dx[i], cy[i] + shadow_dy[i],
                                radius[i], angle[i])
        if progress is not None and (i + 1) % step == 0:
            progress(i + 1, n)

    # Composite in cache-sized chunks with in-place numpy ops (memory-bound work):
    # background gradient, light noise on some, the shadow darkening the background, then
    # the fill through the antialiased mask.
    images = np.empty((n, 3, r_px, r_px), dtype=np.uint8)
    coords = (np.arange(r_px, dtype=np.float32) + 0.5) / r_px - 0.5
    noise_rng = np.random.default_rng(sc.noise_seed)
    chunk = max(1, _CHUNK_PIXELS // (r_px * r_px))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        ca = np.cos(grad_angle[s:e]).astype(np.float32)[:, None, None]
        sa = np.sin(grad_angle[s:e]).astype(np.float32)[:, None, None]
        t = ca * coords[None, None, :] + sa * coords[None, :, None]
        t += 0.5
        np.clip(t, 0, 1, out=t)
        a0 = c0[s:e, :, None, None].astype(np.float32)
        a1 = c1[s:e, :, None, None].astype(np.float32)
        bg = (a1 - a0) * t[:, None]
        bg += a0  # (b, 3, R, R)
        noisy = np.flatnonzero(noise_std[s:e] > 0)
        if noisy.size:
            noise = noise_rng.standard_normal((noisy.size, 1, r_px, r_px), dtype=np.float32)
            noise *= noise_std[s:e][noisy].astype(np.float32)[:, None, None, None]
            bg[noisy] += noise
        sh = shadows[s:e, None].astype(np.float32)
        sh *= (_SHADOW_DARKEN - 1.0) / 255.0
        sh += 1.0
        bg *= sh
        m = masks[s:e, None].astype(np.float32)
        m *= 1.0 / 255.0
        delta = fill[s:e, :, None, None].astype(np.float32) - bg
        delta *= m
        bg += delta
        bg += 0.5
        np.clip(bg, 0, 255, out=bg)
        images[s:e] = bg  # truncation after +0.5 rounds to nearest
    if progress is not None:
        progress(n, n)

    return ImageDataset(
        name="shapes",
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(SHAPE_CLASSES),
        files=[f"shapes/{SHAPE_CLASSES[c]}/{i:06d}" for i, c in enumerate(labels)],
        skipped=[],
        captions=caption_scenes(scene_facts(sc), seed),
    )


@dataclass(frozen=True, eq=False)
class ShapeScenes:
    """What each image of a shapes set is drawn with (arrays of length N; lengths and
    positions in pixels of the final image, colours sRGB 0-255, angles in radians)."""

    resolution: int
    orientation: str
    labels: np.ndarray  # class index into SHAPE_CLASSES
    radius: np.ndarray  # of the shape's circumscribed circle
    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray  # the shape's turn (shape_poses)
    light: np.ndarray  # the direction its shadow falls
    c0: np.ndarray  # (N, 3) the background's first colour
    c1: np.ndarray  # (N, 3) its second (c0 where the background is plain)
    gradient: np.ndarray  # bool: a gradient from c0 to c1
    grad_angle: np.ndarray
    noise_std: np.ndarray  # 0 where there is no noise texture
    fill: np.ndarray  # (N, 3)
    noise_seed: int  # seeds the noise texture's own generator


def shape_scenes(count: int, resolution: int, seed: int = 0,
                 orientation: str = "upright") -> ShapeScenes:
    """The parameters :func:`make_shapes` draws its images with, without drawing them:
    cheap, so a cached set's captions are made again from them rather than stored."""
    rng = np.random.default_rng(seed)
    n, r_px = count, resolution
    k = len(SHAPE_CLASSES)
    per_class = [n // k + (1 if c < n % k else 0) for c in range(k)]
    labels = rng.permutation(np.repeat(np.arange(k), per_class))

    # Geometry (in pixels of the final image).
    radius = rng.uniform(*_SIZE_RANGE, n) * r_px / 2
    cx = rng.uniform(radius, r_px - radius)
    cy = rng.uniform(radius, r_px - radius)
    angle, light = shape_poses(rng, labels, orientation)

    # Background: a solid colour or a linear gradient towards a related colour,
    # sometimes with a light per-pixel noise texture.
    c0 = rng.uniform(0, 255, (n, 3))
    gradient = rng.random(n) < 0.5
    c1 = np.where(gradient[:, None], np.clip(c0 + rng.normal(0, 70, (n, 3)), 0, 255), c0)
    grad_angle = rng.uniform(0.0, 2 * math.pi, n)
    noise_std = np.where(rng.random(n) < 0.35, rng.uniform(3.0, 12.0, n), 0.0)
    fill = _contrasting_fill(rng, c0, c1)
    noise_seed = int(rng.integers(2**63))
    return ShapeScenes(resolution=r_px, orientation=orientation, labels=labels,
                       radius=radius, cx=cx, cy=cy, angle=angle, light=light, c0=c0, c1=c1,
                       gradient=gradient, grad_angle=grad_angle, noise_std=noise_std,
                       fill=fill, noise_seed=noise_seed)


def scene_facts(sc: ShapeScenes) -> list[SceneFacts]:
    """Each scene in a caption's words: size by terciles of the diameter's range,
    position by thirds of the image, the pose only where the set's orientation is "any"
    and the shape is not round."""
    r = sc.resolution
    lo, hi = _SIZE_RANGE
    frac = (2 * sc.radius / r - lo) / (hi - lo)  # 0..1 across the size range
    size = np.clip((frac * 3).astype(np.int64), 0, 2)
    col = np.clip((sc.cx / r * 3).astype(np.int64), 0, 2)
    row = np.clip((sc.cy / r * 3).astype(np.int64), 0, 2)
    fills, backs = colour_names(sc.fill), colour_names(sc.c0)
    turned = shape_turned(sc.labels, sc.angle) if sc.orientation == "any" else None
    out = []
    for i, c in enumerate(sc.labels.tolist()):
        t = None if turned is None or turned[i] is None else bool(turned[i])
        out.append(SceneFacts(shape=SHAPE_CLASSES[c], fill=fills[i],
                              size=SIZE_WORDS[int(size[i])],
                              position=(int(col[i]), int(row[i])), background=backs[i],
                              gradient=bool(sc.gradient[i]), noisy=bool(sc.noise_std[i] > 0),
                              turned=t))
    return out


def shape_turned(labels: np.ndarray, angle: np.ndarray) -> list[bool | None]:
    """Per image: whether the shape is turned away from its upright pose by more than
    the upright jitter, modulo its symmetry; None for round shapes (no pose to see)."""
    out: list[bool | None] = []
    for c, a in zip(labels.tolist(), angle.tolist(), strict=True):
        shape = SHAPE_CLASSES[c]
        period = _SYMMETRY.get(shape)
        if period is None:
            out.append(None)
            continue
        d = (a - _UPRIGHT_ANGLE.get(shape, 0.0) + period / 2) % period - period / 2
        out.append(abs(d) > _UPRIGHT_JITTER)
    return out


def shapes_captions(count: int, resolution: int, seed: int = 0,
                    orientation: str = "upright") -> list[str]:
    """The captions :func:`make_shapes` gives these arguments (for a cached set)."""
    return caption_scenes(scene_facts(shape_scenes(count, resolution, seed, orientation)),
                          seed)


def load_shapes(
    count: int,
    resolution: int,
    seed: int,
    orientation: str,
    cache_dir: str | Path | None,
    use_cache: bool,
    progress: Progress | None,
) -> ImageDataset:
    """The shapes set through the disk cache (``use_cache``): generated once, then the
    memory-mapped entry, its captions stored beside the images."""
    if not use_cache:
        return make_shapes(count, resolution, seed, progress, orientation)
    entry = cache.entry_path(
        cache_dir if cache_dir is not None else cache.default_cache_dir(),
        stem="shapes",
        group=("shapes", count, seed, resolution, orientation, SHAPES_VERSION),
        detail="0" * 16,
    )
    hit = cache.read(entry, "shapes", resolution, CAPTIONS_VERSION)
    if hit is None:
        try:
            with cache.locked(entry, progress, count):
                # made while this one waited
                hit = cache.read(entry, "shapes", resolution, CAPTIONS_VERSION)
                if hit is None:
                    ds = make_shapes(count, resolution, seed, progress, orientation)
                    if cache.write(entry, ds, CAPTIONS_VERSION):
                        # serve the mapped copy, as every other process will: its pages
                        # are shared, the generated array is freed
                        mapped = cache.read(entry, "shapes", resolution, CAPTIONS_VERSION)
                        if mapped is not None:
                            return replace(mapped, from_cache=False)
                    return ds
        except cache.CacheUnavailable:
            return make_shapes(count, resolution, seed, progress, orientation)
    if hit.captions is None:
        # an entry from before captions (or their generator changed): the images stand,
        # the captions are made again from the drawn parameters and stored beside them
        captions = shapes_captions(count, resolution, seed, orientation)
        cache.write_captions(entry, captions, CAPTIONS_VERSION)
        hit = replace(hit, captions=captions)
    if progress is not None:
        progress(len(hit), len(hit))
    return hit


def shape_poses(
    rng: np.random.Generator, labels: np.ndarray, orientation: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the angle the shape is turned by, and the direction its shadow falls.

    Both in radians in image coordinates (y down, so pi/2 points down). Upright: near the
    class's upright pose, shadow below; any: both uniform.
    """
    n = len(labels)
    if orientation == "upright":
        canonical = np.array([_UPRIGHT_ANGLE.get(c, 0.0) for c in SHAPE_CLASSES])
        angle = canonical[labels] + rng.uniform(-_UPRIGHT_JITTER, _UPRIGHT_JITTER, n)
        light = math.pi / 2 + rng.uniform(-_UPRIGHT_JITTER, _UPRIGHT_JITTER, n)
    else:
        angle = rng.uniform(0.0, 2 * math.pi, n)
        light = rng.uniform(0.0, 2 * math.pi, n)
    return angle, light


def _contrasting_fill(rng: np.random.Generator, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """A fill colour per image far from every colour on the background's c0→c1 segment."""
    n = c0.shape[0]
    cand = rng.uniform(0, 255, (n, _COLOUR_TRIES, 3))
    seg = (c1 - c0)[:, None, :]
    rel = cand - c0[:, None, :]
    denom = np.maximum((seg * seg).sum(-1), 1e-9)
    u = np.clip((rel * seg).sum(-1) / denom, 0, 1)
    dist = np.linalg.norm(rel - u[..., None] * seg, axis=-1)  # (n, tries)
    ok = dist >= _MIN_COLOUR_DIST
    # First acceptable candidate; if none is, the most distant one.
    pick = np.where(ok.any(1), ok.argmax(1), dist.argmax(1))
    return cand[np.arange(n), pick]


def _draw_mask(
    shape: str, res: int, ss: int, cx: float, cy: float, r: float, angle: float
) -> np.ndarray:
    size = res * ss
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    x, y, rr = cx * ss, cy * ss, r * ss
    if shape in ("circle", "ring"):
        d.ellipse((x - rr, y - rr, x + rr, y + rr), fill=255)
        if shape == "ring":
            ri = rr * 0.55
            d.ellipse((x - ri, y - ri, x + ri, y + ri), fill=0)
    else:
        d.polygon(_polygon(shape, x, y, rr, angle), fill=255)
    if ss > 1:
        im = im.reduce(ss)
    return np.asarray(im)


def _polygon(shape: str, x: float, y: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of the shape inscribed in the circle of radius ``r`` around (x, y)."""
    if shape == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3]
    elif shape == "star":
        pts = []
        for j in range(10):
            a = j * math.pi / 5
            rad = 1.0 if j % 2 == 0 else 0.45
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "cross":
        w = 0.33
        h = math.sqrt(1 - w * w)
        quarter = [(w, h), (w, w), (h, w)]
        pts = []
        for q in range(4):  # the quarter outline, turned -90° each time to go round
            c, s = math.cos(-q * math.pi / 2), math.sin(-q * math.pi / 2)
            pts += [(px * c - py * s, px * s + py * c) for px, py in quarter]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(x + r * (px * ca - py * sa), y + r * (px * sa + py * ca)) for px, py in pts]


def load_digits(resolution: int) -> ImageDataset:
    """scikit-learn's bundled 8×8 digits, white on black, upscaled to ``resolution``."""
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    x = torch.from_numpy(np.asarray(d.images, dtype=np.float32) * (255.0 / 16.0))[:, None]
    x = torch.nn.functional.interpolate(
        x,
        size=(resolution, resolution),
        mode="bicubic",
        align_corners=False,
        antialias=resolution < 8,
    )
    x = x.clamp(0, 255).add(0.5).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return ImageDataset(
        name="digits",
        images=x,
        labels=y,
        class_names=[str(i) for i in range(10)],
        files=[f"digits/{int(c)}/{i:06d}" for i, c in enumerate(y)],
        skipped=[],
    )
