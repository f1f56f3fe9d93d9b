"""features.input_scale: every image at its own aspect and one fixed scale (PatchCore)."""
from __future__ import annotations

import numpy as np
import pytest

from semirest.core.config import ConfigError, make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.data.demo import make_demo_dataset
from semirest.core.features.patches import scaled_input_size
from semirest.core.data.datasets import load_images
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.methods.patchcore import PatchCore
from semirest.core.train.trainer import prepare_training_data

SMALL = ["features.d_f=64", "features.pretrain_dim=64", "features.lambda_pe=0.0", "bank.coreset_ratio=1.0",
         "device=\"cpu\""]


def test_scaled_input_size_keeps_aspect_on_multiples_of_32():
    assert scaled_input_size((300, 620), 0.75) == (224, 480)
    assert scaled_input_size((320, 320), 0.8) == (256, 256)
    assert scaled_input_size((20, 500), 0.5) == (32, 256)  # never below one stride-32 cell
    with pytest.raises(ValueError):
        scaled_input_size((10, 10), 0.0)


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """Demo images cut to different shapes (tall, wide, square), as magnetic_tile's are."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, seed=0, n_train=6, n_test_good=1, n_per_defect=1, size=128)
    cat = load_mvtec_category(root, "demo")
    shapes = [(128, 64), (64, 128), (96, 96)]
    train = [im[: shapes[i % 3][0], : shapes[i % 3][1]] for i, im in enumerate(load_images(cat.train))]
    return cat, train


def test_patchcore_keeps_each_image_at_its_own_grid(shaped):
    _, train = shaped
    cfg = make_config("fast", "un", SMALL + ["features.input_scale=1.0"])
    ex = FeatureExtractor(cfg.features, "cpu")
    feats = ex.extract_each(train)
    assert [f.shape[:2] for f in feats[:3]] == [(16, 8), (8, 16), (12, 12)]  # stride 8, aspect kept
    pc = PatchCore(ex, cfg.bank, sigma=0.0)
    pc.fit(train)
    assert sorted(set(pc.bank.source_ids.tolist())) == list(range(len(train)))
    # a training image matches itself: ~0 everywhere; the same image with a bright square scores
    # highest inside the square
    probe = train[1].copy()
    probe[16:40, 60:84] = 255
    maps = pc.predict([train[1], probe])
    assert maps[0].shape == train[1].shape[:2] and maps[1].shape == probe.shape[:2]
    assert float(maps[0].max()) < 1e-2
    inside, outside = maps[1][20:36, 64:80].mean(), maps[1][:, :40].mean()
    assert inside > 5 * max(outside, 1e-6)  # the backbone sees the square from afar, too


def test_semirest_refuses_input_scale(shaped):
    _, train = shaped
    cfg = make_config("fast", "un", SMALL + ["features.input_scale=1.0"])
    with pytest.raises(ConfigError, match="PatchCore method only"):
        prepare_training_data(cfg, FeatureExtractor(cfg.features, "cpu"), train)
