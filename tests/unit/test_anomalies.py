"""MemSeg-style synthetic anomalies: determinism, mask/image agreement, areas, foreground."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from semirest.core.data.images import read_image
from semirest.core.train.synthetic import (
    MEMSEG_FOREGROUND,
    ForegroundRule,
    PerlinField,
    SyntheticAnomalies,
    foreground_mask,
    perlin_noise,
    procedural_texture,
    resolve_foreground,
    shuffle_grid,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SCREW = DATA / "mvtec" / "screw" / "train" / "good"
TILE = DATA / "magnetic_tile" / "magnetic_tile" / "train" / "good"


def _real(folder: Path, n: int) -> list[np.ndarray]:
    if not folder.is_dir():
        pytest.skip(f"real images not available at {folder}")
    paths = sorted(folder.glob("*.png"))[:n]
    return [read_image(p) for p in paths]


def _texture_image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed).integers(60, 200, size=(h, w), dtype=np.uint8)
    g = cv2.GaussianBlur(g, (5, 5), 0)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)


def _object_image(h: int = 128, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A dark textured disc on a bright background, and the disc's mask."""
    img = np.full((h, w), 210, np.uint8)
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (w // 2, h // 2), min(h, w) // 4, 1, -1)
    noise = np.random.default_rng(1).integers(40, 90, size=(h, w), dtype=np.uint8)
    img[disc > 0] = noise[disc > 0]
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), disc.astype(bool)


# -- Perlin noise ---------------------------------------------------------------------------


def test_perlin_is_deterministic_bounded_and_not_flat():
    a = perlin_noise((64, 80), (4, 2), np.random.default_rng(3), angle=30)
    b = perlin_noise((64, 80), (4, 2), np.random.default_rng(3), angle=30)
    c = perlin_noise((64, 80), (4, 2), np.random.default_rng(4), angle=30)
    assert a.shape == (64, 80) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.abs(a).max() <= 1.01  # sqrt(2) * |gradient . offset| interpolation stays within [-1, 1]
    assert a.std() > 0.05


def test_perlin_frequency_follows_the_requested_periods():
    # More periods along x -> more sign changes along a row; none along y when ry = 1 is coarse.
    def crossings(rx: int) -> float:
        a = perlin_noise((64, 256), (1, rx), np.random.default_rng(rx), angle=0.0)
        return float(np.mean(np.count_nonzero(np.diff(np.sign(a), axis=1) != 0, axis=1)))

    c1, c8, c32 = crossings(1), crossings(8), crossings(32)
    assert c1 < c8 < c32
    assert c32 >= 16  # a gradient noise period has about one to two zero crossings


def test_render_matches_exact_field_after_threshold():
    for res, angle, shape in [((1, 1), 0, (256, 256)), ((32, 8), 37, (512, 300)), ((4, 4), -80, (100, 630))]:
        f = PerlinField(shape, res, np.random.default_rng(1), angle)
        exact, fast = f.sample(), f.render(256)
        assert fast.shape == exact.shape
        assert np.mean((exact > 0.5) != (fast > 0.5)) < 0.01


def test_rotation_has_no_empty_corners():
    # DRAEM rotates the finished noise image and leaves zero corners; we must not.
    for angle in (45.0, -60.0, 89.0):
        a = perlin_noise((128, 128), (2, 2), np.random.default_rng(5), angle=angle)
        corner = a[:16, :16]
        assert corner.std() > 1e-3 or abs(float(corner.mean())) > 1e-3


# -- foreground -----------------------------------------------------------------------------


def test_memseg_table_covers_the_15_mvtec_categories():
    mvtec = {
        "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
        "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
    }  # fmt: skip
    assert set(MEMSEG_FOREGROUND) == mvtec
    assert MEMSEG_FOREGROUND["screw"] == ForegroundRule(110, False)
    assert MEMSEG_FOREGROUND["hazelnut"] == ForegroundRule(50, True)
    for tex in ("carpet", "grid", "leather", "tile", "wood", "cable"):
        assert MEMSEG_FOREGROUND[tex] is None


def test_resolve_foreground():
    assert resolve_foreground("SCREW") == ForegroundRule(110, False)
    assert resolve_foreground("magnetic_tile") is None
    assert resolve_foreground(None) is None
    assert resolve_foreground("none") is None
    assert resolve_foreground("auto") == "auto"
    assert resolve_foreground("my_new_widget") == "auto"
    with pytest.raises(TypeError):
        resolve_foreground(3)  # type: ignore[arg-type]


def test_auto_foreground_finds_object_and_ignores_texture():
    img, disc = _object_image()
    fg = foreground_mask(img, "auto")
    iou = (fg & disc).sum() / (fg | disc).sum()
    assert iou > 0.9
    assert foreground_mask(_texture_image(), "auto").all()


def test_rule_polarity():
    img, disc = _object_image()
    dark = foreground_mask(img, ForegroundRule(128, bright_is_foreground=False))
    bright = foreground_mask(img, ForegroundRule(128, bright_is_foreground=True))
    assert np.array_equal(dark, disc)
    assert np.array_equal(bright, ~disc)


# -- generator ------------------------------------------------------------------------------


def test_same_seed_same_output_and_different_seed_different_output():
    img = _texture_image(128, 160)
    gen = SyntheticAnomalies(foreground=None)
    a, ma = gen.generate(img, np.random.default_rng(42))
    b, mb = gen.generate(img, np.random.default_rng(42))
    c, mc = gen.generate(img, np.random.default_rng(43))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not (np.array_equal(a, c) and np.array_equal(ma, mc))
    assert a.dtype == np.uint8 and a.shape == img.shape and ma.dtype == bool and ma.shape == img.shape[:2]


@pytest.mark.parametrize("texture_probability", [0.0, 1.0])
def test_outside_mask_unchanged_inside_changed(texture_probability):
    img = _texture_image(96, 128, seed=2)
    gen = SyntheticAnomalies(foreground=None, texture_probability=texture_probability)
    for seed in range(25):
        aug, mask = gen.generate(img, np.random.default_rng(seed))
        assert mask.any()
        assert np.array_equal(aug[~mask], img[~mask])
        changed = np.any(aug != img, axis=2)
        assert not (changed & ~mask).any()
        assert changed[mask].mean() > 0.3, f"seed {seed}: anomaly barely changes the image"


def test_mask_area_bounds():
    img = _texture_image(128, 128, seed=3)
    gen = SyntheticAnomalies(foreground=None)
    areas = [gen.generate(img, np.random.default_rng(s))[1].mean() for s in range(40)]
    assert min(areas) >= gen.min_area_fraction
    assert max(areas) < 0.6
    assert np.median(areas) > 0.01


def test_fallback_blob_when_perlin_never_hits_a_tiny_object():
    # 2 % of the image is foreground; with no retries the fallback must still deliver a mask
    # inside the object of at least min(min_area, half the object).
    img = np.full((100, 100, 3), 220, np.uint8)
    img[40:50, 40:60] = 30
    gen = SyntheticAnomalies(foreground=ForegroundRule(128, False), max_retries=0, min_area_fraction=0.5)
    fg = gen.foreground_mask(img)
    for seed in range(10):
        _, mask = gen.generate(img, np.random.default_rng(seed))
        assert mask.any() and not (mask & ~fg).any()
        assert mask.sum() >= 0.5 * fg.sum()


def test_grayscale_input_gives_grayscale_anomaly():
    img = _texture_image()
    gen = SyntheticAnomalies(foreground=None)
    for seed in range(10):
        aug, _ = gen.generate(img, np.random.default_rng(seed))
        assert np.array_equal(aug[:, :, 0], aug[:, :, 1]) and np.array_equal(aug[:, :, 1], aug[:, :, 2])


def test_colour_input_may_get_colour_and_odd_sizes_work():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(37, 53, 3), dtype=np.uint8)
    gen = SyntheticAnomalies(foreground=None)
    aug, mask = gen.generate(img, rng)
    assert aug.shape == img.shape and mask.shape == (37, 53)
    aug2, mask2 = gen.generate(img[:, :, 0].copy(), np.random.default_rng(1))  # 2-D grey input
    assert aug2.shape == (37, 53, 3)


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        SyntheticAnomalies(transparency_range=(0.5, 1.5))
    with pytest.raises(ValueError):
        SyntheticAnomalies(scale_exponents=(3, 3))
    with pytest.raises(ValueError):
        SyntheticAnomalies(n_ops=11)


def test_shuffle_grid_is_a_permutation_of_cells():
    img = np.arange(16 * 24 * 3, dtype=np.int64).reshape(16, 24, 3) % 251
    img = img.astype(np.uint8)
    out = shuffle_grid(img, 8, np.random.default_rng(0))
    assert out.shape == img.shape
    assert not np.array_equal(out, img)
    assert np.array_equal(np.sort(out.ravel()), np.sort(img.ravel()))
    odd = shuffle_grid(np.zeros((37, 53, 3), np.uint8), 8, np.random.default_rng(0))
    assert odd.shape == (37, 53, 3)


def test_procedural_textures_have_grey_level_variety():
    rng = np.random.default_rng(0)
    for kind in ("fractal", "stripes", "checker", "blobs", "lines"):
        for _ in range(3):
            tex = procedural_texture((64, 96), rng, kind)
            grey = cv2.cvtColor(tex, cv2.COLOR_RGB2GRAY).astype(np.float32)
            assert tex.shape == (64, 96, 3) and tex.dtype == np.uint8
            assert np.percentile(grey, 95) - np.percentile(grey, 5) > 20, kind


def test_512_image_is_fast():
    img = cv2.resize(_texture_image(128, 128), (512, 512))
    gen = SyntheticAnomalies(foreground=None)
    rng = np.random.default_rng(0)
    gen.generate(img, rng)
    t = time.perf_counter()
    for _ in range(10):
        gen.generate(img, rng)
    per = (time.perf_counter() - t) / 10
    # Typically ~12 ms on one shared core; the bound only catches gross regressions.
    assert per < 0.15, f"{per * 1000:.0f} ms per 512x512 anomaly"


# -- real images ----------------------------------------------------------------------------


def test_screw_anomalies_stay_on_the_screw():
    imgs = _real(SCREW, 6)
    gen = SyntheticAnomalies(foreground="screw")
    for i, img in enumerate(imgs):
        fg = gen.foreground_mask(img)
        # The screw is a small dark object on a bright background.
        assert 0.02 < fg.mean() < 0.25
        assert not fg[:3].any() and not fg[-3:].any()
        for seed in range(5):
            aug, mask = gen.generate(img, np.random.default_rng(100 * i + seed))
            assert mask.any()
            assert not (mask & ~fg).any(), "anomaly pixels outside the screw"
            assert np.array_equal(aug[~mask], img[~mask])


def test_magnetic_tile_is_texture_like():
    imgs = _real(TILE, 4)
    gen = SyntheticAnomalies(foreground="magnetic_tile")
    for i, img in enumerate(imgs):
        assert gen.foreground_mask(img).all()
        aug, mask = gen.generate(img, np.random.default_rng(i))
        assert mask.mean() >= gen.min_area_fraction
        assert np.array_equal(aug[~mask], img[~mask])
