"""MVTec layout reading: real data counts, and clear messages for wrong layouts."""
from __future__ import annotations

import numpy as np
import pytest

from semirest.core.data.datasets import DatasetLayoutError, list_categories, load_image_folder, load_mvtec_category, split_budget, split_validation
from semirest.core.data.images import write_png


def _layout(root, with_mask=True):
    img = np.full((20, 30), 128, np.uint8)
    for rel in ("cat/train/good/000.png", "cat/train/good/001.png", "cat/test/good/000.png", "cat/test/crack/000.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_png(root / rel, img)
    if with_mask:
        (root / "cat/ground_truth/crack").mkdir(parents=True)
        m = np.zeros((20, 30), bool)
        m[5:8, 5:9] = True
        write_png(root / "cat/ground_truth/crack/000_mask.png", m)


def test_real_screw_counts(screw_root):
    cat = load_mvtec_category(screw_root, "screw")
    assert len(cat.train) == 320 and len(cat.test) == 160
    assert cat.defect_types == ["manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top"]
    s = next(s for s in cat.test if s.is_anomalous)
    img = s.load_image()
    assert s.load_mask(img.shape[:2]).any()


def test_minimal_layout(tmp_path):
    _layout(tmp_path)
    cat = load_mvtec_category(tmp_path, "cat")
    assert [s.defect_type for s in cat.test] == ["crack", "good"]
    cat.check_masks()
    assert list_categories(tmp_path) == ["cat"]


def test_missing_mask_names_the_expected_file(tmp_path):
    _layout(tmp_path, with_mask=False)
    with pytest.raises(DatasetLayoutError, match=r"crack/000\.png: defective test image has no mask; expected .*000_mask\.png"):
        load_mvtec_category(tmp_path, "cat")


def test_mis_sized_mask_is_reported(tmp_path):
    _layout(tmp_path, with_mask=False)
    (tmp_path / "cat/ground_truth/crack").mkdir(parents=True)
    write_png(tmp_path / "cat/ground_truth/crack/000_mask.png", np.ones((10, 10), bool))
    cat = load_mvtec_category(tmp_path, "cat")
    with pytest.raises(ValueError, match="mask is 10x10 pixels but its image is 30x20"):
        cat.check_masks()


def test_wrong_layouts(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_mvtec_category(tmp_path / "nowhere", "cat")
    _layout(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"category folder does not exist \(categories found: cat\)"):
        load_mvtec_category(tmp_path, "bottle")
    # pointing at the category itself instead of its parent
    with pytest.raises(DatasetLayoutError, match="looks like a category: pass its parent"):
        load_mvtec_category(tmp_path / "cat", "cat")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetLayoutError, match="no category found"):
        list_categories(tmp_path / "flat")
    (tmp_path / "x/train/good").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="contains no images"):
        load_mvtec_category(tmp_path, "x")


def test_image_folder(tmp_path):
    with pytest.raises(DatasetLayoutError, match="contains no image files"):
        load_image_folder(tmp_path)
    write_png(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "readme.txt").write_text("x")
    assert [s.path.name for s in load_image_folder(tmp_path)] == ["a.png", "b.png"]


def test_budget_split_spreads_over_types_and_is_seeded(screw_root):
    cat = load_mvtec_category(screw_root, "screw")
    drawn, rest = split_budget(cat.test, 10, seed=3)
    assert len(drawn) == 10 and len(rest) == len(cat.test) - 10
    counts = {t: sum(s.defect_type == t for s in drawn) for t in cat.defect_types}
    assert all(c == 2 for c in counts.values())  # 10 over 5 types
    assert not set(drawn) & set(rest)
    assert split_budget(cat.test, 10, seed=3)[0] == drawn
    assert split_budget(cat.test, 10, seed=4)[0] != drawn


def test_validation_split_keeps_every_type_on_both_sides_and_is_seeded(screw_root):
    cat = load_mvtec_category(screw_root, "screw")
    _, rest = split_budget(cat.test, 10, seed=0)
    val, test = split_validation(rest, 0.5, seed=0)
    assert sorted(val + test, key=lambda s: s.path) == sorted(rest, key=lambda s: s.path)
    assert not set(val) & set(test)
    for t in {s.defect_type for s in rest}:
        n = sum(s.defect_type == t for s in rest)
        nv = sum(s.defect_type == t for s in val)
        if n >= 2:
            assert 1 <= nv <= n - 1 and abs(nv - n / 2) <= 1
    assert split_validation(rest, 0.5, seed=0) == (val, test)
    assert split_validation(rest, 0.5, seed=1)[0] != val
    with pytest.raises(ValueError, match="fraction"):
        split_validation(rest, 1.0)
