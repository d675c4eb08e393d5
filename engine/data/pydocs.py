"""The built-in text corpus "pydocs": the docstrings of Python's own standard library.

Every machine that runs the workbench has it, nothing is downloaded, and it is real
English technical prose with labels: each module, class and function docstring of a fixed
set of standard-library packages is one document, labelled by its package group. The
source files of the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``) are parsed with :mod:`ast`, never imported, and
each docstring is cleaned with :func:`inspect.cleandoc`.

Determinism: files are read in sorted order and docstrings in source order; a docstring
seen before (anywhere in the corpus) is not repeated; each class keeps at most
:data:`PER_CLASS` documents, chosen by a hash of their names (so the choice does not
favour the first files, and does not depend on the seed); test folders are left out. The
classes are groups every CPython from 3.10 to 3.13 ships, of a few hundred docstrings
each.

Without the standard library's sources (a frozen app, a ``.pyc``-only install) the corpus
falls back to the topics of ``pydoc_data.topics`` (the help texts of the language
reference, which ship as data): unlabelled, and said so in ``TextDataset.notes``.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import sysconfig
import warnings
from collections.abc import Callable
from pathlib import Path

from engine.data import cache, folders
from engine.data.folders import ROOT_CLASS
from engine.data.text import Document, TextSettings, build, load_cached
from engine.data.tokens import TextDataset
from engine.errors import DatasetError

NAME = "pydocs"
#: class name -> the top-level standard-library packages or modules it gathers
CLASSES: dict[str, tuple[str, ...]] = {
    "asyncio": ("asyncio",),
    "concurrency": ("concurrent", "multiprocessing", "threading", "queue"),
    "email": ("email",),
    "importlib": ("importlib",),
    "logging": ("logging",),
    "unittest": ("unittest",),
    "web": ("http", "urllib", "wsgiref"),
    "xml": ("xml",),
}
PER_CLASS = 200  # documents kept per class at most: no class dominates
PYDOCS_VERSION = 1  # bump when the selection changes
_TEST_DIRS = ("test", "tests")

Progress = Callable[[int, int], None]


def stdlib_dir() -> Path:
    """The running interpreter's standard-library source folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path) -> list[tuple[str, str]]:
    """(class, path relative to ``root``) of every source file of the corpus, sorted by
    class, then path; test folders and ``test_*.py`` files left out."""
    out = []
    for cls in sorted(CLASSES):
        rels: list[str] = []
        for top in CLASSES[cls]:
            if (root / top).is_dir():
                rels += [f"{top}/{c.rel}" for c in folders.scan(root / top, (".py",))
                         if not _is_test(c.rel)]
            elif (root / f"{top}.py").is_file():
                rels.append(f"{top}.py")
        out += [(cls, r) for r in sorted(rels)]
    return out


def _is_test(rel: str) -> bool:
    parts = rel.split("/")
    return any(p in _TEST_DIRS for p in parts[:-1]) or parts[-1].startswith("test_")


def docstrings(source: bytes, rel: str) -> list[tuple[str, str]]:
    """(display name, cleaned docstring) of a module's, its classes' and its functions'
    docstrings, in source order; display names are ``rel`` or ``rel:Qual.name``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for an old escape sequence
        tree = ast.parse(source, filename=rel)
    out: list[tuple[str, str]] = []

    def visit(node: ast.AST, qual: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                q = f"{qual}.{child.name}" if qual else child.name
                doc = ast.get_docstring(child, clean=False)
                if doc:
                    out.append((f"{rel}:{q}", inspect.cleandoc(doc)))
                visit(child, q)
            else:
                visit(child, qual)  # definitions inside if/try blocks

    doc = ast.get_docstring(tree, clean=False) if isinstance(tree, ast.Module) else None
    if doc:
        out.append((rel, inspect.cleandoc(doc)))
    visit(tree, "")
    return out


def read_corpus(root: Path, progress: Progress | None = None
                ) -> tuple[list[Document], list[tuple[str, str]]]:
    """The labelled documents of the standard library at ``root`` and the files that
    could not be parsed. Raises FileNotFoundError when a class has no source file."""
    files = source_files(root)
    missing = sorted(set(CLASSES) - {c for c, _ in files})
    if missing:
        raise FileNotFoundError(f"no sources of {', '.join(missing)} in {root}")
    seen: set[str] = set()
    by_class: dict[str, list[tuple[str, str]]] = {c: [] for c in CLASSES}
    skipped = []
    total = len(files)
    if progress is not None:
        progress(0, total)
    for i, (cls, rel) in enumerate(files):
        try:
            docs = docstrings((root / rel).read_bytes(), rel)
        except (OSError, SyntaxError, ValueError) as e:
            skipped.append((str(root / rel), f"{type(e).__name__}: {e}"))
            docs = []
        for name, text in docs:
            if text not in seen:
                seen.add(text)
                by_class[cls].append((name, text))
        if progress is not None and ((i + 1) % 10 == 0 or i + 1 == total):
            progress(i + 1, total)
    out = []
    for cls in sorted(CLASSES):
        found = by_class[cls]
        if len(found) > PER_CLASS:  # a fixed pseudo-random choice, then source order again
            order = sorted(range(len(found)), key=lambda j: _hash(found[j][0]))
            found = [found[j] for j in sorted(order[:PER_CLASS])]
        out += [Document(name, text, cls) for name, text in found]
    return out, skipped


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _fingerprint(root: Path) -> tuple[str, int]:
    parts = []
    for cls, rel in source_files(root):
        try:
            st = (root / rel).stat()
        except OSError:
            continue
        parts.append((cls, rel, st.st_size, st.st_mtime_ns))
    return cache.digest(parts), len(parts)


def fallback_documents() -> list[Document]:
    """The help topics of ``pydoc_data.topics``, unlabelled (DatasetError without them)."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:
        raise DatasetError(
            f"the built-in corpus {NAME!r} needs the standard library's sources (not found "
            f"in {stdlib_dir()}) or pydoc_data.topics (not importable): this Python ships "
            "neither; use a folder of .txt or .md files instead") from e
    return [Document(f"pydoc_data/topics:{k}", inspect.cleandoc(topics[k]), ROOT_CLASS)
            for k in sorted(topics)]


def load_pydocs(
    settings: TextSettings | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> TextDataset:
    """The ``pydocs`` corpus under ``settings`` (see the module docstring)."""
    settings = settings or TextSettings()
    root = stdlib_dir()
    has_sources = all(any((root / t).is_dir() or (root / f"{t}.py").is_file() for t in tops)
                      for tops in CLASSES.values())
    if has_sources:
        detail, total = _fingerprint(root)
        group: tuple[object, ...] = (NAME, str(root), PYDOCS_VERSION, PER_CLASS)
    else:
        detail, total = "fallback" + sys.version, 1
        group = (NAME, "pydoc_data.topics", sys.version, PYDOCS_VERSION)

    def make() -> TextDataset:
        notes: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []
        try:
            docs, skipped = read_corpus(root, progress)
        except FileNotFoundError as e:
            docs = fallback_documents()
            notes.append((NAME, f"{e}: using the unlabelled help topics of "
                          "pydoc_data.topics instead"))
            if progress is not None:
                progress(1, 1)
        return build(NAME, docs, settings, skipped=skipped, notes=notes,
                     identity=group, cache_dir=cache_dir, use_cache=use_cache)

    return load_cached(make, name=NAME, stem=NAME, group=group, detail=detail,
                       settings=settings, cache_dir=cache_dir, use_cache=use_cache,
                       progress=progress, total=total)
