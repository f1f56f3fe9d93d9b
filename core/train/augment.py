"""Augmentations designed for residual inputs (paper section 3.3): k-NN residuals (Eq. 12) and
random PCR dropout (Eq. 13).

Decisions where the paper is silent (all documented defaults, see algorithm reference section 8):

* Eq. 12 draws one tau per token (one neighbour choice per query feature) and one noise vector
  delta in R^{d_f} per token, i.e. **delta is drawn per element** (the paper calls it a vector
  multiplied element-wise).
* "z ~ N(0, 0.2)" is read as standard deviation 0.2 (torch's convention), then **clipped** (clamped,
  not resampled) to [-0.223, 0.223], so delta = e^z lies in [0.80, 1.25] (0.223 = ln 1.25).
* The residual of the chosen neighbour is squared (Eq. 6) or its absolute value (the ABS ablation);
  the noise multiplies that residual.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from semirest.core.memory.bank import residual, scale_residual
from semirest.core.model.tokens import pcr_to_tokens
from semirest.core.train import rng

def choose_neighbour(shape, a1: float = 0.5, a2: float = 0.8, generator: torch.Generator | None = None,
                     device=None) -> torch.Tensor:
    """Neighbour rank per token for Eq. 12: 0 if tau <= a1, 1 if a1 < tau <= a2, else 2 (int64)."""
    if not 0.0 <= a1 <= a2 <= 1.0:
        raise ValueError(f"need 0 <= a1 <= a2 <= 1, got {a1}, {a2}")
    tau = rng.uniform(shape, generator, device)
    return (tau > a1).long() + (tau > a2).long()


def knn_noise(shape, std: float = 0.2, clip: float = 0.223, generator: torch.Generator | None = None,
              device=None, dtype=torch.float32) -> torch.Tensor:
    """Multiplicative noise delta = exp(z), z ~ N(0, std) clamped to [-clip, clip] (Eq. 12)."""
    z = rng.normal(shape, std, generator, device, dtype).clamp(-clip, clip)
    return z.exp()


def knn_residuals(query: torch.Tensor, neighbours: torch.Tensor, a1: float = 0.5, a2: float = 0.8,
                  mode: str = "square", noise: bool = True, noise_std: float = 0.2, noise_clip: float = 0.223,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """k-NN residual augmentation, Eq. 12.

    ``query``: (..., d) query PCFs; ``neighbours``: (..., K, d) their K >= 3 nearest memory-bank
    entries, nearest first (only the first 3 are used). For every query vector one neighbour is
    chosen with probabilities a1, a2 - a1, 1 - a2; the output (..., d) is S(f - m_chosen) (or ABS)
    multiplied element-wise by delta (if ``noise``). Same dtype and device as ``query``.
    """
    if neighbours.shape[:-2] != query.shape[:-1] or neighbours.shape[-1] != query.shape[-1]:
        raise ValueError(f"neighbours must be (..., K, d) for query (..., d): {tuple(neighbours.shape)} vs {tuple(query.shape)}")
    if neighbours.shape[-2] < 3:
        raise ValueError(f"Eq. 12 needs 3 nearest neighbours, got {neighbours.shape[-2]}")
    idx = choose_neighbour(query.shape[:-1], a1, a2, generator, query.device)
    chosen = torch.gather(neighbours, -2, idx[..., None, None].expand(*query.shape[:-1], 1, query.shape[-1]))
    r = residual(query, chosen.squeeze(-2), mode)
    if noise:
        r = r * knn_noise(r.shape, noise_std, noise_clip, generator, r.device, r.dtype)
    return r


def pcr_dropout(tokens: torch.Tensor, alpha: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random PCR dropout, Eq. 13: every token vector of (..., H, W, C) is zeroed with probability
    ``alpha`` (the whole channel vector, independently per token). Returns a new tensor; no
    rescaling of the kept tokens (unlike classic dropout), as in the paper.
    """
    if alpha <= 0.0:
        return tokens
    keep = rng.uniform(tokens.shape[:-1], generator, tokens.device) > alpha
    return tokens * keep.unsqueeze(-1).to(tokens.dtype)


@dataclass
class KnnAugmenter:
    """Callable producing one k-NN-augmented token window batch (Eq. 12 then Eq. 7).

    Built for :func:`semirest.core.train.resmixmatch.resmixmatch_loss` (its ``augment`` argument)
    and for the fully supervised part: ``augmenter((query, neighbours), generator)`` with
    ``query`` (B, H, W, d_f) window PCFs and ``neighbours`` (B, H, W, 3, d_f) their 3 nearest bank
    entries returns tokens (B, H/rho, W/rho, d_f*rho*rho), divided by ``scale`` (the trainer's global
    residual normalisation, 1.0 = none).
    """

    a1: float = 0.5
    a2: float = 0.8
    mode: str = "square"
    noise: bool = True
    noise_std: float = 0.2
    noise_clip: float = 0.223
    rho: int = 1
    scale: float = 1.0

    def __call__(self, inputs, generator: torch.Generator | None = None) -> torch.Tensor:
        query, neighbours = inputs
        r = knn_residuals(query, neighbours, self.a1, self.a2, self.mode, self.noise, self.noise_std,
                          self.noise_clip, generator)
        return pcr_to_tokens(scale_residual(r, self.scale), self.rho)
