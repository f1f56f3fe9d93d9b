"""The synthetic demo dataset: layout, determinism, masks that match the drawn defects."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from semirest.core.data.datasets import load_mvtec_category
from semirest.core.data.demo import DEFECT_TYPES, MARKER, demo_surface, draw_defect, make_demo_dataset

SMALL = dict(n_train=3, n_test_good=2, n_per_defect=2, size=96)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_layout_is_readable_and_masks_match_images(tmp_path):
    out = make_demo_dataset(tmp_path, seed=0, **SMALL)
    assert out == tmp_path / "demo"
    cat = load_mvtec_category(tmp_path, "demo")
    assert len(cat.train) == 3
    assert cat.defect_types == sorted(DEFECT_TYPES)
    assert sum(not s.is_anomalous for s in cat.test) == 2
    assert sum(s.is_anomalous for s in cat.test) == 2 * len(DEFECT_TYPES)
    cat.check_masks()  # raises if a mask's size differs from its image's
    for s in cat.test:
        img = s.load_image()
        assert img.shape == (96, 96, 3)
        mask = s.load_mask(img.shape[:2])
        if s.is_anomalous:
            assert 15 <= mask.sum() < 0.2 * mask.size, s.name
        else:
            assert not mask.any()
    for mp in (out / "ground_truth").rglob("*_mask.png"):
        raw = cv2.imread(str(mp), cv2.IMREAD_UNCHANGED)  # raw values: masks must be exactly 0/255
        assert raw.ndim == 2 and set(np.unique(raw)) <= {0, 255}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = make_demo_dataset(tmp_path / "a", seed=3, **SMALL)
    b = make_demo_dataset(tmp_path / "b", seed=3, **SMALL)
    c = make_demo_dataset(tmp_path / "c", seed=4, **SMALL)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert len(da) == 3 + 2 + 2 * 4 * 2 + 1  # images, masks and the marker file
    assert da["train/good/000.png"] != dc["train/good/000.png"]


def test_changing_one_count_keeps_the_other_images(tmp_path):
    a = make_demo_dataset(tmp_path / "a", seed=0, **SMALL)
    b = make_demo_dataset(tmp_path / "b", seed=0, **{**SMALL, "n_train": 5})
    da, db = _digest(a), _digest(b)
    assert da["test/crack/001.png"] == db["test/crack/001.png"]
    assert da["train/good/002.png"] == db["train/good/002.png"]


def test_normal_images_differ_from_each_other(tmp_path):
    out = make_demo_dataset(tmp_path, seed=0, **SMALL)
    d = _digest(out)
    assert len({d[f"train/good/{i:03d}.png"] for i in range(3)}) == 3


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_defect_changes_exactly_the_masked_pixels(kind):
    for i in range(6):
        rng = np.random.default_rng(i)
        surface = demo_surface(128, rng)
        img, mask = draw_defect(surface, kind, rng)
        assert mask.dtype == bool and mask.shape == surface.shape
        assert mask.sum() >= 15
        assert np.array_equal(img[~mask], surface[~mask]), "pixels outside the mask changed"
        s8 = np.clip(np.rint(surface), 0, 255)
        i8 = np.clip(np.rint(img), 0, 255)
        diff = np.abs(i8 - s8)[mask]
        # Clearly visible: the typical masked pixel moves by many grey levels...
        assert np.median(diff) >= 10, f"{kind}: defect too faint"
        # ...and nearly every masked pixel is part of the visible defect.
        assert np.mean(diff >= 3) >= 0.9, f"{kind}: mask larger than the visible defect"
        # Not a trivial black or white blob.
        assert np.mean((i8[mask] <= 5) | (i8[mask] >= 250)) < 0.2


def test_surface_is_textured_but_not_saturated():
    s = demo_surface(128, np.random.default_rng(0))
    assert 60 < s.mean() < 200
    assert 5 < s.std() < 40
    assert np.mean((s < 0) | (s > 255)) < 0.001


def test_refuses_to_overwrite_foreign_folder_and_replaces_its_own(tmp_path):
    foreign = tmp_path / "demo"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_demo_dataset(tmp_path, **SMALL)
    assert (foreign / "precious.txt").read_text() == "keep me"

    own = make_demo_dataset(tmp_path / "x", seed=0, **SMALL)
    (own / "train" / "good" / "999.png").write_bytes(b"stale")
    again = make_demo_dataset(tmp_path / "x", seed=0, **{**SMALL, "n_train": 2})
    assert (again / MARKER).is_file()
    assert sorted(p.name for p in (again / "train" / "good").iterdir()) == ["000.png", "001.png"]
    with pytest.raises(FileExistsError):
        make_demo_dataset(tmp_path / "x", seed=0, overwrite=False, **SMALL)
    assert not list((tmp_path / "x").glob(".*partial"))


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, defect_types=("dent",), **SMALL)
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, n_train=0)
