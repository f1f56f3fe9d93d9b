"""Sliding windows over the token tensor and their bagging average (paper Eq. 8 and Eq. 10).

Conventions: a token map is channels-last ``(h_t, w_t, C)``; a window origin is the (row, col) of
its top-left token; windows are square with ``mu`` tokens per side.

Coverage (Eq. 8 leaves the border open): per axis the origins are ``0, s, 2s, ...`` up to
``n - mu``; when ``n - mu`` is not a multiple of ``s`` one more window flush with the far border
(origin ``n - mu``) is added, so every token is covered by at least one window.

Maps smaller than a window (``n < mu`` on an axis): that axis gets the single origin 0; the token
map is zero-padded at the bottom / right up to ``mu`` before slicing (a zero token is a perfect
match to the memory bank, the same input random PCR dropout Eq. 13 produces), and predictions on
the padded positions are discarded by :func:`bag_windows`.
"""
from __future__ import annotations

import torch
from torch import nn

from semirest.core.model.swin import anomaly_probability


def axis_origins(n: int, mu: int, step: int) -> list[int]:
    """Window start positions along one axis of length ``n`` (Eq. 8 plus a flush last window)."""
    if n < 1 or mu < 1 or step < 1:
        raise ValueError(f"need n, mu, step >= 1, got n={n}, mu={mu}, step={step}")
    if n <= mu:
        return [0]
    starts = list(range(0, n - mu + 1, step))
    if starts[-1] != n - mu:
        starts.append(n - mu)
    return starts


def window_origins(hw: tuple[int, int], mu: int, step: int) -> torch.Tensor:
    """All window origins covering an (h_t, w_t) token map: int64 (Q, 2) of (row, col), row-major."""
    h, w = hw
    rows = torch.tensor(axis_origins(h, mu, step), dtype=torch.long)
    cols = torch.tensor(axis_origins(w, mu, step), dtype=torch.long)
    return torch.cartesian_prod(rows, cols).reshape(-1, 2)


def _pad_to(tokens: torch.Tensor, mu: int) -> torch.Tensor:
    h, w = tokens.shape[0], tokens.shape[1]
    ph, pw = max(0, mu - h), max(0, mu - w)
    if ph or pw:
        tokens = torch.nn.functional.pad(tokens, (0, 0, 0, pw, 0, ph))
    return tokens


def extract_windows(tokens: torch.Tensor, origins: torch.Tensor, mu: int) -> torch.Tensor:
    """Slice the sub-tensors T_w of Eq. 8: (h_t, w_t, C) -> (Q, mu, mu, C), same dtype and device."""
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be (h_t, w_t, C), got {tuple(tokens.shape)}")
    padded = _pad_to(tokens, mu)
    return torch.stack([padded[r:r + mu, c:c + mu] for r, c in origins.tolist()])


def bag_windows(window_maps: torch.Tensor, origins: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bagging average of Eq. 10: each token gets the mean of the windows covering it.

    ``window_maps``: (Q, mu, mu) per-window anomaly maps Theta_w; ``origins``: (Q, 2) top-left
    corners; ``hw``: (h_t, w_t). Returns (h_t, w_t) float32 on the maps' device. Parts of a window
    outside the map (maps smaller than mu) are dropped; uncovered tokens (impossible with
    :func:`window_origins`) would be 0.
    """
    q, mu, mu2 = window_maps.shape
    if mu != mu2 or origins.shape != (q, 2):
        raise ValueError(f"window_maps (Q, mu, mu) and origins (Q, 2) do not match: "
                         f"{tuple(window_maps.shape)} vs {tuple(origins.shape)}")
    h, w = hw
    hp, wp = max(h, mu), max(w, mu)
    total = torch.zeros(hp, wp, dtype=torch.float32, device=window_maps.device)
    count = torch.zeros(hp, wp, dtype=torch.float32, device=window_maps.device)
    maps = window_maps.float()
    for i, (r, c) in enumerate(origins.tolist()):
        total[r:r + mu, c:c + mu] += maps[i]
        count[r:r + mu, c:c + mu] += 1.0
    return (total / count.clamp_min(1.0))[:h, :w]


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for p in model.parameters():
        return p.device
    return fallback


def predict_bagged(model: nn.Module, tokens: torch.Tensor, mu: int, step: int,
                   batch_size: int = 16) -> torch.Tensor:
    """Anomaly probability map of a whole token map by bagging sliding Swins (Eq. 8-10).

    ``tokens``: (h_t, w_t, d_t) channels-last. ``model`` maps (B, mu, mu, d_t) to (B, mu, mu, 2)
    logits. Windows are run ``batch_size`` at a time on the model's device, in eval mode (the
    model's train/eval mode is restored afterwards), without gradients. Returns (h_t, w_t) float32
    on ``tokens.device``.
    """
    h, w = tokens.shape[0], tokens.shape[1]
    origins = window_origins((h, w), mu, step)
    windows = extract_windows(tokens, origins, mu)
    device = _model_device(model, tokens.device)
    was_training = model.training
    model.eval()
    try:
        maps = []
        with torch.no_grad():
            for i in range(0, windows.shape[0], batch_size):
                logits = model(windows[i:i + batch_size].to(device))
                maps.append(anomaly_probability(logits))
    finally:
        model.train(was_training)
    return bag_windows(torch.cat(maps), origins.to(device), (h, w)).to(tokens.device)


def predict_whole(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The "no bagging" ablation: one Swin pass over the whole (h_t, w_t, d_t) map -> (h_t, w_t)."""
    device = _model_device(model, tokens.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prob = anomaly_probability(model(tokens.unsqueeze(0).to(device)))[0]
    finally:
        model.train(was_training)
    return prob.to(tokens.device)
