"""Text data: folders of .txt/.md files, the built-in pydocs corpus, tokenizers, the
held-out split, bad files, the cache and the hooks the trainer and the window call."""

from __future__ import annotations

import collections
import json
import os
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.config import Config
from engine.data import (
    BUILTIN_DATASETS,
    ImageDataset,
    TextDataset,
    bpe,
    dataset_modality,
    load_configured,
    load_dataset,
    pydocs,
    text_folders,
)
from engine.data.text import MIN_CHARS, TextSettings, heldout_split
from engine.data.tokens import CLS, MASK, PAD, SEP, ByteTokenizer, tokenizer_from_dict
from engine.errors import ConfigError, DatasetError

PARAS = [
    "The first paragraph talks about cats and the way they sleep all day long.",
    "A second paragraph, about dogs: they bark at the postman every morning.",
    "Short one.",  # under MIN_CHARS: not a sample
    "The last paragraph says goodbye to the reader, with thanks for reading.",
]
UNICODE = "naïve café – 日本語 😀🤖 e\u0301 \t tab\nnewline [MASK] [PAD] \x7f end"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _load(path: Path, tmp_path: Path, **kw) -> TextDataset:
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("heldout_fraction", 0.0)
    ds = load_dataset(str(path), 32, **kw)
    assert isinstance(ds, TextDataset)
    return ds


def _rows(x: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r) for r in x.tolist()}


# --------------------------------------------------------------------------- folders


def test_labels_from_first_level_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    _write(root / "cats" / "a.txt", PARAS[0])
    _write(root / "cats" / "deep" / "er" / "b.MD", PARAS[1])  # nested, extension in any case
    _write(root / "dogs" / "c.md", PARAS[3])
    _write(root / "dogs" / ".hidden.txt", PARAS[0])  # hidden file
    _write(root / ".cache" / "d.txt", PARAS[0])  # hidden folder
    _write(root / "dogs" / "e.rst", PARAS[0])  # not a text extension
    ds = _load(root, tmp_path, text_sample="document")
    assert ds.name == str(root) and ds.modality == "text"
    assert ds.files == ["cats/a.txt", "cats/deep/er/b.MD", "dogs/c.md"]
    assert ds.class_names == ["cats", "dogs"]
    assert ds.labels is not None and ds.labels.tolist() == [0, 0, 1]
    assert ds.texts == [PARAS[0], PARAS[1], PARAS[3]]
    assert ds.skipped == [] and ds.notes == [] and ds.heldout is None

    _write(root / "loose.txt", PARAS[1])  # a file in the root beside subfolders
    assert _load(root, tmp_path, text_sample="document").class_names == ["(root)", "cats",
                                                                          "dogs"]
    flat = tmp_path / "flat"
    _write(flat / "a.txt", PARAS[0])
    _write(flat / "b.txt", PARAS[1])
    ds = _load(flat, tmp_path, text_sample="document")
    assert ds.labels is None and ds.class_names == [] and "no labels" in ds.summary()


def test_the_three_sample_modes(tmp_path: Path) -> None:
    root = tmp_path / "t"
    doc = "\n\n".join(PARAS[:2]) + "\n  \t\n" + "\n\n".join(PARAS[2:])  # a blank-ish line
    _write(root / "a.txt", doc.replace("\n", "\r\n"))  # Windows newlines too

    d = _load(root, tmp_path, text_sample="document", seq_len=512)
    assert d.sample == "document" and d.texts == [doc] and d.files == ["a.txt"]
    assert d.inputs.shape == (1, 512) and d.inputs.dtype == torch.int64
    assert d.tokenizer.decode(d.inputs[0]) == doc and d.cut == 0
    assert "1 text sample (documents, up to 512 tokens)" in d.summary()

    p = _load(root, tmp_path, text_sample="paragraph", seq_len=128)
    assert p.files == ["a.txt#p1", "a.txt#p2", "a.txt#p4"]  # #p3 is too short
    assert p.texts == [PARAS[0], PARAS[1], PARAS[3]]
    assert [p.tokenizer.decode(r) for r in p.inputs] == p.texts
    assert (p.inputs[:, 80:] == PAD).all() and "paragraphs" in p.summary()

    w = _load(root, tmp_path, text_sample="window", seq_len=16)
    assert w.sample == "window" and w.inputs.shape[1] == 16
    assert w.files[:2] == ["a.txt#w1", "a.txt#w2"]
    ids = ByteTokenizer().encode(doc)
    assert len(ids) % 16 == 10  # the trailing 10 bytes are under MIN_CHARS: dropped
    assert len(w) == len(ids) // 16 and (w.inputs != PAD).all()
    assert w.inputs.flatten().tolist() == ids[: 16 * len(w)]  # consecutive, no overlap
    w2 = _load(root, tmp_path, text_sample="window", seq_len=24)  # 234 = 9 * 24 + 18
    assert len(w2) == 10 and (w2.inputs[-1] != PAD).sum() == 18  # a long enough tail stays
    assert sum((r[r != PAD].tolist() for r in w2.inputs), []) == ids

    cut = _load(root, tmp_path, text_sample="paragraph", seq_len=20)
    assert cut.cut == 3 and "3 longer cut to 20 tokens" in cut.summary()
    assert cut.texts[0] == PARAS[0][:20] and (cut.inputs != PAD).all()


def test_bad_files_are_named_and_never_crash(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "mixed"
    good = _write(root / "good.txt", PARAS[0])
    png = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(png)
    binary = _write(root / "image.txt", png.read_bytes())  # NUL bytes
    controls = _write(root / "controls.md", bytes(range(1, 32)) * 40)  # no NUL, all control
    empty = _write(root / "empty.txt", b"")
    blank = _write(root / "blank.txt", " \n\t\n ")
    short = _write(root / "short.txt", "tiny")
    latin = _write(root / "latin1.txt", "Café crème brûlée, déjà vu à la façade.".encode("latin-1"))
    damaged = _write(root / "damaged.txt", "Ünïcödé text that is fine ".encode() * 3 + b"\xff\xfe!")
    utf16 = _write(root / "utf16.txt",
                   ("UTF-16 text with a byte-order mark. " * 2).encode("utf-16"))
    monkeypatch.setattr(text_folders, "MAX_FILE_BYTES", 4096)
    huge = _write(root / "huge.txt", ("All work and no play makes a dull model. " * 200).encode())

    ds = _load(root, tmp_path, text_sample="document", seq_len=256)
    skipped = dict(ds.skipped)
    assert skipped[str(binary)] == "binary file (contains NUL bytes)"
    assert skipped[str(controls)].startswith("binary file (") and "control" in skipped[
        str(controls)]
    assert skipped[str(empty)] == "empty file"
    assert skipped[str(blank)] == "empty file (only white space)"
    assert skipped[str(short)].startswith("no text sample: too short (4 characters")
    assert len(skipped) == 5 and "5 files skipped" in ds.summary()

    notes = dict(ds.notes)
    assert "read as Windows-1252" in notes[str(latin)]
    assert "2 undecodable bytes replaced" in notes[str(damaged)]
    assert "UTF-16" in notes[str(utf16)]
    assert notes[str(huge)].startswith("truncated: only the first 4 KiB")
    assert str(good) not in notes and "4 notes" in ds.summary()
    texts = dict(zip(ds.files, ds.texts, strict=True))
    assert texts["latin1.txt"].startswith("Café crème brûlée")
    assert texts["damaged.txt"].endswith("\ufffd\ufffd!")
    assert texts["utf16.txt"].startswith("UTF-16 text") and "\x00" not in texts["utf16.txt"]
    assert texts["huge.txt"].startswith("All work and no play")  # the sample is kept
    assert sorted(ds.files) == ["damaged.txt", "good.txt", "huge.txt", "latin1.txt",
                                "utf16.txt"]


def test_a_folder_nothing_can_be_read_from(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    _write(root / "a.txt", b"")
    _write(root / "b.txt", b"\x00\x01\x02" * 20)
    with pytest.raises(DatasetError) as e:
        _load(root, tmp_path)
    msg = str(e.value)
    assert str(root) in msg and "a.txt (empty file)" in msg and "b.txt (binary file" in msg
    # too short everywhere: the reasons name the files as well
    _write(root / "a.txt", "hi")
    _write(root / "b.txt", "ok")
    with pytest.raises(DatasetError, match="a.txt \\(no text sample: too short"):
        _load(root, tmp_path)

    none = tmp_path / "none"
    _write(none / "x.csv", "a,b\n1,2\n")
    with pytest.raises(DatasetError) as e:
        text_folders.load_text_folder(str(none))
    assert str(none) in str(e.value) and ".txt, .md" in str(e.value)
    with pytest.raises(DatasetError, match="no images found") as e:  # as before, plus text
        _load(none, tmp_path)
    assert str(none) in str(e.value) and ".jpg" in str(e.value) and ".txt, .md" in str(e.value)


def test_images_win_over_text_and_modality(tmp_path: Path) -> None:
    both = tmp_path / "both"
    Image.new("RGB", (9, 9)).save(_write(both / "a" / "x.png", b""))
    _write(both / "a" / "readme.txt", PARAS[0])
    text = tmp_path / "text"
    _write(text / "a" / "deep" / "x.md", PARAS[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert isinstance(load_dataset(str(both), 8, cache_dir=tmp_path / "c"), ImageDataset)
    assert dataset_modality(str(both)) == "image"
    assert dataset_modality(str(text)) == "text"
    assert dataset_modality(" pydocs ") == "text"
    assert dataset_modality("shapes") == dataset_modality("digits") == "image"
    for other in (empty, tmp_path / "missing", text / "a" / "deep" / "x.md"):
        assert dataset_modality(str(other)) == "image"  # loading it reports the problem
    assert "pydocs" in BUILTIN_DATASETS and "docstrings" in BUILTIN_DATASETS["pydocs"]


# --------------------------------------------------------------------------- tokenizers


def test_byte_tokenizer_round_trip() -> None:
    tok = ByteTokenizer()
    for s in (UNICODE, "", "a", "🤖" * 5, "\u200d\ufeff\U0010ffff"):
        ids = tok.encode(s)
        assert all(4 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s and tok.decode(torch.tensor(ids)) == s
    ids = [CLS, *tok.encode("hi"), MASK, SEP, PAD, PAD]
    assert tok.decode(ids) == "hi" and tok.decode(ids, specials=True) == "[CLS]hi[MASK][SEP]"
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))).encode(UNICODE) == \
        tok.encode(UNICODE)


def test_bpe_tokenizer_round_trip_and_cache(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers", reason="the optional text extra: pip install tokenizers")
    corpus = [p * 3 for p in PARAS] + [UNICODE] * 3
    tok = bpe.BPETokenizer.train(corpus, 300)
    assert tok.vocab_size <= 300
    assert [tok._tok.token_to_id(n) for n in ("[PAD]", "[MASK]", "[CLS]", "[SEP]")] == \
        [PAD, MASK, CLS, SEP]
    for s in (UNICODE, PARAS[0], "", "🦜 unseen 🧪 text ½", "tab\tand  two  spaces\n"):
        ids = tok.encode(s)
        assert all(4 <= i < tok.vocab_size for i in ids)  # "[MASK]" in text is not MASK
        assert tok.decode(ids) == s and tok.decode(torch.tensor(ids)) == s
    ids = tok.encode("cats sleep")
    assert len(ids) < len("cats sleep")  # merges learned
    assert "".join(tok.token_text(i) for i in ids) == "cats␣sleep"
    assert tok.decode([CLS, *ids, MASK, PAD], specials=True) == "[CLS]cats sleep[MASK]"
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))  # a run folder's copy
    assert again.kind == "bpe" and again.vocab_size == tok.vocab_size
    assert again.encode(UNICODE) == tok.encode(UNICODE)

    root = tmp_path / "t"
    for i, p in enumerate(PARAS):
        _write(root / f"{i}.txt", p * 4)
    a = _load(root, tmp_path, tokenizer="bpe", bpe_vocab_size=300, seq_len=64)
    assert a.tokenizer.kind == "bpe" and not a.from_cache
    assert len(list((tmp_path / "cache").glob("bpe-*.json"))) == 1  # the trained BPE cached
    b = _load(root, tmp_path, tokenizer="bpe", bpe_vocab_size=300, seq_len=64)
    assert b.from_cache and b.tokenizer.kind == "bpe" and torch.equal(a.inputs, b.inputs)
    assert [b.tokenizer.decode(r) for r in b.inputs] == b.texts
    assert (a.inputs != PAD).sum() < ByteTokenizer().encode("".join(a.texts)).__len__()


def test_bpe_without_tokenizers_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    def missing(name: str):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(bpe.importlib, "import_module", missing)
    _write(tmp_path / "t" / "a.txt", PARAS[0])
    with pytest.raises(ConfigError) as e:
        _load(tmp_path / "t", tmp_path, tokenizer="bpe")
    assert "data.tokenizer" in str(e.value) and "pip install tokenizers" in str(e.value)
    assert not bpe.available()


# --------------------------------------------------------------------------- pydocs


@pytest.fixture(scope="module")
def docs_ds() -> TextDataset:
    ds = load_dataset("pydocs", 32, use_cache=False)  # the defaults
    assert isinstance(ds, TextDataset)
    return ds


def test_pydocs_is_labelled_real_language(docs_ds: TextDataset) -> None:
    ds = docs_ds
    assert ds.name == "pydocs" and ds.sample == "paragraph" and ds.inputs.shape[1] == 128
    assert ds.class_names == sorted(pydocs.CLASSES) and len(ds.class_names) == 8
    counts = ds.class_counts()
    assert min(counts) >= 100 and max(counts) < 3 * min(counts), counts  # balanced-ish
    assert ds.heldout is not None and ds.heldout.shape[1] == 128
    assert 0.03 < len(ds.heldout) / (len(ds) + len(ds.heldout)) < 0.07
    words = collections.Counter(w.lower() for t in ds.texts for w in t.split())
    top = [w for w, _ in words.most_common(12)]
    assert {"the", "of", "a"} <= set(top), top
    assert all(re.fullmatch(r"[\w/]+\.py(:[\w.]+)?#p\d+", f) for f in ds.files), ds.files[:5]
    assert 4.0 < ds.unigram_bits < 5.5  # English bytes: about 4.5 bits each
    # a class's text is about its package
    first = {c: " ".join(t for t, y in zip(ds.texts, ds.labels.tolist(), strict=True)
                         if ds.class_names[y] == c) for c in ds.class_names}
    assert "event loop" in first["asyncio"] and "header" in first["email"].lower()
    assert "element" in first["xml"].lower() and "test" in first["unittest"].lower()


def test_pydocs_is_deterministic(docs_ds: TextDataset) -> None:
    again = load_dataset("pydocs", 32, use_cache=False)
    assert isinstance(again, TextDataset)
    assert torch.equal(again.inputs, docs_ds.inputs) and again.files == docs_ds.files
    assert again.heldout is not None and docs_ds.heldout is not None
    assert torch.equal(again.heldout, docs_ds.heldout)
    assert torch.equal(again.labels, docs_ds.labels)


def test_pydocs_documents_are_capped_per_class(tmp_path: Path) -> None:
    ds = load_dataset("pydocs", 32, text_sample="document", heldout_fraction=0.0,
                      seq_len=4096, cache_dir=tmp_path)  # nothing cut: texts are whole
    assert isinstance(ds, TextDataset) and ds.labels is not None
    assert max(ds.class_counts()) <= pydocs.PER_CLASS
    assert len(set(ds.texts)) == len(ds.texts)  # repeated docstrings appear once


def test_pydocs_without_sources_falls_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pydocs, "stdlib_dir", lambda: tmp_path / "no-sources")
    ds = load_dataset("pydocs", 32, cache_dir=tmp_path / "c", text_sample="document")
    assert isinstance(ds, TextDataset) and len(ds) > 50
    assert ds.labels is None and ds.notes and "pydoc_data.topics" in ds.notes[0][1]
    assert "1 note" in ds.summary()


def test_load_configured_pydocs(tmp_path: Path) -> None:
    cfg = Config()
    cfg.set("data.dataset", "pydocs")
    cfg.set("data.seq_len", 64)
    cfg.set("data.text_sample", "window")
    cfg.set("data.heldout_fraction", 0.1)
    seen = []
    ds = load_configured(cfg.data, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert isinstance(ds, TextDataset) and ds.sample == "window"
    assert ds.inputs.shape == (len(ds), 64) and ds.heldout is not None
    assert ds.heldout.shape[1] == 64 and len(ds.texts) == len(ds.files) == len(ds)
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0
    again = load_configured(cfg.data, tmp_path)
    assert again.from_cache and torch.equal(again.inputs, ds.inputs)


# --------------------------------------------------------------------------- split, cache


def test_heldout_split_is_disjoint_stratified_deterministic(tmp_path: Path) -> None:
    labels = torch.tensor([0] * 60 + [1] * 40 + [2] * 1)
    held = heldout_split(101, labels, 0.1, seed=0)
    assert held is not None and held.tolist() == sorted(set(held.tolist()))
    assert torch.bincount(labels[held], minlength=3).tolist() == [6, 4, 0]  # 1 stays
    assert torch.equal(held, heldout_split(101, labels, 0.1, seed=0))
    assert not torch.equal(held, heldout_split(101, labels, 0.1, seed=1))
    assert heldout_split(101, labels, 0.0, 0) is None
    assert heldout_split(5, None, 0.05, 0) is None  # too few to hold one out

    root = tmp_path / "t"
    for c in ("a", "b"):
        for i in range(20):
            _write(root / c / f"{i}.txt", f"Document {i} of class {c}, number {i * 7919}.")
    kw = {"text_sample": "document", "heldout_fraction": 0.2, "use_cache": False}
    ds = _load(root, tmp_path, **kw)
    assert ds.heldout is not None and len(ds.heldout) == 8 and len(ds) == 32
    assert not _rows(ds.heldout) & _rows(ds.inputs)  # disjoint
    assert ds.class_counts() == [16, 16]  # stratified
    assert "8 held out" in ds.summary()
    again = _load(root, tmp_path, **kw)
    assert torch.equal(again.heldout, ds.heldout) and again.files == ds.files


def test_cache_hit_and_invalidation(tmp_path: Path) -> None:
    root = tmp_path / "t"
    f = _write(root / "a" / "x.txt", "\n\n".join(PARAS))
    _write(root / "b" / "y.md", PARAS[0])
    seen = []
    a = _load(root, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert not a.from_cache and seen[0] == (0, 2) and seen[-1] == (2, 2)
    seen.clear()
    b = _load(root, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert b.from_cache and seen == [(2, 2)]
    assert torch.equal(a.inputs, b.inputs) and b.texts == a.texts and b.files == a.files
    assert torch.equal(a.labels, b.labels) and b.class_names == a.class_names
    assert b.summary() == a.summary()

    f.write_text(PARAS[1] + "\n\nA new paragraph that was not there before the edit.")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    c = _load(root, tmp_path)
    assert not c.from_cache and "A new paragraph that was not there before the edit." in c.texts
    assert _load(root, tmp_path).from_cache
    assert not _load(root, tmp_path, seq_len=32).from_cache  # other settings, other entry
    assert len(list((tmp_path / "cache").glob("t-*.npz"))) == 2  # the stale one pruned

    (tmp_path / "cache").joinpath("junk").mkdir()
    for entry in (tmp_path / "cache").glob("t-*.npz"):
        entry.write_bytes(b"not a zip file")  # a corrupt entry is rebuilt, never a crash
    d = _load(root, tmp_path)
    assert not d.from_cache and torch.equal(d.inputs, c.inputs)

    none = tmp_path / "nocache"
    _load(root, tmp_path, cache_dir=none, use_cache=False)
    assert not none.exists()


def test_settings_are_checked() -> None:
    for bad in ({"sample": "sentence"}, {"tokenizer": "words"}, {"seq_len": 1},
                {"heldout_fraction": 0.9}):
        with pytest.raises(ConfigError, match="data."):
            TextSettings(**bad).validate()  # type: ignore[arg-type]
    assert MIN_CHARS == 16
