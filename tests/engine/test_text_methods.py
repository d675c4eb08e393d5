"""The text methods (GPT, MLM with SOP / NSP, SimCSE) and their encoder: losses by hand,
BERT's masking rule measured, the attention masks proven, sentence pairs built right, and
each method trained through the real Trainer on a small corpus written here (no built-in
text set needed)."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from engine import events as ev
from engine.config import Config
from engine.data.tokens import CLS, MASK, PAD, SEP, ByteTokenizer, TextDataset
from engine.losses import causal_lm_loss, masked_lm_loss, simcse_loss
from engine.methods._text import FIRST_REAL, TextMethod, vocab_size
from engine.methods.mlm import mask_tokens, sentence_pairs
from engine.model import build_model
from engine.presets import default_config
from engine.registry import get_method_info
from engine.text_encoder import TextEncoder, mean_pool, sinusoidal_positions
from engine.train import Trainer

CPU = torch.device("cpu")
TOK = ByteTokenizer()
V = TOK.vocab_size

# ------------------------------------------------------------------------ a tiny corpus

ANIMALS = ["the cat", "a dog", "the old horse", "a small bird", "the brown fox", "my rabbit",
           "the young goat", "a lazy cow"]
ANIMAL_DOING = ["sleeps in the sun", "runs across the field", "eats fresh grass",
                "jumps over the fence", "drinks from the river", "hides under the tree"]
MACHINES = ["the server", "a compiler", "the old laptop", "my phone", "the printer",
            "a database", "the network card", "the build system"]
MACHINE_DOING = ["crashes after midnight", "compiles the code", "stores every record",
                 "prints the report", "sends the packets", "restarts without warning"]
WHEN = ["every morning", "at night", "on sunday", "after lunch", "in the winter",
        "before the rain"]


def sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` short English sentences about animals (label 0) or machines (label 1)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        subj, verb = (ANIMALS, ANIMAL_DOING) if label == 0 else (MACHINES, MACHINE_DOING)
        texts.append(f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(WHEN)}.")
        labels.append(label)
    return texts, labels


def encode(texts: list[str], length: int) -> torch.Tensor:
    rows = torch.full((len(texts), length), PAD, dtype=torch.int64)
    for i, t in enumerate(texts):
        ids = TOK.encode(t)[:length]
        rows[i, : len(ids)] = torch.tensor(ids)
    return rows


def corpus(n: int = 240, length: int = 48, heldout: int = 48, seed: int = 0) -> TextDataset:
    texts, labels = sentences(n + heldout, seed)
    return TextDataset(
        name="sentences", inputs=encode(texts[:n], length),
        labels=torch.tensor(labels[:n]), class_names=["animals", "machines"],
        files=[f"s{i}" for i in range(n)], texts=texts[:n], tokenizer=TOK,
        heldout=encode(texts[n:], length), sample="paragraph")


def tiny(method: str, length: int = 48, **overrides: object) -> Config:
    """A text method at a tiny size: 2 blocks of width 32."""
    cfg = default_config(method)
    for k, v in {"data.seq_len": length, "method.dim": 32, "method.depth": 2,
                 "method.heads": 2, "optim.batch_size": 16, "optim.warmup_steps": 1,
                 "optim.max_steps": 4, "monitor.every_steps": 2, "monitor.monitor_size": 40,
                 **overrides}.items():
        cfg.set(k, v)
    return cfg


# --------------------------------------------------------------------------- losses


def test_causal_lm_loss_is_the_shifted_cross_entropy_with_pad_targets_ignored():
    ids = torch.tensor([[4, 5, 6, PAD], [6, 4, PAD, PAD]])
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(0))

    def nll(b: int, t: int, target: int) -> float:
        row = logits[b, t].tolist()
        return -(row[target] - math.log(sum(math.exp(x) for x in row)))

    # targets: row 0 predicts 5 from position 0 and 6 from 1; row 1 predicts 4 from 0;
    # the PAD targets (row 0 position 2, row 1 positions 1 and 2) do not count
    want = (nll(0, 0, 5) + nll(0, 1, 6) + nll(1, 0, 4)) / 3
    assert float(causal_lm_loss(logits, ids)) == pytest.approx(want, rel=1e-5)
    assert float(causal_lm_loss(logits, ids, reduction="sum")) == pytest.approx(3 * want,
                                                                                rel=1e-5)
    uniform = torch.zeros(2, 4, 7)
    assert float(causal_lm_loss(uniform, ids)) == pytest.approx(math.log(7), rel=1e-6)


def test_masked_lm_loss_counts_only_the_chosen_positions():
    g = torch.Generator().manual_seed(1)
    targets = torch.tensor([[4, 5, 6, 7]])
    chosen = torch.tensor([[False, True, False, True]])
    logits = torch.randn(1, 4, 9, generator=g, requires_grad=True)
    loss = masked_lm_loss(logits, targets, chosen)
    lp = F.log_softmax(logits.detach(), -1)
    want = -(float(lp[0, 1, 5]) + float(lp[0, 3, 7])) / 2
    assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 2].abs().sum() == 0
    assert logits.grad[0, 1].abs().sum() > 0
    other = logits.detach().clone()
    other[0, 0] += 5.0  # an unchosen position changes nothing
    assert float(masked_lm_loss(other, targets, chosen)) == pytest.approx(want, rel=1e-5)


def test_simcse_loss_matches_a_hand_computation_and_its_shards_average_to_it():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    t = 0.5
    # cosines: a0.k0 = 1, a0.k1 = 1/sqrt2, a1.k0 = 0, a1.k1 = 1/sqrt2
    r = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(r / t)))
    l1 = -math.log(math.exp(r / t) / (math.exp(0 / t) + math.exp(r / t)))
    loss, pos, neg = simcse_loss(z1, z2, 0, t)
    assert float(loss) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    assert float(pos) == pytest.approx((1 + r) / 2, rel=1e-6)
    assert float(neg) == pytest.approx((r + 0) / 2, rel=1e-6)

    g = torch.Generator().manual_seed(2)
    a = torch.randn(8, 16, generator=g, requires_grad=True)
    b = torch.randn(8, 16, generator=g, requires_grad=True)
    whole = simcse_loss(a, b, 0, 0.05)[0]
    grads = torch.autograd.grad(whole, [a, b])
    parts = torch.stack([simcse_loss(a[i : i + 4], b, i, 0.05)[0] for i in (0, 4)]).mean()
    assert float(parts.detach()) == pytest.approx(float(whole.detach()), rel=1e-6)
    for g_part, g_whole in zip(torch.autograd.grad(parts, [a, b]), grads, strict=True):
        torch.testing.assert_close(g_part, g_whole)


# --------------------------------------------------------------------------- masking


def test_bert_masking_chooses_15_percent_of_real_tokens_and_splits_them_80_10_10():
    g = torch.Generator().manual_seed(0)
    rows, length = 400, 40
    ids = torch.randint(FIRST_REAL, V, (rows, length), generator=g)
    n_real = torch.randint(2, length + 1, (rows,), generator=g)
    ids[torch.arange(length)[None, :] >= n_real[:, None]] = PAD
    ids[:, 0] = CLS  # specials inside the rows are never chosen either
    ids[torch.arange(rows), (n_real - 1).clamp(min=1)] = SEP
    cand = ids >= FIRST_REAL
    chosen_total = masked = randomised = kept = 0
    hits = torch.zeros(rows, length)
    for _ in range(25):
        out, chosen = mask_tokens(ids, g, 0.15, 0.8, 0.1, V)
        assert not (chosen & ~cand).any()  # never PAD, CLS or SEP
        assert torch.equal(out[~chosen], ids[~chosen])  # unchosen tokens untouched
        k = (cand.sum(1).float() * 0.15).round().long().clamp(min=1)
        k = torch.minimum(k, cand.sum(1))
        assert torch.equal(chosen.sum(1), k)  # BERT's count per row
        chosen_total += int(chosen.sum())
        masked += int((out[chosen] == MASK).sum())
        randomised += int(((out != ids) & (out != MASK) & chosen).sum())
        kept += int(((out == ids) & chosen).sum())
        assert int(out[chosen & (out != MASK)].min()) >= FIRST_REAL  # random ids are real
        hits += chosen.float()
    assert chosen_total > 10_000
    assert masked / chosen_total == pytest.approx(0.8, abs=0.015)
    # a random token equals the original with probability 1/256
    assert randomised / chosen_total == pytest.approx(0.1 * 255 / 256, abs=0.01)
    assert kept / chosen_total == pytest.approx(0.1 + 0.1 / 256, abs=0.01)
    overall = chosen_total / (25 * int(cand.sum()))
    assert 0.14 < overall < 0.17  # about 15 % of the real tokens
    # every real position is equally likely: long rows' first and last halves alike
    long_rows = cand.sum(1) >= 30
    first = hits[long_rows, 1:15].mean()
    last = hits[long_rows, 15:29].mean()
    assert float(first) == pytest.approx(float(last), rel=0.15)


# --------------------------------------------------------------------- attention masks


def test_causal_mask_hides_later_tokens_and_bidirectional_mode_does_not():
    torch.manual_seed(0)
    enc = TextEncoder(V, 16, dim=32, depth=2, heads=4, dropout=0.0).eval()
    ids = torch.randint(FIRST_REAL, V, (2, 12))
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] - FIRST_REAL + 1) % 256 + FIRST_REAL
    with torch.no_grad():
        a, b = enc(ids, causal=True), enc(changed, causal=True)
        torch.testing.assert_close(a[:, :7], b[:, :7])  # the past is blind to the change
        assert (a[:, 7:] - b[:, 7:]).abs().amax() > 1e-3
        c, d = enc(ids), enc(changed)
        assert (c[:, :7] - d[:, :7]).abs().amax(-1).min() > 1e-4  # every earlier token sees it
    # and GPT's logits follow its causal states
    model, _ = build_model(tiny("gpt", 16, **{"method.dropout": 0.0}), CPU)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.logits(ids)[:, :7], model.logits(changed)[:, :7])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
@pytest.mark.parametrize("causal", [False, True])
def test_appending_pad_does_not_change_the_real_tokens_states(positions, causal):
    torch.manual_seed(0)
    enc = TextEncoder(V, 24, dim=32, depth=2, heads=2, dropout=0.0,
                      positions=positions).eval()
    real = torch.randint(FIRST_REAL, V, (3, 9))
    short = torch.cat([real, torch.full((3, 1), PAD)], 1)
    long = torch.cat([real, torch.full((3, 15), PAD)], 1)
    with torch.no_grad():
        s, t = enc(short, causal=causal), enc(long, causal=causal)
        assert torch.isfinite(t).all()
        torch.testing.assert_close(s[:, :9], t[:, :9], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mean_pool(s, short), mean_pool(t, long), atol=1e-5,
                                   rtol=1e-5)


def test_sinusoidal_and_learned_positions_both_train():
    pe = sinusoidal_positions(4, 6)
    assert float(pe[1, 0]) == pytest.approx(math.sin(1.0))
    assert float(pe[1, 1]) == pytest.approx(math.cos(1.0))
    assert float(pe[2, 2]) == pytest.approx(math.sin(2 / 10000 ** (2 / 6)), rel=1e-6)
    ds = corpus(64, 32, heldout=0)
    for positions in ("learned", "sinusoidal"):
        torch.manual_seed(0)
        model, _ = build_model(tiny("gpt", 32, **{"method.positions": positions}), CPU)
        has_table = any("position" in n for n, _ in model.named_parameters())
        assert has_table == (positions == "learned")
        assert not any("pos_table" in k for k in model.state_dict())  # rebuilt, not saved
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        losses = []
        for i in range(15):
            out = model.training_step(ds.inputs[(i % 4) * 16 : (i % 4 + 1) * 16], None, g)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(float(out.loss.detach()))
        assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], positions


# ----------------------------------------------------------------- sentence pairs


def _rows(rows: int, length: int, lengths: torch.Tensor) -> torch.Tensor:
    """Rows whose tokens tell where they came from: row r, position p holds a distinct id."""
    ids = torch.full((rows, length), PAD)
    for r in range(rows):
        n = int(lengths[r])
        ids[r, :n] = FIRST_REAL + (r * 7 + torch.arange(n)) % 256
    return ids


def _parts(row: torch.Tensor, seg: torch.Tensor) -> tuple[list[int], list[int]]:
    """A and B of one ``[CLS] A [SEP] B [SEP]`` row, checking the layout and segments."""
    r = row.tolist()
    assert r[0] == CLS
    s1 = r.index(SEP)
    s2 = r.index(SEP, s1 + 1)
    assert all(x == PAD for x in r[s2 + 1 :])
    assert seg[: s1 + 1].eq(0).all() and seg[s1 + 1 : s2 + 1].eq(1).all()
    assert seg[s2 + 1 :].eq(0).all()
    return r[1:s1], r[s1 + 1 : s2]


def test_sop_pairs_are_the_row_split_in_two_and_swapped_half_the_time():
    g = torch.Generator().manual_seed(0)
    rows, length = 400, 40
    n = torch.randint(2, 30, (rows,), generator=g)  # short enough: nothing is cut
    ids = _rows(rows, length, n)
    pairs, seg, labels = sentence_pairs(ids, "sop", g)
    assert pairs.shape == ids.shape and seg.shape == ids.shape
    for i in range(rows):
        a, b = _parts(pairs[i], seg[i])
        real = ids[i, : int(n[i])].tolist()
        assert a and b
        if labels[i] == 1:  # swapped: B first
            assert b + a == real
            s = len(b)
        else:
            assert a + b == real
            s = len(a)
        k = int(n[i])
        assert max(1, k // 4) <= s <= max(max(1, k // 4), min(k - 1, 3 * k // 4))
    assert 0.44 < labels.float().mean() < 0.56


def test_nsp_pairs_take_another_rows_second_segment_half_the_time():
    g = torch.Generator().manual_seed(1)
    rows, length = 400, 40
    n = torch.randint(2, 30, (rows,), generator=g)
    ids = _rows(rows, length, n)
    pairs, seg, labels = sentence_pairs(ids, "nsp", g)
    for i in range(rows):
        a, b = _parts(pairs[i], seg[i])
        real = ids[i, : int(n[i])].tolist()
        assert real[: len(a)] == a  # A is always the row's own start
        if labels[i] == 1:  # is next
            assert a + b == real
        else:
            donors = [j for j in range(rows) if j != i
                      and ids[j, : int(n[j])].tolist()[-len(b):] == b]
            assert donors, "B must be the end of another row"
    assert 0.44 < labels.float().mean() < 0.56


def test_long_pairs_are_cut_to_fit_and_keep_the_junction():
    g = torch.Generator().manual_seed(2)
    length = 24
    ids = _rows(50, length, torch.full((50,), length))  # full rows: the pair must be cut
    pairs, seg, labels = sentence_pairs(ids, "sop", g)
    for i in range(50):
        a, b = _parts(pairs[i], seg[i])
        assert len(a) + len(b) == length - 3 and a and b
        real = ids[i].tolist()
        first, second = (b, a) if labels[i] == 1 else (a, b)
        # the first part (of the original order) ends where the second begins
        j = real.index(first[-1])
        assert real[j + 1 : j + 1 + len(second)] == second
        assert real[j - len(first) + 1 : j + 1] == first


# -------------------------------------------------------------------- methods, trainer


def test_registration_and_the_vocabulary_follows_the_tokenizer():
    for name, family in (("gpt", "generative"), ("mlm", "reconstruction"),
                         ("simcse", "contrastive")):
        info = get_method_info(name)
        assert info.modality == "text" and info.family == family and info.collapse_advice
        assert info.preset["data.dataset"] == "pydocs"
        assert issubclass(info.cls, TextMethod)
    cfg = default_config("gpt")
    assert vocab_size(cfg.data) == 260
    cfg.set("data.tokenizer", "bpe")
    cfg.set("data.bpe_vocab_size", 512)
    assert vocab_size(cfg.data) == 512
    model, name = build_model(cfg, CPU)
    assert name == "text_transformer" and model.backbone.token.num_embeddings == 512
    assert model.train_augment() is None and model.finetune_augment() is None
    x = torch.randint(FIRST_REAL, 512, (3, 20))
    assert model.eval_inputs(x, 32) is x
    assert model.embed(x).shape == (3, 128)
    # SimCSE's collapse switch is marked like the image methods'
    spec = default_config("simcse").spec("method.dropout")
    assert spec.collapse and "identical" in spec.collapse
    # MLM without a sentence task has no sentence head and no segment embeddings
    mlm, _ = build_model(default_config("mlm"), CPU)
    assert mlm.sentence_head is None and mlm.backbone.segment is None


@pytest.mark.parametrize("method, overrides", [
    ("mlm", {"method.sentence_task": "sop"}), ("mlm", {"method.sentence_task": "nsp"}),
    ("simcse", {"method.pooling": "cls"}), ("gpt", {"method.positions": "sinusoidal"})])
def test_every_parameter_gets_a_gradient_in_every_variant(method, overrides):
    """DDP's rule (tests/engine/test_distributed_train.py checks the defaults): the
    segment embeddings and the sentence head take part at every step when they exist."""
    model, _ = build_model(tiny(method, **overrides), CPU)
    x = corpus(16, 48, heldout=0).inputs
    model(x, model.train_augment(), torch.Generator().manual_seed(0)).loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_simcse_without_dropout_gives_identical_views():
    ds = corpus(32, 48, heldout=0)
    for dropout, identical in ((0.0, True), (0.1, False)):
        torch.manual_seed(0)
        model, _ = build_model(tiny("simcse", **{"method.dropout": dropout}), CPU)
        out = model.training_step(ds.inputs[:16], None, torch.Generator().manual_seed(0))
        pos = float(out.metrics["positive_similarity"])
        assert (pos == pytest.approx(1.0, abs=1e-6)) == identical, (dropout, pos)
        assert float(out.metrics["negative_similarity"]) < pos


def test_heldout_scores_are_one_fixed_draw():
    ds = corpus(64, 48)
    for task in ("none", "sop"):
        torch.manual_seed(0)
        model, _ = build_model(tiny("mlm", **{"method.sentence_task": task}), CPU)
        model.eval()
        with torch.no_grad():
            a = model.heldout_metrics(ds.heldout)
            b = model.heldout_metrics(ds.heldout)
        assert a == b
        assert 0 < a["heldout_majority_accuracy"] < 1
        assert ("heldout_sentence_accuracy" in a) == (task == "sop")


CASES = {
    "gpt": ("gpt", {}, {"bits_per_token"}, {"heldout_bits_per_token", "heldout_loss"}),
    "mlm": ("mlm", {}, {"masked_accuracy"},
            {"heldout_masked_accuracy", "heldout_majority_accuracy"}),
    "mlm_sop": ("mlm", {"method.sentence_task": "sop"},
                {"masked_accuracy", "sentence_accuracy"},
                {"heldout_masked_accuracy", "heldout_sentence_accuracy"}),
    "mlm_nsp": ("mlm", {"method.sentence_task": "nsp", "method.sentence_weight": 0.5},
                {"masked_accuracy", "sentence_accuracy"},
                {"heldout_masked_accuracy", "heldout_sentence_accuracy"}),
    "simcse": ("simcse", {}, {"positive_similarity", "negative_similarity"}, set()),
    "simcse_cls": ("simcse", {"method.pooling": "cls"}, {"positive_similarity"}, set()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_text_method_trains_through_the_trainer_with_heldout_scores(case, tmp_path):
    method, overrides, step_keys, heldout_keys = CASES[case]
    ds = corpus()
    events = list(Trainer(tiny(method, **overrides), tmp_path, dataset=ds).run())
    assert isinstance(events[-1], ev.Finished), getattr(events[-1], "message", events[-1])
    steps = [e for e in events if isinstance(e, ev.StepMetrics)]
    assert len(steps) == 4 and all(math.isfinite(e.loss) for e in steps)
    assert all(step_keys <= set(e.extra) for e in steps)
    reports = [e for e in events if isinstance(e, ev.MonitorReport)]
    assert [r.step for r in reports] == [0, 2, 4]
    for r in reports:
        assert heldout_keys <= set(r.extra), r.extra
        assert r.extra["unigram_bits"] == pytest.approx(ds.unigram_bits)
        assert r.knn_accuracy is not None and r.alignment is None
        assert all(math.isfinite(v) for v in r.extra.values())


def test_gpt_learns_context_within_a_hundred_steps():
    """Held-out bits per token fall clearly below the corpus's unigram entropy (what a
    model that ignores context reaches at best)."""
    ds = corpus(320, 48, heldout=64)
    torch.manual_seed(0)
    cfg = tiny("gpt", **{"method.dropout": 0.0, "optim.lr": 3e-3})
    model, _ = build_model(cfg, CPU)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(320, generator=g)
    for step in range(100):
        idx = order[(step * 32) % 320 : (step * 32) % 320 + 32]
        out = model.training_step(ds.inputs[idx], None, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        held = model.heldout_metrics(ds.heldout)["heldout_bits_per_token"]
    unigram = ds.unigram_bits
    assert held < unigram - 0.75, (held, unigram)


# -------------------------------------------------------------------------- previews


@pytest.mark.parametrize("case", ["gpt", "mlm_sop", "mlm_nsp"])
def test_text_previews_show_the_monitor_rows_as_text_with_fixed_draws(case, tmp_path):
    """The predictions panel's data: continuations of the monitor rows' own beginnings;
    masks with their true token and a top 5; segment pairs with true and predicted
    order. The same draws at every monitor step, so snapshots compare."""
    name, _, task = case.partition("_")
    cfg = tiny(name, **({"method.sentence_task": task} if task else {}))
    ds = corpus()
    snaps = [e for e in Trainer(cfg, tmp_path, dataset=ds).run()
             if isinstance(e, ev.PreviewSnapshot)]
    assert [s.step for s in snaps] == [0, 2, 4] and all(s.kind == "text" for s in snaps)
    items = snaps[-1].items
    from engine.monitoring import monitor_indices

    first = ds.texts[int(monitor_indices(len(ds), cfg)[0])]
    if name == "gpt":
        assert {i["type"] for i in items} == {"continuation"}
        assert first.startswith(items[0]["prompt"]) and len(items[0]["prompt"]) >= 10
        assert items[0]["greedy"] and items[0]["sampled"]
        return
    masked = [i for i in items if i["type"] == "masked"]
    order = [i for i in items if i["type"] == "order"]
    assert masked and order
    for item in masked:
        assert item["masks"]
        for m in item["masks"]:
            assert len(m["top5"]) == 5 and m["correct"] == (m["top5"][0] == m["true"])
            assert sorted(m["probs"], reverse=True) == m["probs"]
    expected = {"sop": {"in order", "swapped"}, "nsp": {"next", "random"}}[task]
    assert all(o["true"] in expected and o["predicted"] in expected and o["a"] and o["b"]
               for o in order)
    # the same masks and pairs at every step: only the predictions move
    assert [i["tokens"] for i in snaps[0].items if i["type"] == "masked"] == \
        [i["tokens"] for i in masked]
    assert [(o["a"], o["true"]) for o in snaps[0].items if o["type"] == "order"] == \
        [(o["a"], o["true"]) for o in order]
