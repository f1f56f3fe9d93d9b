"""Focal losses of SemiREST: Eq. 11 (fully supervised part) and Algorithm 1 step 9 (ResMixMatch).

Both take the model's per-token 2-class **logits** ``(..., 2)`` (channel 1 = anomaly) and work in
log-space (``log_softmax``) so that confident predictions do not produce ``log(0)``. Any leading
shape is accepted, e.g. (B, mu, mu, 2) with labels (B, mu, mu).
"""
from __future__ import annotations

import torch

from semirest.core.labels.blocks import IGNORE, NEGATIVE, POSITIVE


def _zero(logits: torch.Tensor) -> torch.Tensor:
    # A zero that is still part of the graph, so ``loss.backward()`` works on empty batches.
    return logits.sum() * 0.0


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 4.0) -> torch.Tensor:
    """Eq. 11: class-balanced focal loss over tokens with hard block labels.

    L = -1/|Z-| sum_{Z-} (1 - alpha) p+^gamma log(1 - p+)  -  1/|Z+| sum_{Z+} alpha (1 - p+)^gamma log p+

    ``labels`` (same shape as ``logits[..., 0]``, integer) in {POSITIVE, NEGATIVE, IGNORE}; IGNORE
    tokens (Eq. 14's empty label) contribute nothing and get exactly zero gradient. A class with no
    token in the batch has its term dropped (rather than dividing by zero). Any other label value
    (e.g. the semi UNKNOWN) raises ValueError. Returns a float32 scalar.
    """
    if logits.shape[-1] != 2 or logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits (..., 2) and labels (...) do not match: {tuple(logits.shape)} vs {tuple(labels.shape)}")
    pos = labels == POSITIVE
    neg = labels == NEGATIVE
    if not bool((pos | neg | (labels == IGNORE)).all()):
        raise ValueError("focal_loss labels must be POSITIVE (1), NEGATIVE (0) or IGNORE (-1)")
    logp = torch.log_softmax(logits.float(), dim=-1)
    log_p_pos, log_p_neg = logp[..., 1], logp[..., 0]
    p_pos = log_p_pos.exp()
    loss = _zero(logits)
    n_neg, n_pos = int(neg.sum()), int(pos.sum())
    if n_neg:
        term = (1.0 - alpha) * p_pos.pow(gamma) * log_p_neg
        loss = loss - term[neg].sum() / n_neg
    if n_pos:
        term = alpha * (1.0 - p_pos).pow(gamma) * log_p_pos
        loss = loss - term[pos].sum() / n_pos
    return loss


def soft_focal_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                    alpha: float = 0.25, gamma: float = 4.0) -> torch.Tensor:
    """Algorithm 1 step 9: focal loss against soft (mixed) targets, normalised over the token set.

    With y = predicted anomaly probability and y* = target in [0, 1] (MixUp of labels and guesses),
    p_i = (1 - y*)(1 - y) + y* y is the probability given to the target; tokens with y* > 0.5 are
    "positive" and weighted alpha, the others (1 - alpha):

        L = - sum_{i in Z} w_i (1 - p_i)^gamma log p_i / |Z|,   Z = tokens where ``mask`` is True

    (one normalisation over the union of positives and negatives, as in L_x and L_u). With hard
    targets it weights like Eq. 11 but with a single mean. An empty set gives a zero loss.
    ``target`` is treated as a constant (no gradient flows into it). Returns a float32 scalar.
    """
    if logits.shape[-1] != 2 or logits.shape[:-1] != target.shape:
        raise ValueError(f"logits (..., 2) and target (...) do not match: {tuple(logits.shape)} vs {tuple(target.shape)}")
    t = target.detach().float().clamp(0.0, 1.0)
    if mask is None:
        mask = torch.ones_like(t, dtype=torch.bool)
    n = int(mask.sum())
    if n == 0:
        return _zero(logits)
    logp = torch.log_softmax(logits.float(), dim=-1)
    # log p_i = log((1 - t) q0 + t q1) computed as a log-sum-exp; log(0) = -inf drops a term.
    log_p = torch.logsumexp(torch.stack([torch.log1p(-t) + logp[..., 0], torch.log(t) + logp[..., 1]]), dim=0)
    w = torch.where(t > 0.5, torch.full_like(t, alpha), torch.full_like(t, 1.0 - alpha))
    term = w * (1.0 - log_p.exp()).clamp_min(0.0).pow(gamma) * log_p
    return -term[mask].sum() / n
