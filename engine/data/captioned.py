"""Captioned image folders: each image with a sentence, for image-text methods (CLIP).

A caption comes from either of the two common conventions of captioned image folders:

- a caption file of the same stem beside the image: ``cat/cat_01.jpg`` +
  ``cat/cat_01.txt`` (its whole text, white space collapsed to single spaces);
- a :data:`CAPTIONS_CSV` at the folder root, rows ``file,caption`` (header optional;
  ``file`` relative to the root with ``/``; unquoted commas after the first belong to the
  caption). Where both give a caption, the file beside the image wins (noted).

Nothing here is fatal but a folder without a single usable pair: images without a
caption, captions without an image (orphans), empty captions and caption files that are
not text are reported in ``skipped`` as (file, reason); a caption read with a caveat (not
UTF-8, truncated) is kept and noted. Images decode exactly as for image methods
(:func:`engine.data.folders.load_folder`, the same cache entry), labels follow its
subfolder rule; captions are read fresh at every load (they are small, and editing one
must not need the images decoded again).

Reading captions is only ever asked for by paired data: an image folder that merely
holds ``.txt`` files loads for image methods exactly as before.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.data import folders
from engine.data.dataset import ImageDataset
from engine.data.folders import IMAGE_EXTENSIONS, label_of, labels_from_keys
from engine.data.text_folders import read_text_file
from engine.errors import DatasetError

CAPTION_EXTENSION = ".txt"
CAPTIONS_CSV = "captions.csv"
MAX_CAPTION_BYTES = 64 * 1024  # a caption file is read up to this size (the rest noted)
WHAT_IS_LOOKED_FOR = (f"a caption file of the same name beside each image (cat_01.jpg + "
                      f"cat_01{CAPTION_EXTENSION}) or a {CAPTIONS_CSV} (file,caption) at the "
                      "folder root")

Progress = Callable[[int, int], None]


@dataclass
class CaptionScan:
    """The captions found for a folder's images, and what could not be used."""

    captions: dict[str, str] = field(default_factory=dict)  # image rel path -> caption
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # kept with a caveat
    caption_files: int = 0  # .txt files seen
    has_csv: bool = False


def normalise_caption(text: str) -> str:
    """A caption's text on one line: every run of white space one space."""
    return " ".join(text.split())


def _stem(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    head = rel[: len(rel) - len(name)]
    return head + (name.rsplit(".", 1)[0] if "." in name else name)


def _csv_path(root: Path) -> Path | None:
    """The root's captions.csv, in any letter case, or None."""
    try:
        for e in os.scandir(root):
            if e.name.lower() == CAPTIONS_CSV and e.is_file():
                return Path(e.path)
    except OSError:
        return None
    return None


def read_captions(root: Path, images: list[str]) -> CaptionScan:
    """Pair the images (paths relative to ``root``) with their captions."""
    out = CaptionScan()
    by_stem: dict[str, list[str]] = {}
    for rel in images:
        by_stem.setdefault(_stem(rel), []).append(rel)
    sidecar_of: dict[str, str] = {}  # image -> the caption file that gave its caption
    failed_sidecar: dict[str, str] = {}  # image -> why its caption file gave none

    for cand in folders.scan(root, (CAPTION_EXTENSION,)):
        out.caption_files += 1
        path = str(root / cand.rel)
        owners = by_stem.get(_stem(cand.rel))
        if not owners:
            out.skipped.append((path, "caption without an image: no image named "
                                f"{_stem(cand.rel).rsplit('/', 1)[-1]}.* beside it"))
            continue
        text, notes = read_text_file(root / cand.rel, MAX_CAPTION_BYTES)
        caption = "" if text is None else normalise_caption(text)
        if text is None or not caption:
            reason = notes[0] if text is None else "empty caption (only white space)"
            if reason.startswith("empty file"):
                reason = "empty caption" + reason[len("empty file"):]
            out.skipped.append((path, reason))
            for rel in owners:
                failed_sidecar[rel] = f"its caption file {cand.rel} was skipped ({reason})"
            continue
        out.notes.extend((path, n) for n in notes)
        for rel in owners:
            out.captions[rel] = caption
            sidecar_of[rel] = cand.rel

    csv_file = _csv_path(root)
    if csv_file is not None:
        out.has_csv = True
        _read_csv(csv_file, set(images), sidecar_of, failed_sidecar, out)

    for rel in images:
        if rel in out.captions:
            continue
        why = failed_sidecar.get(rel)
        if why is None:
            name = _stem(rel).rsplit("/", 1)[-1] + CAPTION_EXTENSION
            why = f"no {name} beside it" + (f" and no row in {CAPTIONS_CSV}" if out.has_csv
                                             else "")
        out.skipped.append((str(root / rel), f"no caption: {why}"))
    return out


def _read_csv(path: Path, images: set[str], sidecar_of: dict[str, str],
              failed_sidecar: dict[str, str], out: CaptionScan) -> None:
    """Add the captions of ``captions.csv`` rows to ``out`` (see the module docstring)."""
    text, notes = read_text_file(path)
    if text is None:
        out.skipped.append((str(path), notes[0]))
        return
    out.notes.extend((str(path), n) for n in notes)
    reader = csv.reader(io.StringIO(text))
    row_of: dict[str, int] = {}  # image -> the line its caption came from
    first = True
    try:
        for row in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if not any(c.strip() for c in row):
                continue
            if first:
                first = False
                if [c.strip().lower() for c in row[:2]] == ["file", "caption"]:
                    continue  # the header
            if len(row) < 2:
                out.skipped.append((where, "expected two columns: file,caption"))
                continue
            rel = row[0].strip().replace("\\", "/")
            while rel.startswith("./"):
                rel = rel[2:]
            caption = normalise_caption(",".join(row[1:]))
            if rel not in images:
                out.skipped.append((where, f"caption for {rel!r}, which is not an image in "
                                           "the folder"))
            elif not caption:
                out.skipped.append((where, f"empty caption for {rel}"))
            elif rel in sidecar_of:
                out.notes.append((where, f"ignored: {sidecar_of[rel]} beside the image gives "
                                         "its caption"))
            elif rel in row_of:
                out.skipped.append((where, f"another caption for {rel} (line {row_of[rel]} "
                                           "is used)"))
            else:
                out.captions[rel] = caption
                row_of[rel] = line
                failed_sidecar.pop(rel, None)
    except csv.Error as e:  # e.g. an unterminated quote: keep the rows read before it
        out.skipped.append((f"{path}:{reader.line_num}", f"unreadable CSV: {e}"))


def folder_has_captions(root: Path) -> bool:
    """Whether ``root`` holds a captions.csv or any image with a caption file beside it
    (a scan that stops at the first pair; nothing is read)."""
    if _csv_path(root) is not None:
        return True
    images: set[str] = set()
    texts: set[str] = set()
    for c in folders.walk_files(root, (*IMAGE_EXTENSIONS, CAPTION_EXTENSION)):
        stem = _stem(c.rel)
        if c.rel.lower().endswith(CAPTION_EXTENSION):
            if stem in images:
                return True
            texts.add(stem)
        else:
            if stem in texts:
                return True
            images.add(stem)
    return False


def load_captioned_folder(
    source: str,
    resolution: int,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> tuple[ImageDataset, list[tuple[str, str]]]:
    """The folder's captioned images (``ImageDataset.captions`` filled) and the notes
    on captions kept with a caveat. Raises :class:`DatasetError` naming the folder and
    what was looked for when no image has a usable caption."""
    root = Path(os.path.abspath(Path(source).expanduser()))
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is a file, not a folder: {root}")
    rels = [c.rel for c in folders.scan(root)]
    if not rels:
        exts = ", ".join(IMAGE_EXTENSIONS)
        raise DatasetError(f"no images found in {root} (looked for {exts}, in any letter "
                           "case)")
    found = read_captions(root, rels)
    if not found.captions:
        seen = (f"{len(rels)} image{'s' if len(rels) != 1 else ''}, "
                f"{found.caption_files} {CAPTION_EXTENSION} file"
                f"{'s' if found.caption_files != 1 else ''}, "
                f"{'a' if found.has_csv else 'no'} {CAPTIONS_CSV}")
        problems = [f"{Path(p).name}: {r}" for p, r in found.skipped
                    if not r.startswith("no caption")][:3]
        raise DatasetError(f"no image in {root} has a usable caption (found {seen}); looked "
                           f"for {WHAT_IS_LOOKED_FOR}"
                           + (f"; {'; '.join(problems)}" if problems else ""))

    ds = folders.load_folder(source, resolution, cache_dir=cache_dir, use_cache=use_cache,
                             progress=progress)
    keep = [i for i, f in enumerate(ds.files) if f in found.captions]
    if not keep:
        raise DatasetError(f"none of the {len(found.captions)} captioned images in {root} "
                           "could be read")
    images = ds.images if len(keep) == len(ds) else ds.images[torch.tensor(keep)]
    kept = [ds.files[i] for i in keep]
    labels, class_names = labels_from_keys([label_of(r) for r in kept])
    decode_failed = {p for p, _ in ds.skipped}
    skipped = list(ds.skipped) + [(p, r) for p, r in found.skipped if p not in decode_failed]
    return ImageDataset(
        name=source,
        images=images,
        labels=labels,
        class_names=class_names,
        files=kept,
        skipped=skipped,
        from_cache=ds.from_cache,
        captions=[found.captions[r] for r in kept],
    ), found.notes
