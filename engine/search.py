"""Search a saved image-text run by a typed sentence, with no training going on.

While a run trains, :meth:`engine.train.Trainer.request_query` ranks the monitor images
between steps. Once it has finished (or when a run folder is reopened) the same answer
comes from the run folder: the trained model from ``checkpoints/last.pt`` embeds the
sentence, and the latest embedding snapshot holds the monitor images' joint-space
embeddings (a CLIP run's ``projections``), so nothing is loaded or embedded again but the
sentence. Expected problems (an empty query, no checkpoint, a method without a text
tower) come back as a :class:`~engine.events.QueryResult` with a ``message``, never as
an exception, so a window can show them as they are.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import checkpoint as ckpt_io
from engine.errors import ConfigError, UserInputError
from engine.events import EmbeddingSnapshot, QueryResult
from engine.presets import load_toml
from engine.retrieval import rank_by_similarity
from engine.runs import TOKENIZER_FILE, RunFolder

#: monitor images a query returns (as many as the live search's)
SEARCH_RESULTS = 12

# One loaded model, kept for the next query of the same run: typing several sentences
# should not rebuild the model each time. Keyed on the checkpoint's identity, so a run
# resumed and trained further is loaded again.
_cache_lock = threading.Lock()
_cache: dict[str, Any] = {}


def search_run(run_dir: str | Path, text: str, k: int = SEARCH_RESULTS,
               device: str | torch.device = "cpu") -> QueryResult:
    """The ``k`` monitor images of a saved run that ``text`` matches best.

    ``indices`` are positions in the run's monitor set (``snapshots/monitor_set.npz``),
    best first, with their cosine similarities; ``step`` is the embedding snapshot's.
    """
    if not text.strip():
        return QueryResult(0, text, message="Type a sentence to search for.")
    run = RunFolder(run_dir)
    if not run.config_path.is_file():
        return QueryResult(0, text, message=f"{run.path} is not a run folder (it has no "
                           "config.toml).")
    try:
        cfg = load_toml(run.config_path)
    except ConfigError as e:
        return QueryResult(0, text, message=f"Cannot read the run's config: {e}")
    if not run.last_checkpoint.is_file():
        return QueryResult(0, text, message=f"Run {run.id} has no checkpoint yet: there is "
                           "no trained model to search with.")
    snap = latest_embedding(run)
    if snap is None:
        return QueryResult(0, text, message=f"Run {run.id} has no embedding snapshot: its "
                           "first monitor step was never measured.")
    try:
        model = _model(run, cfg, torch.device(device))
    except UserInputError as e:
        return QueryResult(snap.step, text, message=f"Cannot load the run's model: {e}")
    with torch.no_grad():
        query = model.embed_query(text)
    if query is None:
        return QueryResult(snap.step, text, message=f"{cfg.method_name} has no text tower: "
                           "only image-text methods (clip) answer queries.")
    items = torch.from_numpy(np.asarray(snap.projections, dtype=np.float32))
    if items.ndim != 2 or items.shape[1] != query.numel():
        return QueryResult(snap.step, text, message="The run's embedding snapshot does not "
                           "match its model (a different joint width).")
    idx, scores = rank_by_similarity(query, items, k)
    return QueryResult(snap.step, text, tuple(idx.tolist()), tuple(scores.tolist()))


def latest_embedding(run: RunFolder) -> EmbeddingSnapshot | None:
    """The newest readable ``embedding_<step>.npz`` (only that one is read)."""
    for path in sorted(run.snapshots_dir.glob("embedding_*.npz"), reverse=True):
        try:
            with np.load(path, allow_pickle=False) as z:
                return EmbeddingSnapshot.from_arrays({k: z[k] for k in z.files})
        except (OSError, ValueError, KeyError):
            continue
    return None


def _model(run: RunFolder, cfg: Any, device: torch.device) -> Any:
    """The run's trained model with its tokenizer, from the cache when unchanged."""
    stat = run.last_checkpoint.stat()
    key = f"{run.path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{device}"
    with _cache_lock:
        if _cache.get("key") == key:
            return _cache["model"]
        model, _, _ = ckpt_io.load_run_model(run, cfg, device)
        vocab = run.path / TOKENIZER_FILE
        if vocab.is_file() and hasattr(model, "tokenizer"):
            from engine.data.tokens import tokenizer_from_dict

            try:
                tok = tokenizer_from_dict(json.loads(vocab.read_text("utf-8")))
            except (OSError, ValueError, KeyError) as e:
                raise UserInputError(f"cannot read {vocab}: {e}") from None
            setattr(model, "tokenizer", tok)  # noqa: B010 - a plain attribute of CLIP's
        _cache.update(key=key, model=model)
        return model
