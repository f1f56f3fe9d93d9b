import math

import pytest
import torch

from semirest.core.model.swin import ResidualSwin
from semirest.core.train.augment import KnnAugmenter
from semirest.core.labels.blocks import NORMAL, UNKNOWN
from semirest.core.train.resmixmatch import (ResMixMatchParams, guess_labels, linear_rampup, make_copies,
                                             mix_tokens, mixup, resmixmatch_loss, retensorize, sharpen,
                                             split_and_shuffle)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _tiny_model(in_dim=6):
    torch.manual_seed(0)
    return ResidualSwin(in_dim=in_dim, embed_dim=8, depth=2, num_heads=2, window_size=4, mlp_ratio=1.0,
                        drop_path=0.0, input_size=8)


def _labels(b=2, mu=8, seed=0):
    g = _gen(seed)
    lab = torch.full((b, mu, mu), NORMAL)
    lab[torch.rand(b, mu, mu, generator=g) < 0.3] = UNKNOWN
    return lab


def test_sharpen_known_answers():
    p = torch.tensor([0.0, 0.2, 0.5, 0.75, 1.0])
    got = sharpen(p, 0.5)
    expected = [0.0, 0.04 / (0.04 + 0.64), 0.5, 0.5625 / (0.5625 + 0.0625), 1.0]  # p^2 / (p^2 + (1-p)^2)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(sharpen(p, 1.0), p, atol=1e-6)
    t = 0.25
    assert sharpen(torch.tensor([0.6]), t).item() == pytest.approx(0.6**4 / (0.6**4 + 0.4**4), rel=1e-5)


def test_rampup_schedule():
    assert [linear_rampup(s, 5.0, 400) for s in (0, 200, 400, 1000)] == [0.0, 2.5, 5.0, 5.0]
    assert linear_rampup(100, 10.0, 400) == 2.5


def test_split_and_shuffle_pairs_x_then_u_with_a_shuffle_of_all():
    lab = torch.tensor([NORMAL, UNKNOWN, NORMAL, UNKNOWN, NORMAL, NORMAL])
    order, partner = split_and_shuffle(lab, _gen(1))
    assert order.tolist() == [0, 2, 4, 5, 1, 3]                       # X first, then U
    assert sorted(partner.tolist()) == list(range(6))                 # W is a shuffle of X u U
    with pytest.raises(ValueError):
        split_and_shuffle(torch.tensor([0, 1]), _gen())


def test_mixup_pairing_formula():
    x1, x2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    y1, y2 = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])
    lam = torch.tensor([0.2, 0.7])                                    # lambda' = 0.8, 0.7
    xm, ym = mixup(x1, x2, y1, y2, lam)
    assert torch.allclose(xm, torch.tensor([[0.8 * 1 + 0.2 * 10, 0.8 * 2 + 0.2 * 20],
                                            [0.7 * 3 + 0.3 * 30, 0.7 * 4 + 0.3 * 40]]))
    assert torch.allclose(ym, torch.tensor([0.2, 0.7]))


def test_retensorize_puts_tokens_back():
    vals = torch.arange(12.0).view(6, 2)
    pos = torch.tensor([3, 0, 5, 1, 4, 2])
    out = retensorize(vals, pos, (3, 2, 2))
    flat = out.reshape(6, 2)
    for k in range(6):
        assert torch.equal(flat[pos[k]], vals[k])
    with pytest.raises(ValueError):
        retensorize(vals, torch.tensor([0, 0, 1, 2, 3, 4]), (3, 2, 2))


def test_mix_tokens_identity_setup_returns_every_token_to_its_position():
    # Token features encode their own flat position; with lambda' = 1 nothing is mixed, so the
    # re-tensorised tensor must equal the input exactly.
    m, b, mu = 3, 2, 4
    n = m * b * mu * mu
    copies = torch.arange(n, dtype=torch.float32).view(m, b, mu, mu, 1).repeat(1, 1, 1, 1, 3)
    lab = _labels(b, mu).unsqueeze(0).expand(m, b, mu, mu)
    targets = torch.rand(m, b, mu, mu, generator=_gen(2))
    res = mix_tokens(copies, targets, lab, generator=_gen(3), lam=torch.ones(n))
    assert torch.equal(res.tokens, copies)
    assert torch.equal(res.targets, targets)


def test_mix_tokens_each_position_mixes_own_token_with_its_partner():
    m, b, mu, d = 3, 2, 4, 5
    n = m * b * mu * mu
    copies = torch.randn(m, b, mu, mu, d, generator=_gen(4))
    lab = _labels(b, mu).unsqueeze(0).expand(m, b, mu, mu)
    targets = torch.where(lab == NORMAL, 0.0, torch.rand(m, b, mu, mu, generator=_gen(5)))
    res = mix_tokens(copies, targets, lab, generator=_gen(6))
    assert (res.lam >= 0.5).all() and (res.lam <= 1.0).all() and res.lam.std() > 0.05  # one lambda per token
    assert sorted(res.partner.tolist()) == list(range(n))
    x, y = copies.reshape(n, d), targets.reshape(n)
    lam = res.lam[:, None]
    assert torch.allclose(res.tokens.reshape(n, d), lam * x + (1 - lam) * x[res.partner], atol=1e-6)
    assert torch.allclose(res.targets.reshape(n), res.lam * y + (1 - res.lam) * y[res.partner], atol=1e-6)
    # deterministic for a seed
    again = mix_tokens(copies, targets, lab, generator=_gen(6))
    assert torch.equal(again.tokens, res.tokens)


def test_make_copies_variants():
    t = torch.randn(2, 8, 8, 6)
    assert make_copies(t, None, 3, None).shape == (3, 2, 8, 8, 6)
    pre = torch.randn(3, 2, 8, 8, 6)
    assert make_copies(pre, None, 3, None) is pre
    q, nb = torch.randn(2, 8, 8, 6), torch.randn(2, 8, 8, 3, 6)
    c = make_copies((q, nb), KnnAugmenter(), 3, _gen(0))
    assert c.shape == (3, 2, 8, 8, 6) and not torch.equal(c[0], c[1])  # independent augmentations


def test_guess_labels_is_sharpened_mean():
    model = _tiny_model().eval()
    copies = torch.randn(3, 2, 8, 8, 6, generator=_gen(1))
    g = guess_labels(model, copies, 0.5)
    with torch.no_grad():
        p = torch.stack([torch.softmax(model(copies[j]), -1)[..., 1] for j in range(3)]).mean(0)
    assert torch.allclose(g, p**2 / (p**2 + (1 - p) ** 2), atol=1e-5)


@pytest.mark.cuda
def test_training_steps_run_and_give_finite_loss(device):
    model = _tiny_model().train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    aug = KnnAugmenter()
    q, nb = torch.rand(2, 8, 8, 6, generator=_gen(7)), torch.rand(2, 8, 8, 3, 6, generator=_gen(8))
    q, nb = q.to(device), nb.to(device)
    lab = _labels(2, 8).to(device)
    g = _gen(9)
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(3):
        loss, stats = resmixmatch_loss(model, (q, nb), lab, step=step * 200, generator=g, augment=aug)
        assert torch.isfinite(loss) and loss.item() > 0
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    assert stats["lambda_u"] == 5.0 and stats["n_x"] + stats["n_u"] == 3 * 2 * 64
    assert stats["n_u"] == 3 * int((lab == UNKNOWN).sum())
    assert 0.0 <= stats["guess_mean"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_step_zero_has_no_unlabelled_weight_and_ablation_switches():
    model = _tiny_model()
    t = torch.rand(2, 8, 8, 6, generator=_gen(1))
    lab = _labels(2, 8)
    loss, stats = resmixmatch_loss(model, t, lab, step=0, generator=_gen(2))
    assert stats["lambda_u"] == 0.0 and loss.item() == pytest.approx(stats["loss_x"], rel=1e-6)
    p = ResMixMatchParams(mixmatch=False, dropout=False)
    loss, stats = resmixmatch_loss(model, t, lab, step=500, params=p, generator=_gen(2))
    assert stats["n_u"] == 0 and stats["n_x"] == int((lab == NORMAL).sum()) and stats["loss_u"] == 0.0
    assert math.isnan(stats["guess_mean"]) and torch.isfinite(loss)
    with pytest.raises(ValueError):
        resmixmatch_loss(model, t, torch.ones(2, 8, 8, dtype=torch.long), step=0, generator=_gen(2))
