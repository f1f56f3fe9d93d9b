import pytest
import torch

from semirest.core.model.tokens import expand_token_map, pcr_to_tokens, tokens_to_pcr


def test_rho_one_is_identity():
    pcr = torch.randn(5, 7, 3)
    assert torch.equal(pcr_to_tokens(pcr, 1), pcr)


def test_rho_two_known_layout():
    # PCR value encodes (row, col, feature): 100*r + 10*c + k
    h, w, d = 4, 6, 2
    r = torch.arange(h).view(h, 1, 1)
    c = torch.arange(w).view(1, w, 1)
    k = torch.arange(d).view(1, 1, d)
    pcr = (100 * r + 10 * c + k).float()
    t = pcr_to_tokens(pcr, 2)
    assert t.shape == (2, 3, 8)
    # token (1, 2) covers PCR rows 2..3, cols 4..5; channel (pr*2+pc)*d + k
    expected = [240, 241, 250, 251, 340, 341, 350, 351]
    assert t[1, 2].tolist() == expected


def test_batched_and_inverse():
    pcr = torch.randn(2, 6, 9, 4)
    t = pcr_to_tokens(pcr, 3)
    assert t.shape == (2, 2, 3, 36)
    assert torch.equal(tokens_to_pcr(t, 3), pcr)
    assert torch.equal(t[1], pcr_to_tokens(pcr[1], 3))


def test_not_divisible_raises():
    with pytest.raises(ValueError):
        pcr_to_tokens(torch.zeros(5, 4, 2), 2)


def test_expand_token_map():
    m = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    e = expand_token_map(m, 2)
    assert e.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
