import math

import pytest
import torch

from semirest.core.train.augment import (KnnAugmenter, choose_neighbour, knn_noise, knn_residuals,
                                         pcr_dropout, residual)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_choose_neighbour_frequencies():
    idx = choose_neighbour((200_000,), 0.5, 0.8, _gen(1))
    freq = torch.bincount(idx, minlength=3).float() / idx.numel()
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.005)


def test_choose_neighbour_thresholds_exact():
    # tau <= a1 -> 0, a1 < tau <= a2 -> 1, tau > a2 -> 2: with a1 = a2 = 1 everything is the 1st,
    # with a1 = a2 = 0 everything the 3rd, with a1 = 0, a2 = 1 everything the 2nd.
    assert (choose_neighbour((1000,), 1.0, 1.0, _gen()) == 0).all()
    assert (choose_neighbour((1000,), 0.0, 0.0, _gen()) == 2).all()
    assert (choose_neighbour((1000,), 0.0, 1.0, _gen()) == 1).all()


def test_knn_residuals_without_noise_is_exact_squared_difference():
    torch.manual_seed(0)
    q = torch.randn(50, 4, 6)
    nb = torch.randn(50, 4, 3, 6)
    out = knn_residuals(q, nb, noise=False, generator=_gen(3))
    idx = choose_neighbour((50, 4), 0.5, 0.8, _gen(3))  # the same draw
    for n in range(50):
        for i in range(4):
            diff = q[n, i] - nb[n, i, idx[n, i]]
            assert torch.equal(out[n, i], diff * diff)
    assert set(idx.unique().tolist()) == {0, 1, 2}
    out_abs = knn_residuals(q, nb, mode="abs", noise=False, generator=_gen(3))
    assert torch.allclose(out_abs, out.sqrt(), atol=1e-6)


def test_knn_residual_selection_frequencies_through_values():
    # neighbour k is at distance k+1 from the query -> squared residual 1, 4, 9 identifies the choice
    q = torch.zeros(100_000, 1)
    nb = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1).expand(100_000, 3, 1)
    out = knn_residuals(q, nb, noise=False, generator=_gen(5)).squeeze(-1)
    freq = torch.stack([(out == v).float().mean() for v in (1.0, 4.0, 9.0)])
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.006)


def test_noise_is_per_element_and_bounded():
    d = knn_noise((20_000, 8), generator=_gen(7))
    assert d.min() >= math.exp(-0.223) - 1e-6 and d.max() <= math.exp(0.223) + 1e-6
    z = d.log()
    assert abs(z.mean().item()) < 0.01
    # clamped N(0, 0.2): P(|z| = 0.223) = P(|N| > 1.115 sigma) ~ 0.265
    at_clip = (z.abs() > 0.2229).float().mean().item()
    assert 0.24 < at_clip < 0.29
    # different elements of a token get different noise
    assert (d[:, 0] != d[:, 1]).float().mean() > 0.6
    # the noise multiplies the chosen residual element-wise
    q = torch.zeros(1000, 8)
    nb = torch.ones(1000, 3, 8)
    out = knn_residuals(q, nb, generator=_gen(2))
    assert out.min() >= math.exp(-0.223) - 1e-6 and out.max() <= math.exp(0.223) + 1e-6
    assert out.std() > 0.05


def test_deterministic_with_generator():
    q, nb = torch.randn(5, 5, 4), torch.randn(5, 5, 3, 4)
    assert torch.equal(knn_residuals(q, nb, generator=_gen(9)), knn_residuals(q, nb, generator=_gen(9)))
    assert not torch.equal(knn_residuals(q, nb, generator=_gen(9)), knn_residuals(q, nb, generator=_gen(10)))


def test_residual_modes():
    assert residual(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0])).tolist() == [1.0, 9.0]
    assert residual(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0]), "abs").tolist() == [1.0, 3.0]
    with pytest.raises(ValueError):
        residual(torch.zeros(1), torch.zeros(1), "cube")


def test_pcr_dropout_zeroes_whole_tokens_with_rate_alpha():
    t = torch.rand(8, 32, 32, 5) + 0.1
    out = pcr_dropout(t, 0.25, _gen(4))
    zero = (out == 0).all(-1)
    assert ((out == 0).any(-1) == zero).all()            # a token is zeroed entirely or not at all
    assert abs(zero.float().mean().item() - 0.25) < 0.02
    assert torch.equal(out[~zero], t[~zero])             # kept tokens unchanged (no rescaling)
    assert torch.equal(pcr_dropout(t, 0.0, _gen(4)), t)
    assert torch.equal(pcr_dropout(t, 0.25, _gen(4)), out)


def test_knn_augmenter_callable_tokenises():
    q, nb = torch.randn(2, 4, 6, 3), torch.randn(2, 4, 6, 3, 3)
    aug = KnnAugmenter(rho=2, scale=2.0, noise=False)
    out = aug((q, nb), _gen(0))
    assert out.shape == (2, 2, 3, 12)
    ref = knn_residuals(q, nb, noise=False, generator=_gen(0)) / 2.0
    assert torch.allclose(out[0, 0, 0, :3], ref[0, 0, 0])


def test_scale_residual_divides_by_the_global_scale():
    from semirest.core.memory.bank import scale_residual

    r = torch.tensor([0.0, 2.0, 20.0, 2000.0])
    torch.testing.assert_close(scale_residual(r, 2.0), torch.tensor([0.0, 1.0, 10.0, 1000.0]))
    assert scale_residual(r, 1.0) is r
