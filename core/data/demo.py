"""A small, deterministic synthetic defect dataset in the MVTec layout.

Why: the tool needs a dataset that exists everywhere (tests, CI, a first run of the studio, the
"try it" button) without downloads or licences. The images imitate a brushed-metal part under
slightly uneven light; the defects imitate four common surface defect types, each drawn with a
mask that is exactly the set of pixels the defect changed:

* ``scratch``: a thin curved line, brighter (specular) or darker than the surface, fading in and
  out along its length;
* ``stain``: an irregular blotch that darkens or lightens the surface and smooths its brushing;
* ``crack``: a jagged, sometimes branching dark line;
* ``hole``: a small pit, dark inside with a shading gradient, a bright rim on the lit side and a
  shadow on the other.

Layout (readable by :func:`semirest.core.data.datasets.load_mvtec_category`)::

    <root>/<category>/train/good/000.png ...
    <root>/<category>/test/good/000.png ...
    <root>/<category>/test/<type>/000.png ...
    <root>/<category>/ground_truth/<type>/000_mask.png      (0/255, same size as the image)
    <root>/<category>/demo_dataset.json                      (the parameters; marks the folder as ours)

Each image has its own random stream derived from (seed, split, type, index), so the same seed
gives byte-identical files, and changing one count does not change the other images.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from semirest.core.data.images import write_png
from semirest.core.files import write_json

DEFECT_TYPES: tuple[str, ...] = ("scratch", "stain", "crack", "hole")
MARKER = "demo_dataset.json"

__all__ = ["DEFECT_TYPES", "demo_surface", "draw_defect", "make_demo_dataset"]


# --------------------------------------------------------------------------------------------
# Normal surface
# --------------------------------------------------------------------------------------------


def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """Normalised motion-blur kernel: blurring white noise with it gives brushing streaks."""
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2.0
    dx, dy = math.cos(math.radians(angle_deg)) * c, math.sin(math.radians(angle_deg)) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return k / k.sum()


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (white noise on a cells x cells grid, upsampled)."""
    h, w = shape
    g = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    up = cv2.resize(g, (w + 2 * w // cells, h + 2 * h // cells), interpolation=cv2.INTER_CUBIC)
    up = up[h // cells : h // cells + h, w // cells : w // cells + w]
    return (up - up.mean()) / (up.std() + 1e-6)


def demo_surface(size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A normal brushed-metal surface, float32 grey levels (H, W), roughly 60..200.

    Brushing: horizontal (+-4 degrees) streaks from motion-blurred noise plus a few longer
    machining lines; fine grain; gentle illumination (a linear ramp and a soft hot spot). Every
    normal image differs in all of these, so a detector has to learn the texture, not the pixels.
    """
    h, w = (size, size) if isinstance(size, int) else size
    base = rng.uniform(115, 140)
    angle = rng.uniform(-4, 4)
    pad = 24
    noise = rng.standard_normal((h + 2 * pad, w + 2 * pad)).astype(np.float32)
    streaks = cv2.filter2D(noise, -1, _line_kernel(41, angle), borderType=cv2.BORDER_REFLECT_101)
    streaks = streaks[pad : pad + h, pad : pad + w]
    streaks *= np.float32(rng.uniform(9, 13) / (streaks.std() + 1e-6))
    # Longer machining lines: a few rows with a faint offset, blurred along the brushing direction.
    lines = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    for _ in range(int(rng.integers(3, 8))):
        y = int(rng.integers(0, h + 2 * pad))
        lines[y, :] = rng.choice([-1.0, 1.0]) * rng.uniform(4, 9)
    lines = cv2.GaussianBlur(lines, (0, 0), sigmaX=3.0, sigmaY=0.7)
    m = cv2.getRotationMatrix2D(((w + 2 * pad) / 2, (h + 2 * pad) / 2), -angle, 1.0)
    lines = cv2.warpAffine(lines, m, (w + 2 * pad, h + 2 * pad), flags=cv2.INTER_LINEAR)[pad : pad + h, pad : pad + w]
    grain = rng.standard_normal((h, w)).astype(np.float32) * np.float32(rng.uniform(2.5, 4.0))
    # Illumination: linear ramp in a random direction and a broad soft highlight.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, 2 * math.pi)
    ramp = ((xx / w - 0.5) * math.cos(t) + (yy / h - 0.5) * math.sin(t)) * np.float32(rng.uniform(10, 30))
    hx, hy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    r2 = ((xx - hx) ** 2 + (yy - hy) ** 2) / np.float32((0.45 * max(h, w)) ** 2)
    spot = np.exp(-r2) * np.float32(rng.uniform(5, 20))
    low = _smooth_field((h, w), rng, 4) * np.float32(3.0)
    return (base + streaks + lines + grain + ramp + spot + low).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------


def _bezier(p0, p1, p2, n: int = 64) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


def _along(mask: np.ndarray, pts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For every mask pixel, the value of the nearest polyline point (profile along a curve)."""
    ys, xs = np.nonzero(mask)
    d = (ys[:, None] - pts[None, :, 1]) ** 2 + (xs[:, None] - pts[None, :, 0]) ** 2
    out = np.zeros(mask.shape, np.float32)
    out[ys, xs] = values[np.argmin(d, axis=1)]
    return out


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    length = rng.uniform(0.25, 0.6) * min(h, w)
    a = rng.uniform(0, math.pi)
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    d = np.array([math.cos(a), math.sin(a)]) * length / 2
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    p0, p2 = np.array([cx, cy]) - d, np.array([cx, cy]) + d
    p1 = (p0 + p2) / 2 + n * rng.uniform(-0.25, 0.25) * length
    pts = _bezier(p0, p1, p2)
    mask = np.zeros((h, w), np.uint8)
    cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1, int(rng.integers(1, 3)), cv2.LINE_8)
    mask = mask.astype(bool)
    # Intensity rises and falls along the scratch (never to zero: every mask pixel is changed).
    s = np.linspace(0, 1, len(pts))
    profile = (0.55 + 0.45 * np.sin(np.pi * s) ** 0.5).astype(np.float32)
    sign = 1.0 if rng.random() < 0.6 else -1.0  # specular scratches are more common
    amp = sign * rng.uniform(22, 55)
    out = img.copy()
    out[mask] += np.float32(amp) * _along(mask, pts, profile)[mask]
    return out, mask


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    r = rng.uniform(7, 20)
    cx, cy = rng.uniform(r + 4, w - r - 4), rng.uniform(r + 4, h - r - 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ratio, t = rng.uniform(0.5, 1.0), rng.uniform(0, math.pi)
    du = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
    dv = (-(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)) / ratio
    dist = np.sqrt(du * du + dv * dv) / np.float32(r)
    rough = _smooth_field((h, w), rng, max(4, round(min(h, w) / (r * 0.8))))
    mask = (dist + 0.22 * rough) < 1.0
    # Keep only the component containing the centre: one stain, no specks far away.
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    centre_label = lab[int(round(cy)), int(round(cx))]
    if centre_label == 0:
        centre_label = int(np.argmax(np.bincount(lab[lab > 0]))) if n > 1 else 0
    mask = lab == centre_label
    inner = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    alpha = 0.7 + 0.3 * np.clip(inner / max(1.0, float(inner.max())), 0, 1)
    smooth = cv2.GaussianBlur(img, (0, 0), 2.5)
    amp = np.float32((-1.0 if rng.random() < 0.7 else 1.0) * rng.uniform(16, 40))
    # A deposit shifts the grey level and half hides the brushing (only half, so that a bright
    # streak cannot cancel the shift and leave a labelled pixel unchanged).
    out = img.copy()
    out[mask] = img[mask] + alpha[mask] * (amp + np.float32(0.5) * (smooth[mask] - img[mask]))
    return out, mask


def _crack(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    mask = np.zeros((h, w), np.uint8)

    def walk(x: float, y: float, a: float, steps: int) -> list[tuple[float, float]]:
        # Cracks keep a main direction that drifts slowly, with sharp zig-zags around it.
        pts = [(x, y)]
        for _ in range(steps):
            a += rng.normal(0, 0.12)
            step_a = a + rng.normal(0, 0.55)
            step = rng.uniform(2.0, 4.5)
            x, y = x + step * math.cos(step_a), y + step * math.sin(step_a)
            if not (3 <= x < w - 3 and 3 <= y < h - 3):
                break
            pts.append((x, y))
        return pts

    x0, y0 = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    a0 = rng.uniform(0, 2 * math.pi)
    main = walk(x0, y0, a0, int(rng.integers(14, 30)))
    other = walk(x0, y0, a0 + math.pi, int(rng.integers(6, 18)))
    trunk = other[::-1] + main[1:]
    cv2.polylines(mask, [np.round(np.array(trunk)).astype(np.int32)], False, 1, int(rng.integers(1, 3)), cv2.LINE_8)
    if rng.random() < 0.6 and len(trunk) > 6:  # a thinner side branch
        bx, by = trunk[int(rng.integers(2, len(trunk) - 2))]
        branch = walk(bx, by, a0 + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), int(rng.integers(4, 10)))
        cv2.polylines(mask, [np.round(np.array(branch)).astype(np.int32)], False, 1, 1, cv2.LINE_8)
    mask = mask.astype(bool)
    depth = rng.uniform(0.45, 0.72)  # fraction of light the crack keeps
    out = img.copy()
    out[mask] = img[mask] * np.float32(depth) + rng.normal(0, 2.0, size=int(mask.sum())).astype(np.float32)
    return out, mask


def _hole(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    r = rng.uniform(3.0, 8.0)
    rim = rng.uniform(1.0, 2.0)
    R = r + rim
    cx, cy = rng.uniform(R + 3, w - R - 3), rng.uniform(R + 3, h - R - 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ratio = rng.uniform(0.75, 1.0)
    t = rng.uniform(0, math.pi)
    du = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
    dv = (-(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)) / ratio
    d = np.sqrt(du * du + dv * dv)
    mask = d <= R
    pit = d <= r
    ring = mask & ~pit
    # Light from direction `light`: the rim facing it is bright, the opposite rim is in shadow,
    # and the pit floor is darkest on the lit side (the wall shades it).
    light = rng.uniform(0, 2 * math.pi)
    lx, ly = math.cos(light), math.sin(light)
    facing = ((xx - cx) * lx + (yy - cy) * ly) / np.maximum(d, 1e-3)  # -1..1
    local = cv2.GaussianBlur(img, (0, 0), 4.0)
    out = img.copy()
    floor = rng.uniform(0.35, 0.6)
    shade = floor * (1.0 - 0.35 * facing) + 0.04 * (1 - d / r)
    out[pit] = local[pit] * shade[pit] + rng.normal(0, 3.0, size=int(pit.sum())).astype(np.float32)
    rim_gain = np.where(facing > 0, 1.0 + 0.45 * facing, 1.0 + 0.55 * facing)  # bright / shadow
    out[ring] = local[ring] * rim_gain[ring].astype(np.float32)
    # The rim at the lit/shadow boundary (facing ~ 0) would be unchanged; make it a little darker
    # like a bevel, so that every mask pixel is part of the visible defect.
    flat = ring & (np.abs(facing) < 0.25)
    out[flat] = local[flat] * np.float32(0.8)
    return out, mask


_DEFECTS = {"scratch": _scratch, "stain": _stain, "crack": _crack, "hole": _hole}


def draw_defect(surface: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect of ``kind`` on a float surface; returns (float image, bool mask).

    Pixels outside the mask are returned unchanged (same float values); the mask is exactly the
    region the defect modified.
    """
    if kind not in _DEFECTS:
        raise ValueError(f"unknown defect type {kind!r}; known: {', '.join(_DEFECTS)}")
    for _ in range(20):  # a tiny or clipped defect would be a useless label: redraw
        out, mask = _DEFECTS[kind](surface, rng)
        if mask.sum() >= 15:
            return out, mask
    return out, mask


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------

_SPLIT_CODES = {"train": 0, "test_good": 1, "defect": 2}


def _rng(seed: int, split: str, type_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], type_index, index]))


def make_demo_dataset(
    root: str | os.PathLike,
    seed: int = 0,
    *,
    n_train: int = 40,
    n_test_good: int = 10,
    n_per_defect: int = 8,
    size: int = 256,
    defect_types: tuple[str, ...] = DEFECT_TYPES,
    category: str = "demo",
    overwrite: bool = True,
) -> Path:
    """Write the demo dataset to ``<root>/<category>`` and return that folder.

    The folder is built under a temporary name and renamed at the end, so an interrupted run never
    leaves a half-written dataset. An existing ``<root>/<category>`` is replaced only if it is a
    demo dataset made by this function (it has ``demo_dataset.json``) and ``overwrite`` is true;
    any other existing folder raises FileExistsError rather than being deleted.
    """
    if n_train < 1 or n_test_good < 0 or n_per_defect < 0 or size < 32:
        raise ValueError("need n_train >= 1, n_test_good >= 0, n_per_defect >= 0 and size >= 32")
    unknown = [t for t in defect_types if t not in _DEFECTS]
    if unknown:
        raise ValueError(f"unknown defect types {unknown}; known: {', '.join(_DEFECTS)}")
    root = Path(root)
    final = root / category
    if final.exists():
        if not (final / MARKER).is_file():
            raise FileExistsError(f"{final}: exists and is not a demo dataset; not overwriting it")
        if not overwrite:
            raise FileExistsError(f"{final}: a demo dataset already exists (pass overwrite=True)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{category}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)

    def folder(*parts: str) -> Path:
        p = tmp.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    train_dir = folder("train", "good")
    for i in range(n_train):
        write_png(train_dir / f"{i:03d}.png", _to_uint8(demo_surface(size, _rng(seed, "train", 0, i))))
    good_dir = folder("test", "good")
    for i in range(n_test_good):
        write_png(good_dir / f"{i:03d}.png", _to_uint8(demo_surface(size, _rng(seed, "test_good", 0, i))))
    for t_idx, kind in enumerate(DEFECT_TYPES):
        if kind not in defect_types or n_per_defect == 0:
            continue
        img_dir, gt_dir = folder("test", kind), folder("ground_truth", kind)
        for i in range(n_per_defect):
            rng = _rng(seed, "defect", t_idx, i)
            img, mask = draw_defect(demo_surface(size, rng), kind, rng)
            img8 = _to_uint8(img)
            write_png(img_dir / f"{i:03d}.png", img8)
            write_png(gt_dir / f"{i:03d}_mask.png", mask)
    params = {
        "generator": "semirest.core.data.demo.make_demo_dataset",
        "seed": seed,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_per_defect": n_per_defect,
        "size": size,
        "defect_types": [t for t in DEFECT_TYPES if t in defect_types],
    }

    write_json(tmp / MARKER, params)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
