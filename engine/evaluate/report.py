"""An evaluation as a table: the rows the GUI shows and the text the CLI prints."""

from __future__ import annotations

from typing import Any

#: what one dataset item is, by the dataset's modality
_ITEMS = {"text": "text samples", "paired": "captioned images"}


def table_rows(ev: dict[str, Any]) -> list[tuple[str, str, str, str, float | None]]:
    """(protocol, trained, random init, difference, seconds) per line, as text."""
    s = ev["settings"]
    rows: list[tuple[str, str, str, str, float | None]] = []

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def diff(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{100 * (a - b):+.1f} pt"

    for p, r in ev["results"].items():
        tr, rnd, secs = r.get("trained", {}), r.get("random_init", {}), r.get("seconds")
        if p == "retrieval":
            n = tr.get("pairs", rnd.get("pairs"))
            for way, arrow in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
                for k in (1, 5, 10):
                    key = f"{way}_r{k}"
                    if key not in tr and key not in rnd:
                        continue
                    chance = tr.get(f"recall_chance_r{k}", rnd.get(f"recall_chance_r{k}"))
                    a, b = tr.get(key), rnd.get(key)
                    rows.append((f"{arrow} recall@{k} ({n} val pairs; chance "
                                 f"{_share(chance)})", pct(a), pct(b), diff(a, b), secs))
                    secs = None
            continue
        if p == "fewshot":
            for n in s["fewshot_shots"]:
                a, b = tr.get(str(n), {}), rnd.get(str(n), {})

                def ms(d: dict[str, Any]) -> str:
                    if d.get("mean") is None:
                        return "-"
                    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}%"

                rows.append((f"few-shot {n}-shot ({s['fewshot_draws']} draws)", ms(a), ms(b),
                             diff(a.get("mean"), b.get("mean")), secs))
                secs = None
            continue
        if p == "knn":
            how = "leave-one-out" if s["knn_leave_one_out"] else "val"
            name = f"weighted kNN (k={s['knn_k']}, T={s['knn_temperature']:g}, {how})"
        elif p == "linear":
            name = "linear probe (val top-1)"
        elif p == "zeroshot":
            t = tr.get("templates", rnd.get("templates", "?"))
            chance = tr.get("chance", rnd.get("chance"))
            name = (f"zero-shot from prompts ({t} template{'' if t == 1 else 's'}, val "
                    f"top-1; chance {_share(chance)})")
        else:
            name = f"fine-tune ({s['finetune_steps']} steps, val top-1)"
        a, b = tr.get("accuracy"), rnd.get("accuracy")
        rows.append((name, pct(a), pct(b), diff(a, b), secs))
    held = ev.get("heldout") or {}
    tr, rnd = held.get("trained", {}), held.get("random_init", {})
    for key in tr:
        a, b = tr.get(key), rnd.get(key)
        label = "held-out " + key.removeprefix("heldout_").replace("_", " ")
        if "accuracy" in key:
            rows.append((label, pct(a), pct(b), diff(a, b), None))
        else:
            num = "-" if a is None else f"{a:.3f}"
            ref = "-" if b is None else f"{b:.3f}"
            d = "-" if a is None or b is None else f"{a - b:+.3f}"
            rows.append((label, num, ref, d, None))
    return rows


def _share(x: float | None) -> str:
    """A chance level as a percentage, with two significant digits below 1 % (k / N of
    a thousand pairs is 0.1 %)."""
    if x is None:
        return "-"
    return f"{100 * x:.2g}%" if x < 0.01 else f"{100 * x:.1f}%"


def format_table(ev: dict[str, Any]) -> str:
    """The evaluation as a plain-text table (what ``python -m engine eval`` prints)."""
    sp = ev["split"]
    head = (f"{ev.get('run_id', 'model')}: {ev.get('method', '?')} on {ev['dataset']}"
            + (f", step {ev['checkpoint_step']}" if "checkpoint_step" in ev else "")
            + f"; {ev['n_images']} "
            f"{_ITEMS.get(ev.get('modality', 'image'), 'images')}, "
            f"{len(ev['classes'])} classes, split "
            f"{sp['train']} train / {sp['val']} val (stratified, seed {sp['seed']}); "
            f"majority class {100 * ev['chance']:.1f}% of val")
    rows = table_rows(ev)
    w = max([len(r[0]) for r in rows] + [8])
    lines = [head, f"{'protocol':<{w}}  {'trained':>14}  {'random init':>14}  "
             f"{'difference':>10}  {'time':>7}"]
    for name, a, b, d, secs in rows:
        t = "" if secs is None else f"{secs:.1f}s"
        lines.append(f"{name:<{w}}  {a:>14}  {b:>14}  {d:>10}  {t:>7}")
    lines.append(f"(feature extraction {ev['feature_seconds']:.1f}s, device {ev['device']})")
    return "\n".join(lines)
