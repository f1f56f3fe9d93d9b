"""Metrics checked against slow, obviously-correct references and hand-computed answers.

The references follow the definitions literally (docs/algorithm-reference.md §3): a loop over every
distinct threshold for PRO, pairwise counting for AUROC, precision at each positive for AP. The
random cases have heavy score ties (also between normal and defect pixels), images of different
sizes, a good image, several regions per image and regions touching only at a corner.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from semirest.core import metrics as M
from semirest.core.maps import upsample_and_smooth
from semirest.core.metrics import evaluate, image_auroc, pixel_ap, pixel_auroc, pro_score

EIGHT = np.ones((3, 3), int)                       # official structuring element
FOUR = ndimage.generate_binary_structure(2, 1)     # the wrong one, to prove the tests can tell


# --------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------

def ref_pro(maps, masks, fpr_limit=0.3, structure=EIGHT):
    """PRO curve by brute force at every distinct score, then numpy.trapezoid up to the limit."""
    regions, normal = [], []
    for m, g in zip(maps, masks):
        lab, n = ndimage.label(np.asarray(g) != 0, structure=structure)
        regions += [m[lab == r] for r in range(1, n + 1)]
        normal.append(m[lab == 0])
    normal = np.concatenate(normal)
    fpr, pro = [0.0], [0.0]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        fpr.append(np.mean(normal >= t))
        pro.append(np.mean([np.mean(r >= t) for r in regions]))
    fpr, pro = np.array(fpr + [1.0]), np.array(pro + [1.0])
    beyond = np.flatnonzero(fpr > fpr_limit)
    if beyond.size:
        i = beyond[0]
        y_lim = pro[i - 1] + (pro[i] - pro[i - 1]) * (fpr_limit - fpr[i - 1]) / (fpr[i] - fpr[i - 1])
        fpr, pro = np.append(fpr[:i], fpr_limit), np.append(pro[:i], y_lim)
    return np.trapezoid(pro, fpr) / fpr_limit


def _pos_neg(maps, masks):
    s = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
    y = np.concatenate([(np.asarray(g) != 0).ravel() for g in masks])
    return s[y], s[~y]


def ref_auroc(maps, masks):
    """P(positive scores higher than negative), ties count 1/2, by counting all pairs."""
    pos, neg = _pos_neg(maps, masks)
    wins = np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])
    return wins / (pos.size * neg.size)


def ref_ap(maps, masks):
    """Mean over positive pixels of the precision at the threshold equal to its score."""
    pos, neg = _pos_neg(maps, masks)
    return np.mean([np.sum(pos >= p) / (np.sum(pos >= p) + np.sum(neg >= p)) for p in pos])


def ref_image_auroc(maps, masks):
    s = np.array([np.max(m) for m in maps], np.float64)
    y = np.array([np.any(g) for g in masks])
    p, n = s[y], s[~y]
    return (np.sum(p[:, None] > n[None, :]) + 0.5 * np.sum(p[:, None] == n[None, :])) / (p.size * n.size)


# --------------------------------------------------------------------------------------------
# random cases
# --------------------------------------------------------------------------------------------

def random_case(seed, ties=True):
    """A few images of different sizes; image 1 is good; others have several regions."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for idx in range(5):
        h, w = (int(v) for v in rng.integers(6, 19, 2))
        g = np.zeros((h, w), np.uint8)
        if idx != 1:
            for _ in range(rng.integers(1, 4)):
                y, x = rng.integers(0, h), rng.integers(0, w)
                dy, dx = rng.integers(1, 4, 2)
                g[y:y + dy, x:x + dx] = 1
            y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
            g[y, x] = g[y + 1, x + 1] = 1  # corner-touching pair: one region only with 8-connectivity
        if ties:
            m = (rng.integers(0, 6, (h, w)) + g * rng.integers(0, 4, (h, w))).astype(np.float32) / 2
        else:
            m = rng.random((h, w)) + 0.3 * g * rng.random((h, w))
        if idx == 3:
            g = g * 255  # masks may be 0/255 images: nonzero is a defect
        maps.append(m)
        masks.append(g)
    return maps, masks


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [True, False])
def test_pixel_auroc_and_ap_match_references(seed, ties):
    maps, masks = random_case(seed, ties)
    pos, neg = _pos_neg(maps, masks)
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    s = np.r_[pos, neg]
    assert pixel_auroc(maps, masks) == pytest.approx(ref_auroc(maps, masks), abs=1e-12)
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pixel_ap(maps, masks) == pytest.approx(ref_ap(maps, masks), abs=1e-12)
    assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.07, 1.0])
def test_pro_matches_brute_force_reference(seed, ties, fpr_limit):
    maps, masks = random_case(seed, ties)
    assert pro_score(maps, masks, fpr_limit) == pytest.approx(ref_pro(maps, masks, fpr_limit), abs=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 7])
@pytest.mark.parametrize("seed", SEEDS)
def test_pro_is_independent_of_chunking(monkeypatch, chunk, seed):
    """Tiny chunks put run and limit crossings on chunk boundaries."""
    maps, masks = random_case(seed)
    expected = ref_pro(maps, masks)
    monkeypatch.setattr(M, "_CHUNK", chunk)
    assert pro_score(maps, masks) == pytest.approx(expected, abs=1e-12)


def test_pro_uses_8_connectivity():
    g = np.zeros((6, 6), np.uint8)
    g[0, 0] = g[1, 1] = 1       # one region with 8-connectivity, two with 4
    g[3:5, 3:6] = 1
    m = np.tile(np.linspace(1, 3, 6), (6, 1))
    m[0, 0], m[1, 1], m[3:5, 3:6] = 5.0, 0.0, 2.2
    maps, masks = [m], [g]
    eight, four = ref_pro(maps, masks, structure=EIGHT), ref_pro(maps, masks, structure=FOUR)
    assert abs(eight - four) > 0.01  # the case really distinguishes the two
    assert pro_score(maps, masks) == pytest.approx(eight, abs=1e-12)
    assert M._pixel_set(*M._validate(maps, masks)).n_regions == 2


@pytest.mark.parametrize("seed", SEEDS)
def test_image_auroc_matches_reference(seed):
    maps, masks = random_case(seed, ties=True)
    maps += [np.full((5, 5), 2.5, np.float32), np.full((4, 6), 1.0, np.float32)]  # more good images
    masks += [np.zeros((5, 5)), np.zeros((4, 6))]
    assert image_auroc(maps, masks) == pytest.approx(ref_image_auroc(maps, masks), abs=1e-12)


def test_evaluate_equals_the_single_metrics():
    maps, masks = random_case(3)
    r = evaluate(maps, masks)
    assert set(r) == {"pixel_auroc", "pro", "ap", "image_auroc"}
    assert r["pixel_auroc"] == pixel_auroc(maps, masks)
    assert r["pro"] == pro_score(maps, masks)
    assert r["ap"] == pixel_ap(maps, masks)
    assert r["image_auroc"] == image_auroc(maps, masks)
    assert all(type(v) is float and 0.0 <= v <= 1.0 for v in r.values())


# --------------------------------------------------------------------------------------------
# known answers
# --------------------------------------------------------------------------------------------

def test_hand_computed_example():
    # Region = first two pixels; normal scores 2, 0, 0, 0. Curve: (0,0) (0,.5) (.25,.5) (.25,1) (1,1).
    maps = [np.array([[3.0, 1.0, 2.0, 0.0, 0.0, 0.0]])]
    masks = [np.array([[1, 1, 0, 0, 0, 0]])]
    assert pro_score(maps, masks) == pytest.approx((0.25 * 0.5 + 0.05 * 1.0) / 0.3, abs=1e-15)  # 7/12
    assert pro_score(maps, masks, fpr_limit=1.0) == pytest.approx(0.875, abs=1e-15)
    assert pixel_auroc(maps, masks) == pytest.approx(7 / 8, abs=1e-15)  # 3 beats 4, 1 beats 3
    assert pixel_ap(maps, masks) == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)


def test_perfect_map_scores_one_everywhere():
    _, masks = random_case(0)
    maps = [(np.asarray(g) != 0).astype(np.float32) for g in masks]
    r = evaluate(maps, masks)
    assert r == {"pixel_auroc": 1.0, "pro": 1.0, "ap": 1.0, "image_auroc": 1.0}


def test_constant_map():
    _, masks = random_case(1)
    maps = [np.full(np.shape(g), 0.7, np.float32) for g in masks]
    pos, neg = _pos_neg(maps, masks)
    r = evaluate(maps, masks)
    assert r["pixel_auroc"] == 0.5
    assert r["image_auroc"] == 0.5
    assert r["ap"] == pytest.approx(pos.size / (pos.size + neg.size), abs=1e-15)
    assert r["pro"] == pytest.approx(0.15, abs=1e-15)  # PRO = FPR = 1 at once: area of y=x up to 0.3


def test_inverted_map_scores_zero():
    _, masks = random_case(2)
    maps = [1.0 - (np.asarray(g) != 0) for g in masks]
    assert pixel_auroc(maps, masks) == 0.0
    assert pro_score(maps, masks) == 0.0
    # image level: the good images get the higher maxima
    img_maps = [np.full(np.shape(g), 0.5 if np.any(g) else 1.0) for g in masks]
    assert image_auroc(img_maps, masks) == 0.0


def test_float64_scores_are_not_rounded_to_float32():
    g = np.zeros((4, 4), bool)
    g[1:3, 1:3] = True
    m = np.where(g, 1.0 + 1e-12, 1.0)  # equal in float32
    assert pixel_auroc([m], [g]) == 1.0
    assert pro_score([m], [g]) == 1.0
    assert pixel_auroc([m.astype(np.float32)], [g]) == 0.5


def test_integer_and_bool_maps():
    maps, masks = random_case(4)
    int_maps = [(np.asarray(m) * 2).astype(np.uint8) for m in maps]
    assert pixel_auroc(int_maps, masks) == pytest.approx(ref_auroc(int_maps, masks), abs=1e-12)
    assert pro_score(int_maps, masks) == pytest.approx(ref_pro(int_maps, masks), abs=1e-12)
    assert pixel_auroc([np.asarray(g) != 0 for g in masks], masks) == 1.0


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

ALL = [pixel_auroc, pixel_ap, pro_score, image_auroc, evaluate]


@pytest.mark.parametrize("fn", ALL)
def test_empty_and_mismatched_lists(fn):
    with pytest.raises(ValueError, match="non-empty"):
        fn([], [])
    with pytest.raises(ValueError, match="2 anomaly maps but 1 masks"):
        fn([np.zeros((2, 2))] * 2, [np.ones((2, 2))])


@pytest.mark.parametrize("fn", ALL)
def test_shape_mismatch_names_image_and_shapes(fn):
    maps = [np.zeros((3, 3)), np.zeros((4, 5))]
    masks = [np.ones((3, 3)), np.ones((5, 4))]
    with pytest.raises(ValueError, match=r"image 1: .*\(4, 5\).*\(5, 4\)"):
        fn(maps, masks)
    with pytest.raises(ValueError, match="image 0: anomaly map must be 2-D"):
        fn([np.zeros((1, 3, 3))], [np.ones((3, 3))])


@pytest.mark.parametrize("fn", ALL)
def test_non_finite_maps_are_rejected(fn):
    maps, masks = random_case(0)
    maps[2] = maps[2].copy()
    maps[2][0, 0] = np.nan
    with pytest.raises(ValueError, match="image 2: anomaly map contains NaN"):
        fn(maps, masks)
    maps[2][0, 0] = np.inf
    with pytest.raises(ValueError, match="image 2: anomaly map contains infinite"):
        fn(maps, masks)


@pytest.mark.parametrize("fn", [pixel_auroc, pixel_ap, pro_score, evaluate])
def test_pixel_metrics_without_defects_raise(fn):
    maps = [np.random.default_rng(0).random((4, 4)) for _ in range(2)]
    with pytest.raises(ValueError, match="no defect pixel"):
        fn(maps, [np.zeros((4, 4))] * 2)
    with pytest.raises(ValueError, match="every pixel is a defect"):
        fn(maps, [np.ones((4, 4))] * 2)


def test_image_auroc_with_one_class_is_nan_without_warning():
    maps = [np.random.default_rng(0).random((4, 4)) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(image_auroc(maps, [np.zeros((4, 4))] * 3))
        assert math.isnan(image_auroc(maps, [np.eye(4)] * 3))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fpr_limit(bad):
    maps, masks = random_case(0)
    with pytest.raises(ValueError, match="fpr_limit"):
        pro_score(maps, masks, bad)
    with pytest.raises(ValueError, match="fpr_limit"):
        evaluate(maps, masks, bad)


# --------------------------------------------------------------------------------------------
# upsample_and_smooth
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw,out_hw", [((28, 28), (320, 320)), ((28, 37), (250, 333)), ((5, 5), (8, 40)),
                                        ((64, 64), (32, 32))])
def test_smoothing_matches_scipy_gaussian_filter(hw, out_hw):
    import cv2

    t = np.random.default_rng(0).random(hw).astype(np.float32)
    got = upsample_and_smooth(t, out_hw)
    assert got.dtype == np.float32 and got.shape == out_hw
    up = cv2.resize(t, out_hw[::-1], interpolation=cv2.INTER_LINEAR)
    expected = ndimage.gaussian_filter(up.astype(np.float64), sigma=4.0, truncate=4.0)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.abs(got - up).max() > 0.05  # the blur did something


def test_upsampling_matches_torch_bilinear_align_corners_false():
    torch = pytest.importorskip("torch")
    t = np.random.default_rng(1).random((28, 37)).astype(np.float32)
    got = upsample_and_smooth(t, (250, 333), sigma=0)
    expected = torch.nn.functional.interpolate(torch.from_numpy(t)[None, None], size=(250, 333),
                                               mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_gaussian_is_truncated_at_four_sigma():
    impulse = np.zeros((64, 64), np.float32)
    impulse[32, 32] = 1.0
    out = upsample_and_smooth(impulse, (64, 64), sigma=4.0)
    assert out[32, 32 + 16] > 0 and out[32 + 16, 32 + 16] > 0
    assert out[32, 32 + 17] == 0 and out[32 + 17, 32] == 0
    assert out.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("args", [(np.zeros((2, 2, 2)), (4, 4)), (np.zeros((2, 2)), (0, 4)),
                                  (np.zeros((2, 2)), (4,)), (np.zeros((2, 2)), "ab")])
def test_smoothing_rejects_bad_input(args):
    with pytest.raises(ValueError):
        upsample_and_smooth(*args)


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf")])
def test_smoothing_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        upsample_and_smooth(np.zeros((2, 2)), (4, 4), sigma=sigma)


def test_sigma_zero_is_plain_bilinear_upsampling():
    t = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(upsample_and_smooth(t, (3, 4), sigma=0), t)
