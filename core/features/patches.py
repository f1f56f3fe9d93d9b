"""Patch features as in PatchCore, plus the paper's position code (PCF, Eq. 2 and 3).

PatchCore's recipe: every position of the stride-8 and stride-16 maps carries its 3x3
neighbourhood; the stride-16 neighbourhoods are resized bilinearly onto the stride-8 grid; each
level's neighbourhood vector is adaptive-average-pooled to ``pretrain_dim`` values and the two are
pooled together to ``d_f``. One d_f-vector therefore describes one stride-8 block of the input.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semirest.core.data.images import resize_batch
from semirest.core.features.backbones import FeatureBackbone


def position_code(h: int, w: int, d: int, rho: int = 1) -> torch.Tensor:
    """The position code eta of Eq. 3 for an (h, w) grid: (h, w, d), column first.

    Quarters of the channel axis: sin(c), cos(c), sin(r), cos(r), with the paper's frequencies
    1 / 10000^(8k/d) for k = 0 .. d/4 - 1 (taken literally; MAE uses 4k/d).
    """
    if d % 4:
        raise ValueError(f"the feature dimension must be a multiple of 4 for the position code, got {d}")
    q = d // 4
    k = torch.arange(q, dtype=torch.float64)
    omega = 1.0 / (10000.0 ** (8.0 * k / d))
    cols = torch.arange(w, dtype=torch.float64) / rho
    rows = torch.arange(h, dtype=torch.float64) / rho
    ac = cols[:, None] * omega[None, :]  # (w, q)
    ar = rows[:, None] * omega[None, :]  # (h, q)
    code = torch.empty(h, w, d, dtype=torch.float64)
    code[:, :, 0:q] = torch.sin(ac)[None, :, :]
    code[:, :, q : 2 * q] = torch.cos(ac)[None, :, :]
    code[:, :, 2 * q : 3 * q] = torch.sin(ar)[:, None, :]
    code[:, :, 3 * q :] = torch.cos(ar)[:, None, :]
    return code.float()


def _neighbourhoods(fmap: torch.Tensor, size: int = 3) -> torch.Tensor:
    """(B, C, h, w) -> (B, h, w, C * size * size): each position with its size x size neighbours."""
    b, c, h, w = fmap.shape
    cols = F.unfold(fmap, kernel_size=size, padding=size // 2, stride=1)  # (B, C*k*k, h*w)
    return cols.transpose(1, 2).reshape(b, h, w, c * size * size)


class PatchFeatures(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> position-constrained features (B, h_f, w_f, d_f)."""

    def __init__(
        self,
        backbone: FeatureBackbone,
        d_f: int = 1024,
        pretrain_dim: int = 1024,
        neighbourhood: int = 3,
        lambda_pe: float = 0.1,
        rho: int = 1,
    ):
        super().__init__()
        if d_f % 4:
            raise ValueError(f"d_f must be a multiple of 4, got {d_f}")
        self.backbone = backbone
        self.d_f = d_f
        self.pretrain_dim = pretrain_dim
        self.neighbourhood = neighbourhood
        self.lambda_pe = lambda_pe
        self.rho = rho
        self._pe_cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def _pe(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._pe_cache:
            self._pe_cache[key] = position_code(h, w, self.d_f, self.rho).to(device)
        return self._pe_cache[key]

    @torch.no_grad()
    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Plain PatchCore features (no position code): (B, h_f, w_f, d_f)."""
        low, high = self.backbone(images)
        b, _, h, w = low.shape
        parts = []
        for fmap in (low, high):
            if fmap.shape[-2:] != (h, w):
                # Resize every neighbourhood entry as its own map (PatchCore does the same).
                nb = _neighbourhoods(fmap, self.neighbourhood).permute(0, 3, 1, 2)
                nb = F.interpolate(nb, size=(h, w), mode="bilinear", align_corners=False)
                nb = nb.permute(0, 2, 3, 1)
            else:
                nb = _neighbourhoods(fmap, self.neighbourhood)
            flat = nb.reshape(b * h * w, 1, -1)
            parts.append(F.adaptive_avg_pool1d(flat, self.pretrain_dim))
        stacked = torch.cat(parts, dim=1).reshape(b * h * w, 1, -1)
        feats = F.adaptive_avg_pool1d(stacked, self.d_f)
        return feats.reshape(b, h, w, self.d_f)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.patch_features(images)
        if self.lambda_pe:
            feats = feats + self.lambda_pe * self._pe(feats.shape[1], feats.shape[2], feats.device)
        return feats


def grid_size(image_size: tuple[int, int], stride: int = 8) -> tuple[int, int]:
    """Feature grid of a backbone input of ``image_size`` (h, w) at the given stride."""
    return (math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride))


SCALED_SIDE_MULTIPLE = 32  # the backbone's largest stride: every level's grid then divides evenly


def scaled_input_size(image_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """Model input (h, w) of an image kept at its aspect and scaled by ``scale`` (features.input_scale),
    each side rounded to a multiple of 32 and at least 32."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    m = SCALED_SIDE_MULTIPLE
    return tuple(max(m, int(round(side * scale / m)) * m) for side in image_hw)


SHARED_ASPECT_TOLERANCE = 0.1  # images whose h / w is within 10 % of the median share its aspect
SHARED_ASPECT_SHARE = 0.9  # ... and at least 90 % of them must, for a non-square grid


def shaped_input_size(sizes: Sequence[tuple[int, int]], image_size: int) -> tuple[int, int]:
    """Model input (h, w) for images of the given (h, w) sizes (features.input_size = "images"):
    when they share one aspect (at least SHARED_ASPECT_SHARE of them within SHARED_ASPECT_TOLERANCE
    of the median h / w), that aspect at about ``image_size``**2 pixels, each side a multiple of 32;
    otherwise the square image_size x image_size.

    One token grid for every image (the Swin's windows and the exported detector need one), but
    shaped like the parts: a 250 x 630 px part becomes 160 x 416 instead of 256 x 256, so a token
    covers a square of the part rather than a strip 2.5 times wider than high. Images of many
    aspects (magnetic_tile: 22 % within 10 % of the median) stay square: the median grid squashes
    them as much as the square does, and on magnetic_tile's validation part it lost to the square
    (SemiREST un pixel AP 22.4 vs 23.4, PRO 74.6 vs 75.8; BENCHMARKS.md, model input shape)."""
    if not sizes:
        return (image_size, image_size)
    aspects = np.array([h / max(w, 1) for h, w in sizes], dtype=np.float64)
    aspect = float(np.median(aspects))
    if np.mean(np.abs(aspects / aspect - 1.0) <= SHARED_ASPECT_TOLERANCE) < SHARED_ASPECT_SHARE:
        return (image_size, image_size)
    budget = float(image_size) ** 2
    m = SCALED_SIDE_MULTIPLE
    w = math.sqrt(budget / aspect)
    h = w * aspect
    if min(h, w) < m:  # a strip: the short side is one cell, the long side takes the rest of the budget
        h, w = (m, budget / m) if h < w else (budget / m, m)
    return (max(m, int(round(h / m)) * m), max(m, int(round(w / m)) * m))


def model_input_size(fc) -> tuple[int, int]:
    """The (h, w) model input of a FeatureConfig: its fixed "HxW", else image_size x image_size (an
    input size not yet chosen from training images)."""
    if "x" in fc.input_size:
        h, w = fc.input_size.split("x")
        return (int(h), int(w))
    return (fc.image_size, fc.image_size)


def choose_input_size(fc, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """Fix ``fc.input_size`` to the "HxW" training uses (from the training images' (h, w) ``sizes``
    for "images"; an input size already fixed is kept) and return it."""
    if fc.input_size == "images":
        h, w = shaped_input_size(list(sizes), fc.image_size)
    else:
        h, w = model_input_size(fc)
    fc.input_size = f"{h}x{w}"
    return (h, w)


def images_to_tensor(images: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """RGB uint8 images of any sizes -> float (B, 3, h, w) in [0, 1] at the model input size."""
    return torch.from_numpy(resize_batch(images, size)).permute(0, 3, 1, 2).float().div_(255.0)
