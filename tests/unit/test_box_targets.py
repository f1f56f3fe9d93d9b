"""Box targets from the bank's distances: known answers for the target rule, and a few real steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semirest.core.config import make_config
from semirest.core.data.datasets import load_images, load_mvtec_category
from semirest.core.data.demo import make_demo_dataset
from semirest.core.labels.blocks import IGNORE, NEGATIVE, POSITIVE, UNKNOWN, semi_labels_from_boxes
from semirest.core.labels.boxes import RotatedBox
from semirest.core.methods.semirest import SemiREST
from semirest.core.train.box_targets import box_targets, nn_distances, normal_distance_threshold

from .test_trainer import TINY


def test_a_box_around_a_known_defect_gives_its_positives_unknowns_and_negatives():
    # 8 x 8 grid of 8-px tokens; a box over tokens rows 2-4, cols 3-5; the defect is tokens (3, 4)
    # and (3, 5) (distance 5 and 4, above the normal threshold 2); the rest of the box is normal-like
    grid, hw = (8, 8), (64, 64)
    labels = semi_labels_from_boxes([RotatedBox(cx=36.0, cy=28.0, width=24.0, height=24.0, angle=0.0)], hw, grid, 0.08)
    inside = labels == UNKNOWN
    assert inside.sum() == 9 and inside[2:5, 3:6].all()
    dist = np.ones(grid)
    dist[3, 4], dist[3, 5] = 5.0, 4.0
    dist[0, 0] = 9.0  # a hot token outside every box is still known normal
    out = box_targets(labels, dist, threshold=2.0)
    assert {tuple(p) for p in np.argwhere(out == POSITIVE)} == {(3, 4), (3, 5)}
    assert (out[inside & (out != POSITIVE)] == IGNORE).all() and (out == IGNORE).sum() == 7
    assert (out[~inside] == NEGATIVE).all() and out[0, 0] == NEGATIVE
    assert not (out == UNKNOWN).any()


def test_a_box_never_turns_all_normal():
    # two boxes whose tokens all lie below the threshold: each keeps its most distant token positive
    labels = np.full((6, 10), NEGATIVE, dtype=np.int64)
    labels[1:3, 1:3] = UNKNOWN
    labels[3:5, 6:9] = UNKNOWN
    dist = np.zeros((6, 10))
    dist[2, 1], dist[4, 7] = 0.5, 0.3
    out = box_targets(labels, dist, threshold=10.0)
    assert {tuple(p) for p in np.argwhere(out == POSITIVE)} == {(2, 1), (4, 7)}
    assert (out[labels == UNKNOWN] != NEGATIVE).all()
    # pixel / block labels (POSITIVE, IGNORE) and an image without boxes stay as they are
    mixed = labels.copy()
    mixed[5, 0], mixed[0, 9] = POSITIVE, IGNORE
    out = box_targets(mixed, dist, threshold=10.0)
    assert out[5, 0] == POSITIVE and out[0, 9] == IGNORE
    plain = np.full((4, 4), NEGATIVE, dtype=np.int64)
    assert np.array_equal(box_targets(plain, np.ones((4, 4)), 0.0), plain)


def test_distances_and_the_normal_threshold():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    feats = torch.tensor([[[[0.0, 1.0], [3.0, 6.0]]]])  # one image, 1 x 2 features
    rows = torch.tensor([[[[0], [1]]]])
    d = nn_distances(feats[0], rows[0], bank)
    assert torch.allclose(d, torch.tensor([[1.0, 2.0]]))
    assert normal_distance_threshold(feats, rows, bank, 1.0) == pytest.approx(2.0)
    assert normal_distance_threshold(feats, rows, bank, 0.5) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="box_quantile"):
        normal_distance_threshold(feats, rows, bank, 0.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    cat = load_mvtec_category(root, "demo")
    return cat, load_images(cat.train)


def test_semi_with_box_targets_trains_the_boxed_images_through_the_focal_loss(demo):
    cat, train = demo
    cfg = make_config("fast", "semi", TINY + ["train.steps=3", 'train.semi_method="box_targets"'])
    m = SemiREST(cfg, "cpu", cat)
    steps = []
    m.fit(train, on_step=steps.append)
    semi = steps[len(m.un_losses):]
    assert len(semi) == 3 and all(np.isfinite(s["loss"]) for s in semi)
    # no ResMixMatch: no guesses; the real images sit in the supervised batch of every step
    assert all("guess_mean" not in s for s in semi)
    assert all("real" in {w[0] for w in s["windows"]} for s in semi)
    labels = m.trainer.data.real.labels
    assert not (labels == UNKNOWN).any() and (labels == POSITIVE).any()
    # every boxed image keeps a positive token
    assert all((labels[i] == POSITIVE).any() for i in range(len(labels)))
