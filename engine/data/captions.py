"""Captions for the built-in shapes: a sentence per image from what it was drawn with.

The shapes set becomes a captioned set with no download (issue 14: CLIP on captioned
images). A caption names the shape class and the fill colour always, and, as optional
clauses, the size, the position, the background and (for orientation "any") the pose,
in one of several phrasings. The phrasing is drawn from a generator of its own, seeded
from the dataset seed, so captions are deterministic by seed and drawing them changes
no draw of the images.

Every template puts the fill colour's name right before the shape's, so
:func:`parse_caption` can read both back (the tests compare them with what was drawn).
Colours are named by the nearest of :data:`COLOUR_NAMES` in CIELAB, where distance
follows perceived difference far better than in RGB.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the eleven basic colour terms (Berlin & Kay), each with typical sRGB values: a
#: colour takes the name of its nearest value (several per name cover dark and light
#: shades, e.g. navy and sky blue are both "blue")
COLOUR_NAMES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((210, 35, 40), (150, 20, 30)),
    "orange": ((245, 140, 30), (220, 110, 40)),
    "yellow": ((240, 220, 50), (240, 230, 140)),
    "green": ((60, 160, 60), (25, 90, 35), (140, 210, 80), (110, 125, 35)),
    "blue": ((40, 90, 210), (10, 20, 130), (110, 180, 235), (40, 195, 215), (30, 115, 135)),
    "purple": ((125, 55, 165), (75, 25, 115), (180, 110, 215)),
    "pink": ((245, 150, 190), (225, 60, 160), (250, 200, 215)),
    "brown": ((125, 80, 45), (75, 45, 25), (190, 145, 100)),
    "black": ((25, 25, 25),),
    "white": ((242, 242, 242),),
    "grey": ((128, 128, 128), (80, 80, 80), (185, 185, 185)),
}
SIZE_WORDS = ("small", "medium", "large")
#: (column, row) thirds of the image -> how a caption says where the shape is
POSITIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 0): ("in the top left", "in the top left corner", "near the top left"),
    (1, 0): ("at the top", "near the top", "in the upper middle"),
    (2, 0): ("in the top right", "in the top right corner", "near the top right"),
    (0, 1): ("on the left", "at the left", "on the left side"),
    (1, 1): ("in the centre", "in the middle", "at the centre"),
    (2, 1): ("on the right", "at the right", "on the right side"),
    (0, 2): ("in the bottom left", "in the bottom left corner", "near the bottom left"),
    (1, 2): ("at the bottom", "near the bottom", "in the lower middle"),
    (2, 2): ("in the bottom right", "in the bottom right corner", "near the bottom right"),
}
CAPTION_SEED = 0xCA9  # mixed with the dataset seed: the captions' own stream
#: bump when the captions of a scene change (cached sets then make theirs again; their
#: images stay, SHAPES_VERSION is the images')
CAPTIONS_VERSION = 1

_SIZE_SYNONYMS = {"small": ("small", "little", "small"), "medium": ("medium-sized", "mid-sized"),
                  "large": ("large", "big", "large")}
_TURNED = ("turned", "tilted", "rotated")
_UPRIGHT = ("upright", "straight")
# Lightness counts less than hue and chroma in naming (a dark and a light blue are both
# blue), as in CMC l:c = 2:1.
_L_WEIGHT = 0.5
# Probabilities of each optional clause: most captions carry some, few carry all.
_P_SIZE, _P_POSITION, _P_BACKGROUND, _P_POSE = 0.6, 0.6, 0.6, 0.7


@dataclass(frozen=True)
class SceneFacts:
    """What one image shows, in the words a caption uses (made by
    :func:`engine.data.builtin.scene_facts`)."""

    shape: str  # a class of engine.data.builtin.SHAPE_CLASSES
    fill: str  # a colour name of COLOUR_NAMES
    size: str  # a word of SIZE_WORDS
    position: tuple[int, int]  # (column, row), each 0, 1 or 2
    background: str  # the colour name of the background's first colour
    gradient: bool
    noisy: bool
    turned: bool | None  # None: the pose is not told (upright sets, round shapes)


# --------------------------------------------------------------------------- colour


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in 0-255, any leading shape."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


_PALETTE = [k for k, vs in COLOUR_NAMES.items() for _ in vs]
_PALETTE_LAB = _srgb_to_lab(np.array([v for vs in COLOUR_NAMES.values() for v in vs]))
_LAB_WEIGHT = np.array([_L_WEIGHT, 1.0, 1.0])


def colour_names(rgb: np.ndarray) -> list[str]:
    """The nearest basic colour name of each sRGB colour (0-255) of ``(n, 3)``."""
    lab = _srgb_to_lab(np.asarray(rgb).reshape(-1, 3))
    d = (((lab[:, None, :] - _PALETTE_LAB[None]) * _LAB_WEIGHT) ** 2).sum(-1)
    return [_PALETTE[i] for i in d.argmin(1)]


def colour_name(rgb: Sequence[float]) -> str:
    """The nearest basic colour name of one sRGB colour (0-255)."""
    return colour_names(np.asarray(rgb, dtype=np.float64)[None])[0]


# --------------------------------------------------------------------------- phrasing


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _background(f: SceneFacts, u: float) -> str:
    """The background as a phrase without its preposition, e.g. 'a noisy blue gradient'."""
    options: tuple[str, ...]
    if f.gradient:
        options = (f"{f.background} gradient", f"gradient background fading from {f.background}")
    elif f.noisy:
        options = (f"{f.background} background",)
    else:
        options = (f"plain {f.background} background", f"{f.background} background")
    body = ("noisy " if f.noisy else "") + _pick(options, u)
    return f"{_article(body)} {body}"


#: uniform draws one caption takes (drawn up front: one vectorised call per dataset)
DRAWS = 11


def caption(f: SceneFacts, u: Sequence[float]) -> str:
    """One caption of ``f``: a template and its optional clauses chosen by the
    :data:`DRAWS` uniforms ``u``."""
    adjectives = []
    if u[0] < _P_SIZE:
        adjectives.append(_pick(_SIZE_SYNONYMS[f.size], u[1]))
    pose = ""
    if f.turned is not None and u[2] < _P_POSE:
        word = _pick(_TURNED if f.turned else _UPRIGHT, u[3])
        if u[4] < 0.5:
            adjectives.append(word)
        else:
            pose = f", {word}" if f.turned else f", standing {word}"
    words = [*adjectives, f.fill, f.shape]
    np_ = f"{_article(words[0])} {' '.join(words)}"  # the colour right before the shape
    pos = f" {_pick(POSITIONS[f.position], u[6])}" if u[5] < _P_POSITION else ""
    bg = _background(f, u[8]) if u[7] < _P_BACKGROUND else ""
    template = min(int(u[9] * _TEMPLATES), _TEMPLATES - 1)
    if template == 0:
        text = f"{np_}{pos}{' on ' + bg if bg else ''}{pose}"
    elif template == 1:
        text = f"a picture of {np_}{pos}{' against ' + bg if bg else ''}{pose}"
    elif template == 2 and bg:
        text = f"on {bg}, {np_}{pos}{pose}"
    elif template == 3:
        text = f"there is {np_}{pos}{' on ' + bg if bg else ''}{pose}"
    elif template == 4:
        text = f"a photo of {np_}{pos}{pose}"
    elif template == 5 and bg:
        text = f"{bg} with {np_}{pos}{pose}"
    else:
        text = f"{np_}{pos}{pose}"
    if u[10] < 0.5 and template != 6:
        text = text[0].upper() + text[1:] + "."
    return text


_TEMPLATES = 7


def caption_scenes(facts: Sequence[SceneFacts], seed: int) -> list[str]:
    """A caption per scene, deterministic by ``seed`` (a stream apart from the images')."""
    rng = np.random.default_rng([CAPTION_SEED, seed])
    draws = rng.random((len(facts), DRAWS)).tolist()
    return [caption(f, u) for f, u in zip(facts, draws, strict=True)]


_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def parse_caption(text: str, shapes: Sequence[str]) -> tuple[str, str] | None:
    """(shape, fill colour) a caption names: the first word of ``shapes`` and the colour
    word right before it; None if it names no shape or no colour there."""
    words = _WORD.findall(text.lower())
    for i, w in enumerate(words):
        if w in shapes:
            if i > 0 and words[i - 1] in COLOUR_NAMES:
                return w, words[i - 1]
            return None
    return None
