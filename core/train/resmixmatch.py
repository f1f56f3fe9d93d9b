"""ResMixMatch (paper section 3.4, Algorithm 1): semi-supervised loss on box-labelled windows.

Inputs are windows of real anomalous images with Eq. 15 labels: NORMAL (0, outside the boxes:
known normal) and UNKNOWN (-2, inside the boxes; the paper writes -1). One call of
:func:`resmixmatch_loss` runs Algorithm 1 on a batch of B windows:

1. (step 2) M k-NN augmented copies of every window (Eq. 12) via the injectable ``augment``;
2. (step 3) label guessing: mean of the M predicted anomaly probabilities per token position,
   sharpened with temperature Gamma (2-class sharpening), no gradient, copied to all M copies;
3. (step 4-5) all N = M*B*mu*mu tokens flattened; labelled set X = NORMAL tokens with target 0,
   unlabelled set U = UNKNOWN tokens with the guessed target; W = shuffle(X u U);
4. (step 6) MixUp with one lambda ~ Beta(0.75, 0.75) per token, lambda' = max(lambda, 1 - lambda):
   X_i mixed with W_i, U_i with W_{|X|+i} (inputs and targets alike);
5. (step 7) re-tensorising: every mixed token goes back to its own (copy, window, r, c) position,
   then random PCR dropout (Eq. 13);
6. (steps 8-10) forward pass, L_x (soft focal, alpha_x, gamma_x, over tokens originally NORMAL) and
   L_u (alpha_u, gamma_u, over tokens originally UNKNOWN); L_mix = L_x + lambda_u(t) L_u with
   lambda_u ramped linearly from 0 over the first ``rampup_steps`` steps.

Decisions where the paper is silent: Beta alpha 0.75 (MixMatch); the guess uses the model in its
current mode (training mode in the trainer, as MixMatch does) under ``torch.no_grad``; the ablation
"without ResMixMatch" (``mixmatch=False``) keeps only the first augmented copy, no guessing or MixUp,
and trains the NORMAL tokens as negatives (L_x) while UNKNOWN tokens get no loss.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from semirest.core.labels.blocks import NORMAL, UNKNOWN
from semirest.core.model.swin import anomaly_probability
from semirest.core.train import rng
from semirest.core.train.augment import pcr_dropout
from semirest.core.train.losses import soft_focal_loss


@dataclass(frozen=True)
class ResMixMatchParams:
    """Hyper-parameters of Algorithm 1 (defaults: paper section 4.2, MVTec-AD)."""

    m_copies: int = 3            # M
    sharpen_t: float = 0.5       # Gamma
    mixup_alpha: float = 0.75    # Beta(alpha, alpha) for MixUp (paper silent; MixMatch's value)
    dropout: bool = True         # random PCR dropout (ablation switch)
    dropout_alpha: float = 0.25  # alpha of Eq. 13
    alpha_x: float = 0.25
    gamma_x: float = 4.0
    alpha_u: float = 0.75
    gamma_u: float = 4.0
    lambda_u: float = 5.0        # 10 for BTAD
    rampup_steps: int = 400
    mixmatch: bool = True        # ablation switch, see the module docstring


def sharpen(p: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """2-class sharpening (Algorithm 1 step 3): p^(1/T) / (p^(1/T) + (1 - p)^(1/T)).

    Computed as sigmoid(logit(p) / T), exact also at p = 0 and p = 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.sigmoid(torch.logit(p.float()) / temperature)


def linear_rampup(step: int, lambda_u: float = 5.0, rampup_steps: int = 400) -> float:
    """lambda_u(t) = lambda_u * clip(t / rampup_steps, 0, 1) (MixMatch's linear ramp-up)."""
    if rampup_steps <= 0:
        return float(lambda_u)
    return float(lambda_u) * min(max(step / rampup_steps, 0.0), 1.0)


def make_copies(inputs, augment: Callable | None, m: int, generator: torch.Generator | None) -> torch.Tensor:
    """Algorithm 1 step 2: M augmented copies, (M, B, mu, mu, d_t).

    With ``augment`` (e.g. :class:`semirest.core.train.augment.KnnAugmenter`), it is called M times
    as ``augment(inputs, generator)``. Without it, ``inputs`` is either the M copies already made,
    (M, B, mu, mu, d_t), or one tensor (B, mu, mu, d_t) used for every copy (no augmentation).
    """
    if augment is not None:
        return torch.stack([augment(inputs, generator) for _ in range(m)])
    if not torch.is_tensor(inputs):
        raise TypeError("without an augment callable, inputs must be a tensor")
    if inputs.dim() == 5:
        if inputs.shape[0] != m:
            raise ValueError(f"expected {m} pre-made copies, got {inputs.shape[0]}")
        return inputs
    if inputs.dim() == 4:
        return inputs.unsqueeze(0).expand(m, *inputs.shape)
    raise ValueError(f"inputs must be (B, mu, mu, d) or (M, B, mu, mu, d), got {tuple(inputs.shape)}")


def guess_labels(model: nn.Module, copies: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Algorithm 1 step 3: Sharpen(mean_j Psi(T_j), Gamma) -> (B, mu, mu) anomaly targets, no grad.

    With a model whose probabilities on real defects start below 0.5 (the fast preset's short un
    stage), sharpening pushes the guesses towards 0 and they collapse over the semi stage (screw:
    mean guess inside the boxes 0.24 -> 0.01). Rescaling them with a box prior, or sharpening
    around a quantile of the known-normal tokens, stopped the collapse but over-labelled the boxes
    and cost AP on both benchmark categories; guesses from the frozen un model or from the residual
    did not beat it either (with perfect guesses the stage does reach sup), so the paper's guess
    stands (docs/experiments/2026-11-28-semi-guess-collapse.md; in-box targets by rank from the un
    model's scores were measured too, and lost: docs/experiments/2026-12-02-box-rank-targets.md).
    """
    m, b = copies.shape[:2]
    with torch.no_grad():
        logits = model(copies.reshape(m * b, *copies.shape[2:]))
        prob = anomaly_probability(logits).reshape(m, b, *logits.shape[1:3]).mean(0)
    return sharpen(prob, temperature)


def split_and_shuffle(labels_flat: torch.Tensor, generator: torch.Generator | None = None):
    """Algorithm 1 steps 4-5 on flat token labels (N,) in {NORMAL, UNKNOWN}.

    Returns ``order`` (N,): flat positions of X (NORMAL tokens) then U (UNKNOWN tokens), and
    ``partner`` (N,): the flat position of W_k = Shuffle(X u U)_k, the MixUp partner of ``order[k]``
    (so X_i meets W_i and U_i meets W_{|X|+i}). ``partner`` is a permutation of all positions.
    """
    idx_x = torch.nonzero(labels_flat == NORMAL, as_tuple=True)[0]
    idx_u = torch.nonzero(labels_flat == UNKNOWN, as_tuple=True)[0]
    order = torch.cat([idx_x, idx_u])
    if order.numel() != labels_flat.numel():
        raise ValueError("ResMixMatch labels must be NORMAL (0) or UNKNOWN (-2)")
    perm = rng.permutation(order.numel(), generator, order.device)
    return order, order[perm]


def mixup(x_own: torch.Tensor, x_partner: torch.Tensor, y_own: torch.Tensor, y_partner: torch.Tensor,
          lam: torch.Tensor):
    """MixUp (Algorithm 1 step 6) per token: lambda' = max(lambda, 1 - lambda), then
    x' = lambda' x_own + (1 - lambda') x_partner and the same for the targets. ``lam`` (N,)."""
    lam = torch.maximum(lam, 1.0 - lam)
    lx = lam.to(x_own.dtype).view(-1, *([1] * (x_own.dim() - 1)))
    ly = lam.to(y_own.dtype)
    return lx * x_own + (1 - lx) * x_partner, ly * y_own + (1 - ly) * y_partner


def retensorize(values: torch.Tensor, positions: torch.Tensor, shape) -> torch.Tensor:
    """Algorithm 1 step 7: put token k back at flat position ``positions[k]`` and reshape to
    ``shape`` (e.g. (M, B, mu, mu, d)). ``positions`` must be a permutation of range(N)."""
    n = positions.numel()
    if values.shape[0] != n or torch.unique(positions).numel() != n or int(positions.max()) != n - 1:
        raise ValueError("positions must be a permutation of all token positions")
    out = torch.empty_like(values)
    out[positions] = values
    return out.reshape(shape)


@dataclass
class MixResult:
    """Mixed, re-tensorised tokens and targets, plus the per-position MixUp bookkeeping."""

    tokens: torch.Tensor     # (M, B, mu, mu, d): token at each position = mix of its own token and partner
    targets: torch.Tensor    # (M, B, mu, mu) mixed anomaly targets in [0, 1]
    partner: torch.Tensor    # (N,) flat position of each position's MixUp partner
    lam: torch.Tensor        # (N,) lambda' used at each position (>= 0.5)


def mix_tokens(copies: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor, mixup_alpha: float = 0.75,
               generator: torch.Generator | None = None, lam: torch.Tensor | None = None) -> MixResult:
    """Algorithm 1 steps 3 (flatten) to 7 (re-tensorise) for copies (M, B, mu, mu, d), targets and
    labels (M, B, mu, mu). ``lam`` (N,) overrides the Beta draw (tests)."""
    shape = copies.shape
    n = targets.numel()
    x = copies.reshape(n, shape[-1])
    y = targets.reshape(n).float()
    order, partner = split_and_shuffle(labels.reshape(n), generator)
    if lam is None:
        lam = rng.beta(n, mixup_alpha, mixup_alpha, generator, x.device)
    x_mix, y_mix = mixup(x[order], x[partner], y[order], y[partner], lam)
    lam_prime = torch.maximum(lam, 1.0 - lam)
    return MixResult(
        tokens=retensorize(x_mix, order, shape),
        targets=retensorize(y_mix, order, targets.shape),
        partner=retensorize(partner, order, (n,)),
        lam=retensorize(lam_prime.to(x.device), order, (n,)),
    )


def resmixmatch_loss(model: nn.Module, inputs, labels: torch.Tensor, step: int,
                     params: ResMixMatchParams = ResMixMatchParams(), generator: torch.Generator | None = None,
                     augment: Callable | None = None) -> tuple[torch.Tensor, dict]:
    """L_mix = L_x + lambda_u(step) * L_u of Algorithm 1 for a batch of B windows.

    ``inputs``: what ``augment`` takes (e.g. ``(query (B, mu, mu, d_f), neighbours (B, mu, mu, 3, d_f))``
    for :class:`~semirest.core.train.augment.KnnAugmenter`), or without ``augment`` the tokens
    (B, mu, mu, d_t) or M pre-made copies (M, B, mu, mu, d_t), channels-last.
    ``labels``: (B, mu, mu) integer in {NORMAL, UNKNOWN} (Eq. 15). ``step``: semi-training step,
    from 0, for the ramp-up. Returns the scalar loss (with
    gradient) and float stats ``loss_x, loss_u, lambda_u, n_x, n_u, guess_mean``.
    """
    m = params.m_copies if params.mixmatch else 1
    copies = make_copies(inputs, augment, m, generator)
    if copies.shape[1:4] != labels.shape:
        raise ValueError(f"labels {tuple(labels.shape)} do not match windows {tuple(copies.shape[1:4])}")
    labels_m = labels.to(copies.device).unsqueeze(0).expand(m, *labels.shape)
    is_x = labels_m == NORMAL
    is_u = labels_m == UNKNOWN
    if not bool((is_x | is_u).all()):
        raise ValueError("ResMixMatch labels must be NORMAL (0) or UNKNOWN (-2)")
    lam_u = linear_rampup(step, params.lambda_u, params.rampup_steps)

    if params.mixmatch:
        guess = guess_labels(model, copies, params.sharpen_t)  # (B, mu, mu)
        targets = torch.where(is_x, 0.0, guess.unsqueeze(0))               # (M, B, mu, mu)
        mixed = mix_tokens(copies, targets, labels_m, params.mixup_alpha, generator)
        tokens, mixed_targets = mixed.tokens, mixed.targets
        guess_mean = float(guess[labels.to(guess.device) == UNKNOWN].mean()) if bool(is_u.any()) else float("nan")
    else:
        tokens, mixed_targets = copies, torch.zeros(labels_m.shape, device=copies.device)
        is_u = torch.zeros_like(is_u)
        guess_mean = float("nan")

    if params.dropout:
        tokens = pcr_dropout(tokens, params.dropout_alpha, generator)
    logits = model(tokens.reshape(-1, *tokens.shape[2:])).reshape(*tokens.shape[:4], 2)
    loss_x = soft_focal_loss(logits, mixed_targets, is_x, params.alpha_x, params.gamma_x)
    loss_u = soft_focal_loss(logits, mixed_targets, is_u, params.alpha_u, params.gamma_u)
    loss = loss_x + lam_u * loss_u
    stats = {
        "loss_x": float(loss_x.detach()),
        "loss_u": float(loss_u.detach()),
        "lambda_u": lam_u,
        "n_x": int(is_x.sum()),
        "n_u": int(is_u.sum()),
        "guess_mean": guess_mean,
    }
    return loss, stats
