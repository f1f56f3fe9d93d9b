"""Coreset selection equals textbook greedy k-center; the bank excludes a training image's own entries."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semirest.core.memory.bank import MemoryBank, residual
from semirest.core.memory.coreset import coverage_radius, greedy_coreset, greedy_coreset_reference, select_coreset


def _clustered(n=3000, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d)) * 3
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_greedy_matches_textbook_greedy(seed):
    x = _clustered(seed=seed)
    ref = greedy_coreset_reference(x, 300, start=7)
    # a small pool forces many rounds and fallbacks through the exactness argument
    fast = greedy_coreset(x, 300, start=7, pool_size=64, max_batch=32)
    assert fast.indices[0] == 7 and len(set(fast.indices.tolist())) == 300
    agree = np.mean(fast.indices == ref)
    assert agree > 0.97, f"only {agree:.3f} of the selections agree with textbook greedy"
    r_ref, r_fast = coverage_radius(x, ref), coverage_radius(x, fast.indices)
    assert r_fast == pytest.approx(r_ref, rel=1e-3)
    assert fast.radius == pytest.approx(r_fast, rel=1e-3)


def test_coreset_covers_better_than_random():
    x = _clustered(seed=2)
    sel = select_coreset(x, ratio=0.05, projection_dim=0, seed=0)
    rnd = np.random.default_rng(0).choice(len(x), len(sel.indices), replace=False)
    assert len(sel.indices) == 150
    assert coverage_radius(x, sel.indices) < 0.9 * coverage_radius(x, rnd)


def test_bank_excludes_own_image_and_sorts_by_distance():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((400, 8)).astype(np.float32)
    src = np.repeat(np.arange(4), 100)
    bank = MemoryBank(f, src)
    q = f[150:155] + 1e-3  # features of image 1
    plain = bank.search(q, k=3)
    assert (bank.source_ids[plain.indices[:, 0]] == 1).all()
    assert np.all(plain.distances[:, 0] < 0.01)
    excl = bank.search(q, k=3, exclude_source=1)
    assert not (bank.source_ids[excl.indices] == 1).any()
    assert np.all(np.diff(excl.distances, axis=1) >= 0)
    # the answer equals a brute-force search over the other images
    other = bank.features[bank.source_ids != 1]
    brute = np.sort(np.linalg.norm(q[:, None, :] - other[None], axis=2), axis=1)[:, :3]
    assert np.allclose(excl.distances, brute, atol=1e-4)


def test_bank_state_round_trip():
    f = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    bank = MemoryBank(f, np.arange(50) % 5)
    again = MemoryBank.from_state(bank.state())
    assert np.array_equal(again.features, bank.features) and np.array_equal(again.source_ids, bank.source_ids)


def test_residuals():
    a = torch.tensor([[1.0, -2.0, 3.0]])
    b = torch.tensor([[0.0, 1.0, 3.5]])
    assert torch.allclose(residual(a, b), torch.tensor([[1.0, 9.0, 0.25]]))
    assert torch.allclose(residual(a, b, "abs"), torch.tensor([[1.0, 3.0, 0.5]]))
    with pytest.raises(ValueError, match="residual mode must be one of"):
        residual(a, b, "cube")

