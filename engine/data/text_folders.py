"""Text folders: ``.txt`` and ``.md`` files, labelled by subfolder like image folders.

The label rule is :mod:`engine.data.folders`' (first-level subfolder; none when every
file sits in the root; "(root)" for root files beside subfolders), and so are scanning
(recursive, hidden entries skipped, sorted) and the cache fingerprint (path, size, mtime
of every file). A folder holding images as well is an image folder: images win unless it
has none (:func:`engine.data.load_dataset`).

Reading never fails on a bad file; what happened to each file is reported:

- skipped (``TextDataset.skipped``): an empty file, a binary file (NUL bytes that are
  not UTF-16, or over :data:`CONTROL_LIMIT` control characters), an unreadable file, a
  file whose text is too short to give a sample;
- kept with a note (``TextDataset.notes``): a file over :data:`MAX_FILE_BYTES` (only
  its beginning is read), a file that is not UTF-8 — mostly valid UTF-8 with a few bad
  bytes is read as UTF-8 with U+FFFD for them; no valid multi-byte UTF-8 at all means a
  legacy 8-bit encoding, read as Windows-1252 (Latin-1 for the five bytes it leaves
  undefined) — and UTF-16 with or without a byte-order mark.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable
from pathlib import Path

from engine.data import folders
from engine.data.folders import label_of
from engine.data.text import Document, TextSettings, build, load_cached
from engine.data.tokens import TextDataset
from engine.errors import DatasetError

TEXT_EXTENSIONS = (".txt", ".md")
MAX_FILE_BYTES = 2 * 2**20  # read at most this much of a file (the rest is noted, not read)
CONTROL_LIMIT = 0.05  # a larger share of control characters means a binary file
_SNIFF_CHARS = 65536  # characters checked for control characters

# C0 and C1 controls except tab, newline, vertical tab, form feed, carriage return and ESC
# (terminal colours in logs)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_BAD_BYTE = re.compile(r"[\udc80-\udcff]")  # bytes surrogateescape could not decode

Progress = Callable[[int, int], None]


def read_text_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES
                   ) -> tuple[str | None, list[str]]:
    """The text of a file and what was noted reading it, or (None, [why it was skipped]).

    Newlines become ``\\n``; see the module docstring for encodings and binary files.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        return None, [f"unreadable: {e.strerror or e}"]
    notes = []
    truncated = len(data) > max_bytes
    if truncated:
        data = data[:max_bytes]
        notes.append(f"truncated: only the first {_mib(max_bytes)} of {_mib(size)} read")
    if not data.strip():
        return None, ["empty file" if not data else "empty file (only white space)"]
    text, how = _decode(data, final=not truncated)
    if text is None:
        return None, [how]
    if how:
        notes.append(how)
    sniff = text[:_SNIFF_CHARS]
    controls = len(_CONTROL.findall(sniff))
    if controls > CONTROL_LIMIT * len(sniff):
        return None, [f"binary file ({100 * controls / len(sniff):.0f}% control characters)"]
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return None, ["empty file (only white space)"]
    return text, notes


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def _decode(data: bytes, final: bool) -> tuple[str | None, str]:
    """(text, note) or (None, why skipped). ``final`` False: ``data`` is a file's
    beginning, so a character cut at its end is dropped, not reported."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                       (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            if codec == "utf-8-sig":
                break  # UTF-8 with a signature: the usual path below, the BOM stripped
            text = codecs.getincrementaldecoder(codec)("replace").decode(data, final)
            bad = text.count("\ufffd")
            return text, f"read as {codec.upper()} (byte-order mark)" + (
                f", {bad} undecodable sequence{'s' if bad != 1 else ''} replaced by U+FFFD"
                if bad else "")
    if b"\0" in data:
        utf16 = _utf16_without_bom(data)
        if utf16 is None:
            return None, "binary file (contains NUL bytes)"
        text = codecs.getincrementaldecoder(utf16)("replace").decode(data, final)
        return text, f"read as {utf16.upper()} (no byte-order mark)"
    try:
        return codecs.getincrementaldecoder("utf-8")("strict").decode(data, final), ""
    except UnicodeDecodeError:
        pass
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(data, final)
    bad = len(_BAD_BYTE.findall(text))
    valid_non_ascii = len(_NON_ASCII.findall(text)) - bad
    if valid_non_ascii >= bad:  # UTF-8 with some damage: keep it, name the damage
        return (_BAD_BYTE.sub("\ufffd", text),
                f"not valid UTF-8: {bad} undecodable byte{'s' if bad != 1 else ''} "
                "replaced by U+FFFD")
    # no (or hardly any) multi-byte UTF-8: a legacy 8-bit encoding, most often Windows'
    try:
        return data.decode("cp1252"), (f"not UTF-8 ({bad} non-UTF-8 byte"
                                       f"{'s' if bad != 1 else ''}): read as Windows-1252")
    except UnicodeDecodeError:
        return data.decode("latin-1"), (f"not UTF-8 ({bad} non-UTF-8 byte"
                                        f"{'s' if bad != 1 else ''}): read as Latin-1")


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when the NUL bytes sit at every other position, as in
    mostly-ASCII UTF-16 text; else None."""
    half = len(data) // 2
    if half < 8:
        return None
    even, odd = data[0:2 * half:2].count(0), data[1:2 * half:2].count(0)
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def scan_text(root: Path) -> list[folders.Candidate]:
    """The text files under ``root``, as :func:`engine.data.folders.scan` finds images."""
    return folders.scan(root, TEXT_EXTENSIONS)


def no_text_message(root: Path) -> str:
    exts = ", ".join(TEXT_EXTENSIONS)
    return f"no text files found in {root} (looked for {exts}, in any letter case)"


def load_text_folder(
    source: str,
    settings: TextSettings | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    candidates: list[folders.Candidate] | None = None,
    nothing_prefix: str = "",
) -> TextDataset:
    """Load a folder of text files (see the module docstring).

    ``progress(done, total)`` counts files read, from the calling thread; it may raise to
    abort. ``candidates`` is the folder's :func:`scan_text` when the caller has it;
    ``nothing_prefix`` starts the DatasetError's message when no file gives a sample.
    """
    settings = settings or TextSettings()
    root = Path(os.path.abspath(Path(source).expanduser()))
    if not root.exists():
        raise DatasetError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"dataset path is a file, not a folder: {root}")
    if candidates is None:
        candidates = scan_text(root)
    if not candidates:
        raise DatasetError(no_text_message(root))
    found = candidates

    def make() -> TextDataset:
        docs, skipped, notes = [], [], []
        total = len(found)
        step = max(1, total // 200)
        if progress is not None:
            progress(0, total)
        for i, c in enumerate(found):
            path = str(root / c.rel)
            text, said = read_text_file(root / c.rel, MAX_FILE_BYTES)
            if text is None:
                skipped.append((path, said[0]))
            else:
                docs.append(Document(c.rel, text, label_of(c.rel), source=path))
                notes += [(path, s) for s in said]
            if progress is not None and ((i + 1) % step == 0 or i + 1 == total):
                progress(i + 1, total)
        if not docs:
            raise DatasetError(nothing_message(skipped))
        return build(source, docs, settings, skipped=skipped, notes=notes,
                     identity=("folder", str(root)), cache_dir=cache_dir,
                     use_cache=use_cache, nothing=nothing_message)

    def nothing_message(skipped: list[tuple[str, str]]) -> str:
        n = len(found)
        first = "; ".join(f"{Path(p).relative_to(root).as_posix()} ({r})"
                          for p, r in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        return (f"{nothing_prefix}none of the {n} text file{'s' if n != 1 else ''} in "
                f"{root} gives a text sample: {first}{more}")

    return load_cached(
        make, name=source, stem=root.name, group=("folder", str(root)),
        detail=folders.fingerprint(found), settings=settings, cache_dir=cache_dir,
        use_cache=use_cache, progress=progress, total=len(found),
    )
