"""Token tensor from the PCR tensor (paper Eq. 7).

Convention: every tensor is **channels-last**. A PCR tensor is ``(h_f, w_f, d_f)`` or batched
``(B, h_f, w_f, d_f)``; the token tensor is ``(h_t, w_t, d_t)`` with ``h_t = h_f / rho``,
``w_t = w_f / rho`` and ``d_t = d_f * rho**2``.

Channel order inside a token (our choice; the paper only fixes the size): the ``rho x rho`` patch is
flattened row-major over the patch and then over the features, i.e. token channel
``(pr * rho + pc) * d_f + k`` holds feature ``k`` of the PCR at patch offset ``(pr, pc)``.
With ``rho = 1`` (the paper's setting) the token tensor *is* the PCR tensor.
"""
from __future__ import annotations

import torch


def _check_batched(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"{name} must be (h, w, c) or (B, h, w, c), got shape {tuple(x.shape)}")


def pcr_to_tokens(pcr: torch.Tensor, rho: int) -> torch.Tensor:
    """Group ``rho x rho`` PCR patches into tokens (Eq. 7).

    ``pcr``: (h_f, w_f, d_f) or (B, h_f, w_f, d_f); h_f and w_f must be multiples of ``rho``
    (the paper defines h_t = h_f / rho exactly; crop or resize upstream otherwise).
    Returns (h_t, w_t, d_f * rho**2) or (B, h_t, w_t, d_f * rho**2), same dtype and device.
    """
    if rho < 1:
        raise ValueError(f"rho must be >= 1, got {rho}")
    x, squeeze = _check_batched(pcr, "pcr")
    b, h, w, d = x.shape
    if h % rho or w % rho:
        raise ValueError(f"PCR map {h}x{w} is not a multiple of the patch size rho={rho}")
    if rho > 1:
        x = x.reshape(b, h // rho, rho, w // rho, rho, d).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, h // rho, w // rho, rho * rho * d)
    return x[0] if squeeze else x


def tokens_to_pcr(tokens: torch.Tensor, rho: int) -> torch.Tensor:
    """Exact inverse of :func:`pcr_to_tokens` (un-patchify the channel dimension)."""
    if rho < 1:
        raise ValueError(f"rho must be >= 1, got {rho}")
    x, squeeze = _check_batched(tokens, "tokens")
    b, ht, wt, dt = x.shape
    if dt % (rho * rho):
        raise ValueError(f"token dimension {dt} is not a multiple of rho**2={rho * rho}")
    if rho > 1:
        d = dt // (rho * rho)
        x = x.reshape(b, ht, wt, rho, rho, d).permute(0, 1, 3, 2, 4, 5).reshape(b, ht * rho, wt * rho, d)
    return x[0] if squeeze else x


def expand_token_map(token_map: torch.Tensor, rho: int) -> torch.Tensor:
    """Spread a per-token map (..., h_t, w_t) back onto the PCR grid (..., h_t*rho, w_t*rho).

    Used for prediction or label maps when rho > 1: each token stands for a rho x rho patch of
    feature positions (Eq. 7), so every feature position inherits its token's value.
    """
    if rho == 1:
        return token_map
    return token_map.repeat_interleave(rho, dim=-2).repeat_interleave(rho, dim=-1)
