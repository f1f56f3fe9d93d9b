"""PatchCore patch features and the paper's position code (Eq. 2, 3)."""
from __future__ import annotations

import math

import pytest
import torch

from semirest.core.features.backbones import FeatureBackbone
from semirest.core.features.patches import PatchFeatures, position_code


def test_position_code_known_values():
    d = 16
    code = position_code(3, 5, d)
    assert code.shape == (3, 5, d)
    q = d // 4
    r, c = 2, 3
    for k in range(q):
        w = 1.0 / 10000 ** (8 * k / d)
        assert math.isclose(code[r, c, k], math.sin(c * w), abs_tol=1e-6)
        assert math.isclose(code[r, c, q + k], math.cos(c * w), abs_tol=1e-6)
        assert math.isclose(code[r, c, 2 * q + k], math.sin(r * w), abs_tol=1e-6)
        assert math.isclose(code[r, c, 3 * q + k], math.cos(r * w), abs_tol=1e-6)
    # rho divides the positions
    assert torch.allclose(position_code(4, 4, d, rho=2)[2, 2], position_code(2, 2, d)[1, 1])
    with pytest.raises(ValueError, match="multiple of 4"):
        position_code(2, 2, 10)


@pytest.fixture(scope="module")
def backbone():
    return FeatureBackbone("efficientnet_lite0")


@pytest.mark.cuda
def test_pcf_is_feature_plus_weighted_code(backbone, device):
    pf = PatchFeatures(backbone, d_f=64, pretrain_dim=128, lambda_pe=0.1).to(device)
    x = torch.rand(2, 3, 64, 80, device=device)
    plain = pf.patch_features(x)
    pcf = pf(x)
    assert plain.shape == (2, 8, 10, 64)
    code = position_code(8, 10, 64).to(device)
    assert torch.allclose(pcf - plain, 0.1 * code.expand(2, -1, -1, -1), atol=1e-5)
    pf.lambda_pe = 0.0
    assert torch.equal(pf(x), plain)


def test_patch_features_are_local(backbone):
    """A change in one input block changes the features at that block most."""
    pf = PatchFeatures(backbone, d_f=64, pretrain_dim=128, lambda_pe=0.0)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 128, 128)
    y = x.clone()
    y[:, :, 64:72, 64:72] = 1.0 - y[:, :, 64:72, 64:72]
    diff = (pf(x) - pf(y)).abs().sum(-1)[0]
    r, c = divmod(int(diff.argmax()), diff.shape[1])
    assert abs(r - 8) <= 1 and abs(c - 8) <= 1
    assert float(diff[8, 8]) > 3 * float(diff[0:2, 0:2].max())
