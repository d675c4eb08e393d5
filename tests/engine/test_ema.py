import math

import pytest
import torch
from torch import nn

from engine.ema import MemoryQueue, cosine_momentum, ema_update, make_target


def test_ema_update_formula_and_frozen_target():
    online = nn.Linear(3, 2)
    target = make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o)


def test_ema_update_copies_buffers_and_refuses_a_mismatched_target():
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = make_target(online)
    online.train()
    online(torch.randn(8, 3) * 5 + 2)  # moves the online running statistics
    ema_update(target, online, 0.5)
    for tb, ob in zip(target.buffers(), online.buffers(), strict=True):
        assert torch.equal(tb, ob)
    with pytest.raises(ValueError, match="parameters"):
        ema_update(make_target(nn.Linear(3, 2)), online, 0.5)


def test_cosine_momentum_schedule():
    assert math.isclose(cosine_momentum(0.99, 0, 100), 0.99)
    assert math.isclose(cosine_momentum(0.99, 50, 100), 0.995)
    assert math.isclose(cosine_momentum(0.99, 100, 100), 1.0)


def test_queue_is_fifo_and_wraps():
    q = MemoryQueue(5, 2)
    for i in range(3):
        q.push(torch.full((2, 2), float(i)))
    # pushes 0,0 | 1,1 | 2,2 into 5 slots: the 6th key wraps to slot 0
    assert q.keys[:, 0].tolist() == [2.0, 0.0, 1.0, 1.0, 2.0]
    assert int(q.ptr) == 1
    q.push(torch.full((7, 2), 9.0))
    assert q.keys[:, 0].tolist() == [9.0] * 5
