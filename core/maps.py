"""Anomaly-map post-processing shared by the pipeline and the evaluation.

PatchCore/SemiREST convention: the token-level score map is bilinearly upsampled to the
ground-truth mask's resolution, then blurred with a Gaussian (sigma 4 pixels, kernel truncated at
4 sigma) so that isolated patch scores become smooth blobs. Metrics are then computed at the mask's
own resolution (see :mod:`semirest.core.metrics`).
"""
from __future__ import annotations

import cv2
import numpy as np

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


def colorize(score_map: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Score map -> RGB uint8 with OpenCV's JET colour map, scores clipped to [vmin, vmax]."""
    span = max(float(vmax) - float(vmin), 1e-12)
    norm = np.clip((np.asarray(score_map, dtype=np.float32) - vmin) / span, 0.0, 1.0)
    bgr = cv2.applyColorMap((norm * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, score_map: np.ndarray, vmin: float, vmax: float, opacity: float = 0.5) -> np.ndarray:
    """Blend the coloured score map over an RGB image of the same size."""
    heat = colorize(score_map, vmin, vmax)
    return cv2.addWeighted(image, 1.0 - opacity, heat, opacity, 0.0)
