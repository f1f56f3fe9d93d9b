"""Where an anomaly may go: MemSeg's per-category foreground rule, or Otsu with the image border as
background ("auto"); texture categories get no restriction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForegroundRule:
    """MemSeg's foreground rule: grey > ``threshold`` is the bright part; the object is the bright
    part if ``bright_is_foreground`` (MemSeg's ``bg_reverse``), else the dark part."""

    threshold: int
    bright_is_foreground: bool


# MemSeg's anomaly_mask.json (TooTouch/MemSeg @ 836bd46), algorithm reference section 2.
# None: no foreground restriction (textures and cable, whose background is part of the product).
MEMSEG_FOREGROUND: dict[str, ForegroundRule | None] = {
    "bottle": ForegroundRule(250, False),
    "cable": None,
    "capsule": ForegroundRule(120, False),
    "carpet": None,
    "grid": None,
    "hazelnut": ForegroundRule(50, True),
    "leather": None,
    "metal_nut": ForegroundRule(40, True),
    "pill": ForegroundRule(100, True),
    "screw": ForegroundRule(110, False),
    "tile": None,
    "toothbrush": ForegroundRule(30, True),
    "transistor": ForegroundRule(90, False),
    "wood": None,
    "zipper": ForegroundRule(100, False),
}

# Other categories we know to be texture-like surfaces (anomalies may appear anywhere).
TEXTURE_CATEGORIES = frozenset({"magnetic_tile", "demo"})

ForegroundSpec = str | ForegroundRule | None


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)


def auto_foreground(image: np.ndarray, border_purity: float = 0.9) -> np.ndarray | None:
    """Otsu foreground for a category without a table entry, or None if the image looks like a
    texture.

    The polarity is the one that makes the image border background (objects are photographed
    whole, inside the frame). If the border is not at least ``border_purity`` one class, or the
    "object" covers almost nothing or almost everything, there is no clear object and the whole
    image is allowed (returns None), which is the right answer for textures.
    """
    g = cv2.GaussianBlur(_gray(image), (5, 5), 0)
    t, _ = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bright = g > t
    h, w = bright.shape
    b = max(2, round(0.02 * min(h, w)))
    ring = np.concatenate(
        [bright[:b].ravel(), bright[-b:].ravel(), bright[b:-b, :b].ravel(), bright[b:-b, -b:].ravel()]
    )
    frac = float(ring.mean()) if ring.size else 0.5
    if frac >= border_purity:
        fg = ~bright
    elif frac <= 1.0 - border_purity:
        fg = bright
    else:
        return None
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, k)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, k).astype(bool)
    area = float(fg.mean())
    if area < 0.01 or area > 0.95:
        return None
    return fg


def resolve_foreground(spec: ForegroundSpec) -> ForegroundSpec:
    """Normalise a foreground spec to a ForegroundRule, "auto" or None.

    Category names of the MemSeg table get their rule; known texture categories and "none" get
    None; any other name gets "auto" (logged), so a new object category still has its background
    kept clean and a new texture category degrades to no mask.
    """
    if spec is None or isinstance(spec, ForegroundRule):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"foreground must be a category name, 'auto', None or a ForegroundRule, got {spec!r}")
    name = spec.strip().lower()
    if name == "auto":
        return "auto"
    if name in ("none", ""):
        return None
    if name in MEMSEG_FOREGROUND:
        return MEMSEG_FOREGROUND[name]
    if name in TEXTURE_CATEGORIES:
        return None
    log.info("no foreground rule for category %r: using the automatic (Otsu) foreground", spec)
    return "auto"


def foreground_mask(image: np.ndarray, spec: ForegroundSpec) -> np.ndarray:
    """Boolean (H, W) mask of where synthetic anomalies may go (all True when there is no rule)."""
    rule = resolve_foreground(spec)
    h, w = image.shape[:2]
    if rule is None:
        return np.ones((h, w), bool)
    if rule == "auto":
        fg = auto_foreground(image)
        return np.ones((h, w), bool) if fg is None else fg
    bright = _gray(image) > rule.threshold
    fg = bright if rule.bright_is_foreground else ~bright
    if not fg.any():  # an odd image (e.g. overexposed) must not make anomalies impossible
        return np.ones((h, w), bool)
    return fg
