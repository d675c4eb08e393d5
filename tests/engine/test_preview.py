"""The preview contract: a method's ``preview`` becomes PreviewSnapshot events, saved in the
run folder at every monitor step and read back for reopening the run."""

from __future__ import annotations

import numpy as np
import torch

from engine import events as ev
from engine.augment import eval_transform, to_uint8
from engine.methods._base import Preview
from engine.methods.simclr import SimCLR
from engine.runs import RunFolder
from engine.train import Trainer
from tests.engine.conftest import small_config


def fake_preview(self, images, generator):
    """Reconstruction preview: the input with a random square masked, the output grey."""
    mask = torch.rand(images.shape[0], 1, 1, 1, generator=generator, device=images.device)
    masked = images.clone()
    masked[..., 8:16, 8:16] = (mask * 255).to(torch.uint8)
    return Preview("reconstruction", images, masked, torch.full_like(images, 128),
                   input_title="masked", output_title="grey")


def test_previews_are_streamed_and_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(SimCLR, "preview", fake_preview)
    cfg = small_config("simclr", 10)
    cfg.set("monitor.preview_count", 4)
    events = list(Trainer(cfg, tmp_path).run())
    snaps = [e for e in events if isinstance(e, ev.PreviewSnapshot)]
    assert [s.step for s in snaps] == [0, 5, 10]
    for s in snaps:
        assert s.originals.shape == (4, 32, 32, 3) and s.originals.dtype == np.uint8
        assert s.outputs is not None and (s.outputs == 128).all()
        assert s.input_title == "masked"
    # the same randomness at every call: snapshots compare like with like
    assert np.array_equal(snaps[0].inputs, snaps[-1].inputs)

    run = RunFolder(next(e.run_dir for e in events if isinstance(e, ev.Finished)))
    loaded = run.load_previews()
    assert [s.step for s in loaded] == [0, 5, 10]
    assert np.array_equal(loaded[1].inputs, snaps[1].inputs)
    assert loaded[1].output_title == "grey"
    run.truncate_previews(5)
    assert [s.step for s in run.load_previews()] == [0, 5]


def test_methods_without_preview_emit_none(tmp_path):
    events = list(Trainer(small_config("simclr", 5), tmp_path).run())
    assert not any(isinstance(e, ev.PreviewSnapshot) for e in events)


def test_to_uint8_inverts_eval_transform():
    img = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(to_uint8(eval_transform(img, 16)), img)
