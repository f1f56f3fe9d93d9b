"""The anomaly map: token-level scores -> maps at each image's own resolution, for every method,
and SemiREST's test-time map (1-NN residual tokens, bagged Swin of Eq. 10, then the same upsampling).

PatchCore/SemiREST convention: the token-level score map is bilinearly upsampled to the
ground-truth mask's resolution, then blurred with a Gaussian (sigma 4 pixels, kernel truncated at
4 sigma) so that isolated patch scores become smooth blobs. Metrics are then computed at the mask's
own resolution (see :mod:`semirest.core.metrics`).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from semirest.core.config import Config
from semirest.core.device import autocast
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.features.patches import model_input_size
from semirest.core.memory.bank import BankSearcher, residual, scale_residual
from semirest.core.model.bagging import predict_bagged, predict_whole
from semirest.core.model.tokens import expand_token_map, pcr_to_tokens
from semirest.core.progress import ProgressEvent, ProgressFn
from semirest.core.progress import no_progress as _no_progress

TRUNCATE = 4.0  # kernel half-width in sigmas, as scipy.ndimage.gaussian_filter's default


def gaussian_radius(sigma: float) -> int:
    """Kernel half-width in pixels, computed exactly as scipy does (``int(truncate*sigma + 0.5)``)."""
    return int(TRUNCATE * float(sigma) + 0.5)


def upsample_and_smooth(token_map: np.ndarray, out_hw: tuple[int, int], sigma: float = 4.0) -> np.ndarray:
    """Upsample a (h, w) score map to ``out_hw`` = (H, W) and Gaussian-blur it; returns float32 (H, W).

    Upsampling is ``cv2.resize(INTER_LINEAR)``, which uses half-pixel centres and so equals
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``. The blur is
    ``cv2.GaussianBlur`` with ksize ``2*int(4*sigma+0.5)+1`` and ``BORDER_REFLECT``, which equals
    ``scipy.ndimage.gaussian_filter(sigma=sigma, truncate=4.0)`` (default mode "reflect", the one
    PatchCore uses) to float32 rounding, also when the kernel is wider than the image, and is about
    9x faster. ``sigma=0`` skips the blur.
    """
    m = np.asarray(token_map)
    if m.ndim != 2:
        raise ValueError(f"token_map must be 2-D (h, w), got shape {m.shape}")
    if m.size == 0:
        raise ValueError("token_map is empty")
    if m.dtype.kind not in "biuf":
        raise ValueError(f"token_map must be real-valued, got dtype {m.dtype}")
    m = np.ascontiguousarray(m, dtype=np.float32)
    try:
        out_h, out_w = (int(v) for v in out_hw)
    except (TypeError, ValueError):
        raise ValueError(f"out_hw must be a pair (H, W) of positive integers, got {out_hw!r}") from None
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"out_hw must be a pair (H, W) of positive integers, got {out_hw!r}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")

    up = cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR)  # cv2 takes (width, height)
    if sigma == 0:
        return up
    k = 2 * gaussian_radius(sigma) + 1
    return cv2.GaussianBlur(up, (k, k), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT)


def to_image_maps(token_maps: np.ndarray, sizes: Sequence[tuple[int, int]], sigma: float) -> list[np.ndarray]:
    """Token-level maps -> maps at each image's own resolution (bilinear + Gaussian)."""
    return [upsample_and_smooth(m, hw, sigma) for m, hw in zip(token_maps, sizes)]


# -- SemiREST's map: residual tokens -> bagged Swin -> image maps ------------------------------------------------------------------------------------
def residual_tokens(cfg: Config, feats: torch.Tensor, searcher: BankSearcher, scale: float,
                    exclude_source: int | None = None) -> tuple[torch.Tensor, float]:
    """Test-time tokens: plain 1-NN residual (Eq. 5/6, no augmentation), scaled, then Eq. 7; and the
    image's bank score, the largest nearest-neighbour distance of its features (PatchCore's image
    score on this bank, a component of a "+bank" image score).
    ``exclude_source``: a training image's own bank entries are not matched (calibration)."""
    h, w, d = feats.shape
    rows = searcher.search(feats.reshape(-1, d), 1, exclude_source=exclude_source)[:, 0]
    matched = searcher.features[rows.to(searcher.device)].to(feats.device).reshape(h, w, d)
    bank_score = float(torch.linalg.vector_norm(feats.float() - matched.float(), dim=-1).max())
    r = scale_residual(residual(feats, matched, cfg.bank.residual), scale)
    return pcr_to_tokens(r, cfg.model.rho), bank_score


def swin_token_map(cfg: Config, model: nn.Module, tokens: torch.Tensor, window_batch: int = 64) -> torch.Tensor:
    """(h_t, w_t) float32 anomaly probability of one token map: bagged sliding Swins (Eq. 8-10) or
    one whole-map Swin (``model.bagging = false``), under the configured autocast."""
    device = next(model.parameters()).device
    with autocast(cfg, device):
        if cfg.model.bagging:
            m = predict_bagged(model, tokens, cfg.model.mu, cfg.model.step, window_batch)
        else:
            m = predict_whole(model, tokens)
    return m.float()


def predict_token_maps(cfg: Config, model: nn.Module, extractor: FeatureExtractor, searcher: BankSearcher,
                       scale: float, images: Sequence[np.ndarray], window_batch: int = 64,
                       exclude_sources: Sequence[int | None] | None = None,
                       features: torch.Tensor | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """(anomaly probability per feature position ((h_f, w_f) float32 each) by bagging (Eq. 10) or
    one whole-map Swin (ablation), each image's bank score (:func:`residual_tokens`));
    ``exclude_sources``: per image, a bank source not to match; ``features``: the images' PCFs when
    already extracted (then ``images`` is not read)."""
    feats = extractor(images) if features is None else features
    device = next(model.parameters()).device
    out, bank_scores = [], []
    for i, f in enumerate(feats):
        exclude = exclude_sources[i] if exclude_sources is not None else None
        tokens, bank_score = residual_tokens(cfg, f.to(searcher.device), searcher, scale, exclude)
        out.append(expand_token_map(swin_token_map(cfg, model, tokens.to(device), window_batch), cfg.model.rho).cpu().numpy())
        bank_scores.append(bank_score)
    return out, np.asarray(bank_scores, dtype=np.float32)


def predict_maps(cfg: Config, model: nn.Module, extractor: FeatureExtractor, searcher: BankSearcher, scale: float,
                 images: Sequence[np.ndarray], progress: ProgressFn = _no_progress) -> list[np.ndarray]:
    """Maps at each image's own resolution (bilinear + Gaussian sigma, as PatchCore)."""
    maps: list[np.ndarray] = []
    bs = extractor.cfg.batch_size
    for i in range(0, len(images), bs):
        batch = images[i:i + bs]
        tm, _ = predict_token_maps(cfg, model, extractor, searcher, scale, batch)
        maps += to_image_maps(np.stack(tm), [im.shape[:2] for im in batch], cfg.eval.sigma)
        progress(ProgressEvent("predict", min(i + bs, len(images)), len(images)))
    return maps


def detector_maps(cfg: Config, model: nn.Module, extractor: FeatureExtractor, searcher: BankSearcher, scale: float,
                  images: Sequence[np.ndarray], exclude_sources: Sequence[int | None] | None = None,
                  features: torch.Tensor | None = None) -> np.ndarray:
    """(B, H, W) maps at the model's input size (:func:`detector_outputs` without the bank scores)."""
    return detector_outputs(cfg, model, extractor, searcher, scale, images, exclude_sources, features)[0]


def detector_outputs(cfg: Config, model: nn.Module, extractor: FeatureExtractor, searcher: BankSearcher,
                     scale: float, images: Sequence[np.ndarray], exclude_sources: Sequence[int | None] | None = None,
                     features: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """((B, H, W) maps at the model's input size (bilinear + Gaussian sigma at that size), (B,) bank
    scores): what the image score is taken from (:mod:`semirest.core.calibration`) and the exported
    detector computes, whatever the size of the images. ``features``: (B, h_f, w_f, d_f) PCFs of
    the images when already extracted (``extractor`` may then be None and ``images`` is not read)."""
    maps: list[np.ndarray] = []
    bank_scores: list[np.ndarray] = []
    fc = extractor.cfg if extractor is not None else cfg.features
    bs, size = fc.batch_size, model_input_size(fc)
    n = len(images) if features is None else len(features)
    for i in range(0, n, bs):
        ex = None if exclude_sources is None else exclude_sources[i:i + bs]
        part = None if features is None else features[i:i + bs]
        tm, bank = predict_token_maps(cfg, model, extractor, searcher, scale,
                                      images[i:i + bs] if features is None else [], exclude_sources=ex, features=part)
        maps += to_image_maps(np.stack(tm), [size] * len(tm), cfg.eval.sigma)
        bank_scores.append(bank)
    if not maps:
        return np.zeros((0,) + tuple(size), dtype=np.float32), np.zeros(0, dtype=np.float32)
    return np.stack(maps), np.concatenate(bank_scores)


def predict_scored_maps(cfg: Config, model: nn.Module, extractor: FeatureExtractor, searcher: BankSearcher,
                        scale: float, images: Sequence[np.ndarray],
                        calibration=None) -> tuple[list[np.ndarray], np.ndarray]:
    """(maps at each image's own resolution, image scores): one Swin pass gives both the map the
    studio shows and the score the calibration is about (from the map at the model's input size,
    as :func:`detector_outputs`, standardised by ``calibration`` for a "+bank" score), so a run's
    list scores and its threshold are in the same units."""
    from semirest.core.calibration import image_score

    maps: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    bs = extractor.cfg.batch_size
    size = extractor.input_size
    for i in range(0, len(images), bs):
        batch = images[i:i + bs]
        tm, bank = predict_token_maps(cfg, model, extractor, searcher, scale, batch)
        tm = np.stack(tm)
        maps += to_image_maps(tm, [im.shape[:2] for im in batch], cfg.eval.sigma)
        scores.append(image_score(np.stack(to_image_maps(tm, [size] * len(tm), cfg.eval.sigma)), cfg.eval.image_score,
                                  bank, calibration))
    return maps, (np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32))
