"""Paired image-text data: shapes captions, captioned folders, Pairs, PairedDataset."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from engine.config import DataConfig
from engine.data import (
    DataSource,
    ImageDataset,
    PairedDataset,
    Pairs,
    dataset_modality,
    has_captions,
    load_dataset,
    load_paired,
)
from engine.data.builtin import (
    SHAPE_CLASSES,
    make_shapes,
    scene_facts,
    shape_scenes,
    shapes_captions,
)
from engine.data.captions import (
    CAPTIONS_VERSION,
    COLOUR_NAMES,
    POSITIONS,
    colour_name,
    colour_names,
    parse_caption,
)
from engine.data.tokens import PAD, ByteTokenizer
from engine.errors import DatasetError
from engine.model import calibrate_batchnorm, extract_features
from engine.monitoring import Monitor, monitor_set
from engine.presets import default_config

R = 16

# sha256 of make_shapes(60, 32, seed=0).images (upright, any), computed before captions
# were added: the captions' refactor must not change a pixel
SHAPES_60_32_0 = {
    "upright": "6923bad8a06f43623d208075b24632a0b450f5b9297f9813fa259536df8cb0ac",
    "any": "3111391c5b640a318806d1d21e122466d3526d0c70ad52bb2f0319b33c383d25",
}
SHAPES_50_16_3_ANY = "5a569aa22af263d8ccc879cad3378e529e7c0e9d1d4b00c392397e94d0f56381"


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 24), colour).save(path)
    return path


def _paired(root: Path, tmp_path: Path, **kw: object) -> PairedDataset:
    data = DataConfig(dataset=str(root), resolution=R, **kw)  # type: ignore[arg-type]
    return load_paired(data, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------- shapes captions


def test_shapes_images_unchanged_by_captions() -> None:
    for orientation, digest in SHAPES_60_32_0.items():
        ds = make_shapes(60, 32, seed=0, orientation=orientation)
        assert _sha(ds.images) == digest
    assert _sha(make_shapes(50, 16, seed=3, orientation="any").images) == SHAPES_50_16_3_ANY


def test_captions_deterministic_by_seed_and_differ_across_seeds() -> None:
    a = make_shapes(60, 32, seed=0).captions
    assert a is not None and len(a) == 60 and all(a)
    assert make_shapes(60, 32, seed=0).captions == a
    assert shapes_captions(60, 32, 0) == a  # made again from the parameters alone
    b = make_shapes(60, 32, seed=1).captions
    assert b is not None and b != a
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 50


@pytest.mark.parametrize("orientation", ["upright", "any"])
def test_caption_names_the_shape_and_colour_drawn(orientation: str) -> None:
    ds = make_shapes(300, 32, seed=0, orientation=orientation)
    sc = shape_scenes(300, 32, 0, orientation)
    assert torch.equal(ds.labels, torch.from_numpy(sc.labels))
    fills = colour_names(sc.fill)
    facts = scene_facts(sc)
    assert ds.captions is not None
    turned_seen = upright_seen = 0
    for i, text in enumerate(ds.captions):
        assert parse_caption(text, SHAPE_CLASSES) == (SHAPE_CLASSES[sc.labels[i]], fills[i]), text
        words = set(re.findall(r"[a-z-]+", text.lower()))
        f = facts[i]
        sizes = {"small": "small", "little": "small", "medium-sized": "medium",
                 "mid-sized": "medium", "large": "large", "big": "large"}
        said = {sizes[w] for w in words if w in sizes}
        assert said <= {f.size}, text
        for cell, phrases in POSITIONS.items():
            if any(re.search(rf"\b{p}\b(?! left| right)", text.lower()) for p in phrases):
                assert cell == f.position, text
        if "noisy" in words:
            assert f.noisy, text
        if "gradient" in words:
            assert f.gradient, text
        if "plain" in words:
            assert not f.gradient, text
        turned = bool(words & {"turned", "tilted", "rotated"})
        upright = bool(words & {"upright", "straight"})
        if orientation == "upright" or SHAPE_CLASSES[sc.labels[i]] in ("circle", "ring"):
            assert not turned and not upright, text
        else:
            assert not (turned and f.turned is False) and not (upright and f.turned), text
        turned_seen += turned
        upright_seen += upright
    if orientation == "any":
        assert turned_seen > 50 and upright_seen > 0


def test_colour_names_follow_perception() -> None:
    for name, values in COLOUR_NAMES.items():
        for v in values:
            assert colour_name(v) == name
    expected = {(255, 0, 0): "red", (0, 0, 255): "blue", (0, 0, 128): "blue",
                (0, 255, 0): "green", (255, 255, 0): "yellow", (0, 0, 0): "black",
                (255, 255, 255): "white", (200, 200, 200): "grey", (255, 105, 180): "pink",
                (148, 0, 211): "purple", (160, 82, 45): "brown", (255, 140, 0): "orange",
                (135, 206, 235): "blue", (70, 70, 70): "grey"}
    assert {rgb: colour_name(rgb) for rgb in expected} == expected


def test_phrasing_varies() -> None:
    caps = make_shapes(300, 32, seed=0, orientation="any").captions
    assert caps is not None
    assert len(set(caps)) > 250

    def template(c: str) -> str:
        c = c.lower()
        for start in ("a picture of", "a photo of", "there is", "on a", "on an"):
            if c.startswith(start):
                return start
        return "background first" if " with a" in c or " with an" in c else "plain"

    kinds = {template(c) for c in caps}
    assert len(kinds) >= 6, kinds
    assert any(c.endswith(".") for c in caps) and any(not c.endswith(".") for c in caps)
    assert any(" in the " in c or " at the " in c or " on the " in c for c in caps)
    assert not any(re.search(r"\ba [aeiou]", c.lower()) for c in caps)  # 'an orange'


def test_image_dataset_validates_captions() -> None:
    ds = make_shapes(12, 8)
    with pytest.raises(ValueError, match="captions"):
        ImageDataset(name="x", images=ds.images, labels=None, class_names=[],
                     files=ds.files, skipped=[], captions=["one"])


def _meta(cache_dir: Path) -> tuple[Path, dict]:
    (meta,) = cache_dir.glob("shapes-*.json")
    return meta, json.loads(meta.read_text(encoding="utf-8"))


def test_cache_round_trip_keeps_captions(tmp_path: Path) -> None:
    kw = {"shapes_count": 120, "seed": 5, "cache_dir": tmp_path}
    fresh = make_shapes(120, 32, seed=5).captions
    first = load_dataset("shapes", 32, **kw)
    again = load_dataset("shapes", 32, **kw)
    assert not first.from_cache and again.from_cache
    assert first.captions == again.captions == fresh
    _, meta = _meta(tmp_path)
    assert meta["captions"] == fresh and meta["captions_version"] == CAPTIONS_VERSION


@pytest.mark.parametrize("damage", ["absent", "stale"])
def test_cache_entry_without_current_captions_still_loads(tmp_path: Path, damage: str) -> None:
    kw = {"shapes_count": 120, "cache_dir": tmp_path}
    want = load_dataset("shapes", 32, **kw).captions
    path, meta = _meta(tmp_path)
    if damage == "absent":  # an entry written before captions existed
        del meta["captions"], meta["captions_version"]
    else:  # written by an older caption generator
        meta["captions"] = ["old"] * 120
        meta["captions_version"] = CAPTIONS_VERSION - 1
    path.write_text(json.dumps(meta), encoding="utf-8")
    npy = sorted(tmp_path.glob("shapes-*.npy"))
    hit = load_dataset("shapes", 32, **kw)
    assert hit.from_cache and hit.captions == want
    assert sorted(tmp_path.glob("shapes-*.npy")) == npy  # the images were not rebuilt
    assert _meta(tmp_path)[1]["captions"] == want  # and the entry carries them now


def test_shapes_pairs(tmp_path: Path) -> None:
    ds = load_paired(DataConfig(shapes_count=120, resolution=R, seq_len=48), cache_dir=tmp_path)
    assert isinstance(ds, DataSource)
    assert len(ds) == 120 and ds.resolution == R and ds.seq_len == 48
    assert ds.class_names == list(SHAPE_CLASSES) and ds.class_counts() == [20] * 6
    assert ds.modality == "paired" and ds.texts == ds.captions
    assert ds.summary().startswith("120 captioned images, 6 classes (circle 20,")
    assert isinstance(ds.tokenizer, ByteTokenizer)
    x = ds.inputs
    assert isinstance(x, Pairs) and x.images.dtype == torch.uint8
    assert x.tokens.shape == (120, 48) and x.tokens.dtype == torch.int64
    tok = ds.tokenizer
    for i in range(120):
        want = ds.captions[i].encode()[:48].decode("utf-8", "ignore")
        assert tok.decode(x.tokens[i]).startswith(want)
        n_real = int((x.tokens[i] != PAD).sum())
        assert (x.tokens[i, n_real:] == PAD).all()
    assert ds.cut == sum(len(c.encode()) > 48 for c in ds.captions) > 0
    assert ds.thumbnails(torch.tensor([0, 3])).shape == (2, R, R, 3)
    assert ds.sample_texts(torch.tensor([2]), limit=10) == [
        ds.captions[2] if len(ds.captions[2]) <= 10 else ds.captions[2][:9] + "…"]
    cached = load_paired(DataConfig(shapes_count=120, resolution=R, seq_len=48),
                         cache_dir=tmp_path)
    assert cached.from_cache and cached.captions == ds.captions
    assert torch.equal(cached.tokens, ds.tokens)


def test_bpe_tokenizer_is_trained_on_the_captions(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    ds = load_paired(DataConfig(shapes_count=300, resolution=8, tokenizer="bpe",
                                bpe_vocab_size=300), cache_dir=tmp_path)
    assert ds.tokenizer.kind == "bpe"
    assert ds.tokenizer.decode(ds.tokens[0]).strip() == ds.captions[0]


@pytest.mark.parametrize("name", ["digits", "pydocs", " "])
def test_builtins_without_captions_are_refused(name: str) -> None:
    with pytest.raises(DatasetError, match="CLIP needs captioned images.*'shapes'.*captions.csv"):
        load_paired(DataConfig(dataset=name))


# --------------------------------------------------------------------------- folders


def test_folder_sidecar_captions(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    _png(root / "cat" / "cat_01.png")
    (root / "cat" / "cat_01.txt").write_text("a grey cat\n  asleep on a sofa\n")
    _png(root / "dog" / "dog_01.jpg")
    (root / "dog" / "dog_01.txt").write_text("a dog", encoding="utf-8")
    _png(root / "dog" / "dog_02.png")  # no caption
    (root / "README.txt").write_text("not a caption")  # orphan
    (root / "dog" / "gone.txt").write_text("an image that is not there")  # orphan
    ds = _paired(root, tmp_path)
    assert ds.files == ["cat/cat_01.png", "dog/dog_01.jpg"]
    assert ds.captions == ["a grey cat asleep on a sofa", "a dog"]
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 1]
    why = dict(ds.skipped)
    assert why[str(root / "dog" / "dog_02.png")].startswith("no caption: no dog_02.txt")
    assert why[str(root / "README.txt")].startswith("caption without an image")
    assert why[str(root / "dog" / "gone.txt")].startswith("caption without an image")
    assert ds.summary() == ("2 captioned images, 2 classes (cat 1, dog 1), captions up to "
                            "128 tokens, 3 files skipped")


def test_folder_captions_csv(tmp_path: Path) -> None:
    root = tmp_path / "csv"
    for name in ("a.png", "b.png", "c.png", "d.png", "sub/e.png", "f.png"):
        _png(root / name)
    (root / "captions.csv").write_text(
        "file,caption\n"
        "a.png,a red square\n"
        'b.png,"a square, red"\n'
        "./c.png,red, square, unquoted\n"
        "\n"
        "zzz.png,an orphan row\n"
        "d.png,   \n"
        "a.png,a second caption\n"
        "sub\\e.png,in a subfolder\n"
        "lonely\n", encoding="utf-8")
    ds = _paired(root, tmp_path)
    got = dict(zip(ds.files, ds.captions, strict=True))
    assert got == {"a.png": "a red square", "b.png": "a square, red",
                   "c.png": "red, square, unquoted", "sub/e.png": "in a subfolder"}
    csv = str(root / "captions.csv")
    why = dict(ds.skipped)
    assert "not an image" in why[f"{csv}:6"]
    assert why[f"{csv}:7"] == "empty caption for d.png"
    assert "line 2 is used" in why[f"{csv}:8"]
    assert "two columns" in why[f"{csv}:10"]
    assert why[str(root / "f.png")] == "no caption: no f.txt beside it and no row in captions.csv"
    assert ds.labels is not None and ds.class_names == ["(root)", "sub"]


def test_csv_without_header_and_sidecar_wins(tmp_path: Path) -> None:
    root = tmp_path / "both"
    _png(root / "a.png")
    _png(root / "b.png")
    (root / "a.txt").write_text("from the sidecar")
    (root / "Captions.CSV").write_bytes("\ufeffa.png,from the csv\nb.png,b from csv\n"
                                        .encode("utf-8"))
    ds = _paired(root, tmp_path)
    assert ds.captions == ["from the sidecar", "b from csv"]
    assert not ds.skipped
    assert any("ignored: a.txt beside the image" in n for _, n in ds.notes)


def test_empty_latin1_and_binary_caption_files(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    for name in ("empty", "blank", "latin", "binary", "good"):
        _png(root / f"{name}.png")
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.txt").write_text(" \n\t\n")
    (root / "latin.txt").write_bytes("un caf\xe9 cr\xe8me".encode("latin-1"))
    (root / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (root / "good.txt").write_text("fine")
    ds = _paired(root, tmp_path)
    assert dict(zip(ds.files, ds.captions, strict=True)) == {"good.png": "fine",
                                                            "latin.png": "un café crème"}
    why = dict(ds.skipped)
    assert why[str(root / "empty.txt")].startswith("empty caption")
    assert why[str(root / "blank.txt")].startswith("empty caption")
    assert why[str(root / "binary.txt")].startswith("binary file")
    assert why[str(root / "binary.png")].startswith("no caption: its caption file binary.txt")
    assert why[str(root / "empty.png")].startswith("no caption: its caption file empty.txt")
    assert [p for p, _ in ds.notes] == [str(root / "latin.txt")]
    assert "not UTF-8" in ds.notes[0][1]


def test_undecodable_captioned_image_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    _png(root / "ok.png")
    (root / "ok.txt").write_text("fine")
    (root / "bad.png").write_bytes(b"not a png")
    (root / "bad.txt").write_text("a caption of an unreadable image")
    ds = _paired(root, tmp_path)
    assert ds.files == ["ok.png"]
    assert [Path(p).name for p, _ in ds.skipped] == ["bad.png"]


def test_folder_without_pairs_names_the_folder_and_what_was_looked_for(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    _png(root / "a.png")
    _png(root / "b.png")
    (root / "notes.txt").write_text("not about any image")
    with pytest.raises(DatasetError) as e:
        _paired(root, tmp_path)
    msg = str(e.value)
    assert str(root) in msg and "a.txt" not in msg
    assert "cat_01.txt" in msg and "captions.csv" in msg and "2 images, 1 .txt file" in msg
    (root / "a.txt").write_text("")
    with pytest.raises(DatasetError, match="empty caption"):
        _paired(root, tmp_path)
    text = tmp_path / "text"
    text.mkdir()
    (text / "doc.txt").write_text("a text folder, no images")
    with pytest.raises(DatasetError, match="CLIP needs captioned images: no images found.*"
                                           "accepted:.*captions.csv"):
        _paired(text, tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        _paired(tmp_path / "missing", tmp_path)


def test_image_folder_with_text_files_loads_for_image_methods_as_before(tmp_path: Path
                                                                        ) -> None:
    root = tmp_path / "mixed"
    _png(root / "a" / "x.png")
    (root / "a" / "x.txt").write_text("a caption")
    _png(root / "b" / "y.png")
    (root / "b" / "notes.txt").write_text("notes")
    assert dataset_modality(str(root)) == "image"
    ds = load_dataset(str(root), R, cache_dir=tmp_path / "cache")
    assert isinstance(ds, ImageDataset) and ds.captions is None
    assert ds.files == ["a/x.png", "b/y.png"] and not ds.skipped
    paired = _paired(root, tmp_path)  # the same cache entry's images
    assert paired.from_cache and paired.files == ["a/x.png"]
    assert torch.equal(paired.images[0], ds.images[0])


def test_has_captions(tmp_path: Path) -> None:
    assert has_captions("shapes")
    assert not has_captions("digits") and not has_captions("pydocs") and not has_captions("")
    side = tmp_path / "side"
    _png(side / "deep" / "a.png")
    (side / "deep" / "a.txt").write_text("x")
    assert has_captions(str(side))
    csv = tmp_path / "csv"
    _png(csv / "a.png")
    (csv / "captions.csv").write_text("a.png,x\n")
    assert has_captions(str(csv))
    plain = tmp_path / "plain"
    _png(plain / "a.png")
    (plain / "b.txt").write_text("x")
    (plain / "sub").mkdir()
    (plain / "sub" / "a.txt").write_text("not beside a.png")
    assert not has_captions(str(plain))
    assert not has_captions(str(tmp_path / "missing"))


# --------------------------------------------------------------------------- Pairs


def _pairs(n: int = 10) -> Pairs:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    tokens = torch.randint(4, 260, (n, 5), generator=g)
    return Pairs(images, tokens)


def test_pairs_index_like_a_tensor() -> None:
    p = _pairs()
    assert p.shape == (10, 3, 8, 8) and p.shape[0] == len(p) == 10 and p.shape[-1] == 8
    idx = torch.tensor([3, 1, 7])
    q = p[idx]
    assert isinstance(q, Pairs) and len(q) == 3
    assert torch.equal(q.images, p.images[idx]) and torch.equal(q.tokens, p.tokens[idx])
    s = p[2:6]
    assert torch.equal(s.images, p.images[2:6]) and torch.equal(s.tokens, p.tokens[2:6])
    mask = torch.arange(10) % 2 == 0
    assert torch.equal(p[mask].tokens, p.tokens[mask])
    assert torch.equal(p[[0, 9]].images, p.images[[0, 9]])
    for bad in (0, torch.tensor(3)):
        with pytest.raises(TypeError, match="batch"):
            p[bad]  # type: ignore[index]
    with pytest.raises(ValueError, match="10 images and 9 token rows"):
        Pairs(p.images, p.tokens[:9])
    assert "Pairs(images=(10, 3, 8, 8)" in repr(p)


def test_pairs_move_split_and_count_bytes() -> None:
    p = _pairs()
    moved = p.to(torch.device("cpu"), non_blocking=True)
    assert isinstance(moved, Pairs) and moved.device == torch.device("cpu") and not p.is_cuda
    assert torch.equal(p.cpu().tokens, p.tokens)
    assert p.numel() * p.element_size() == 10 * 3 * 8 * 8 * 1 + 10 * 5 * 8
    parts = p.tensor_split(3)
    assert [len(x) for x in parts] == [4, 3, 3]
    assert torch.equal(Pairs.cat(parts).tokens, p.tokens)
    assert [len(x) for x in p.tensor_split(12)].count(0) == 2  # more ranks than pairs
    chunks = p.split(4)
    assert [len(x) for x in chunks] == [4, 4, 2]
    assert torch.equal(chunks[2].images, p.images[8:])
    t = Pairs(p.images.transpose(2, 3), p.tokens.t().contiguous().t())
    c = t.contiguous()
    assert c.images.is_contiguous() and c.tokens.is_contiguous()
    assert torch.equal(c.images, t.images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pairs_on_cuda() -> None:
    p = _pairs()
    pinned = p.pin_memory()
    assert pinned.is_pinned()
    g = pinned.to("cuda", non_blocking=True)
    assert g.is_cuda and g.tokens.is_cuda and g.device.type == "cuda"
    idx = torch.tensor([1, 2]).cuda()
    assert torch.equal(g[idx].tokens.cpu(), p.tokens[1:3])
    assert torch.equal(p[idx].images, p.images[1:3])  # a CUDA index into CPU pairs


class _PairProbe(nn.Module):
    """A stand-in image-text method: features from both halves of a batch of pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.seen: list[int] = []

    def eval_inputs(self, batch: Pairs, resolution: int) -> Pairs:
        assert isinstance(batch, Pairs) and batch.shape[-1] == resolution
        self.seen.append(len(batch))
        return batch

    def embed(self, x: Pairs) -> torch.Tensor:
        img = x.images.float().mean((2, 3)) / 255
        txt = x.tokens.float().mean(1, keepdim=True) / 260
        return torch.cat([img, txt], 1)

    def project(self, f: torch.Tensor) -> torch.Tensor:
        return self.lin(f)

    def train_augment(self) -> None:
        return None

    def preview(self, batch: Pairs, gen: torch.Generator) -> None:
        assert isinstance(batch, Pairs)
        return None

    def monitor_metrics(self, inputs: Pairs, labels: torch.Tensor | None,
                        projections: torch.Tensor | None = None,
                        text_projections: torch.Tensor | None = None) -> dict[str, float]:
        assert isinstance(inputs, Pairs)
        return {}

    def text_projections(self, inputs: Pairs) -> None:
        assert isinstance(inputs, Pairs)
        return None


def test_pairs_go_through_the_monitor_and_feature_extraction(tmp_path: Path) -> None:
    ds = load_paired(DataConfig(shapes_count=120, resolution=R), cache_dir=tmp_path)
    cfg = default_config("simclr")
    cfg.set("data.resolution", R)
    cfg.set("monitor.monitor_size", 50)
    from engine.monitoring import monitor_indices

    idx = monitor_indices(len(ds), cfg)
    mon = Monitor(cfg, ds.inputs[idx], ds.labels[idx], torch.device("cpu"))
    model = _PairProbe()
    report, snap = mon.measure(model, step=0, epoch=0.0, baseline=True)
    assert report.dim == 3 and snap.features.shape == (50, 4)
    assert report.knn_accuracy is not None
    assert mon.preview(model, 0) is None
    ms = monitor_set(ds, idx)
    assert ms.texts == tuple(ds.captions[i] for i in idx.tolist())
    assert ms.thumbnails is not None and ms.thumbnails.shape == (50, R, R, 3)
    feats = extract_features(model, ds.inputs, "cpu", batch=32, resolution=R)
    assert feats.shape == (120, 4) and model.seen[-4:] == [32, 32, 32, 24]
    calibrate_batchnorm(model, mon.inputs, torch.device("cpu"), R)  # no BN: a no-op
    # the trainer's batch path: cut by an index tensor, sized by bytes
    inputs = ds.inputs
    batch = inputs[torch.randperm(len(ds))[:16]]
    assert isinstance(batch, Pairs) and batch.shape[0] == 16 and not inputs.is_cuda
    assert inputs.numel() * inputs.element_size() == (ds.images.numel()
                                                      + ds.tokens.numel() * 8)
