import math

import pytest
import torch

from semirest.core.labels.blocks import IGNORE, NEGATIVE, POSITIVE, UNKNOWN
from semirest.core.train.losses import focal_loss, soft_focal_loss


def _logits_for(p):
    """Logits (0, log(p/(1-p))) give anomaly probability p."""
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], -1).float()


def test_eq11_known_answer():
    p = [0.75, 0.2, 0.6, 0.9, 0.5]
    labels = torch.tensor([NEGATIVE, NEGATIVE, POSITIVE, POSITIVE, IGNORE])
    a, g = 0.25, 4.0
    neg = [-(1 - a) * 0.75**g * math.log(0.25), -(1 - a) * 0.2**g * math.log(0.8)]
    pos = [-a * 0.4**g * math.log(0.6), -a * 0.1**g * math.log(0.9)]
    expected = sum(neg) / 2 + sum(pos) / 2          # separate means over Z- and Z+
    got = focal_loss(_logits_for(p), labels, alpha=a, gamma=g)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_eq11_batched_shape_and_missing_class_dropped():
    p = torch.full((2, 3, 3), 0.3)
    labels = torch.full((2, 3, 3), NEGATIVE)
    expected = -(0.75) * 0.3**4 * math.log(0.7)     # only the negative term
    assert focal_loss(_logits_for(p), labels).item() == pytest.approx(expected, rel=1e-5)
    all_ignored = torch.full((2, 3, 3), IGNORE)
    z = focal_loss(_logits_for(p).requires_grad_(), all_ignored)
    assert z.item() == 0.0
    z.backward()  # an empty batch still back-propagates


def test_eq11_ignored_tokens_get_zero_gradient():
    torch.manual_seed(0)
    logits = torch.randn(4, 4, 2, requires_grad=True)
    labels = torch.randint(-1, 2, (4, 4))
    labels[0, 0], labels[0, 1], labels[0, 2] = POSITIVE, NEGATIVE, IGNORE
    focal_loss(logits, labels).backward()
    ign = labels == IGNORE
    assert torch.all(logits.grad[ign] == 0)
    assert torch.all(logits.grad[~ign].abs().sum(-1) > 0)


def test_eq11_rejects_unknown_label():
    with pytest.raises(ValueError):
        focal_loss(torch.zeros(3, 2), torch.tensor([0, 1, UNKNOWN]))


def test_eq11_stable_for_confident_logits():
    logits = torch.tensor([[0.0, 200.0], [200.0, 0.0]], requires_grad=True)
    loss = focal_loss(logits, torch.tensor([NEGATIVE, POSITIVE]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() > 10  # both tokens confidently wrong


def test_soft_focal_known_answer():
    y = [0.7, 0.2, 0.9]          # predictions
    t = [0.6, 0.0, 0.3]          # soft targets
    a, g = 0.75, 4.0
    expected = 0.0
    for yi, ti in zip(y, t):
        p = (1 - ti) * (1 - yi) + ti * yi
        w = a if ti > 0.5 else 1 - a
        expected += -w * (1 - p) ** g * math.log(p)
    expected /= 3                # union normalisation
    got = soft_focal_loss(_logits_for(y), torch.tensor(t), alpha=a, gamma=g)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_soft_focal_mask_and_hard_targets():
    y = torch.tensor([0.7, 0.2, 0.9, 0.4])
    t = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mask = torch.tensor([True, True, False, True])
    a, g = 0.25, 2.0
    # hard targets: p_i = y for positives, 1 - y for negatives
    terms = [-a * 0.3**g * math.log(0.7), -(1 - a) * 0.2**g * math.log(0.8), -a * 0.6**g * math.log(0.4)]
    got = soft_focal_loss(_logits_for(y), t, mask, alpha=a, gamma=g)
    assert got.item() == pytest.approx(sum(terms) / 3, rel=1e-5)
    logits = _logits_for(y).requires_grad_()
    soft_focal_loss(logits, t, mask, a, g).backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[2] == 0)          # masked-out token
    empty = soft_focal_loss(logits, t, torch.zeros(4, dtype=torch.bool))
    assert empty.item() == 0.0


def test_soft_focal_no_gradient_into_target():
    t = torch.tensor([0.3, 0.8], requires_grad=True)
    loss = soft_focal_loss(torch.randn(2, 2, requires_grad=True), t)
    loss.backward()
    assert t.grad is None
