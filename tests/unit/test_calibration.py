"""Calibration: threshold at the requested false-alarm rate from leave-one-out scores, normalisation
that maps it to 0.5, stored in the checkpoint; checkpoints without it still load."""
from __future__ import annotations

import numpy as np
import pytest

from semirest.core.calibration import Calibration, calibrate_scores, denormalise, normalise, threshold_at
from semirest.core.train.calibrate import calibration_indices
from semirest.core.train.checkpoint import load_checkpoint, save_checkpoint
from semirest.core.train.method import SemiREST
from semirest.core.train.trainer import detector_maps, image_scores


def test_threshold_leaves_at_most_the_requested_share_above():
    rng = np.random.default_rng(0)
    s = rng.random(1000)
    for fa in (0.0, 0.01, 0.05, 0.2):
        t = threshold_at(s, fa)
        assert (s > t).mean() <= fa
        assert (s >= t).mean() > fa  # and it is the smallest such score
    with pytest.raises(ValueError, match="false-alarm"):
        threshold_at(s, 1.0)


def test_normalisation_maps_threshold_to_half_monotonically_and_inverts():
    t = 0.37
    x = np.linspace(0, 1, 101)
    y = normalise(x, t)
    assert normalise(t, t) == pytest.approx(0.5)
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0)
    assert np.all(np.diff(y) > 0)
    for v in (0.0, 0.2, 0.5, 0.8, 1.0):
        assert normalise(denormalise(v, t), t) == pytest.approx(v)


def test_calibration_indices_prefer_images_the_swin_never_saw():
    ids, unseen = calibration_indices(10, np.array([0, 1, 2, 3, 4, 5]), 6, seed=0)
    assert unseen == 4 and len(ids) == 6 and {6, 7, 8, 9} <= set(ids)
    assert calibration_indices(10, None, 0, 0) == (list(range(10)), 0)


def test_fit_calibrates_on_leave_one_out_scores_and_the_checkpoint_keeps_it(tiny_run, tmp_path):
    m = tiny_run.model
    cal = m.calibration
    assert cal is not None and cal.n_images == len(tiny_run.train_images) and cal.false_alarm == 0.01
    # the stored threshold is the 99 % quantile of the scores with each image's own bank entries excluded
    ids = list(range(len(tiny_run.train_images)))
    loo = image_scores(detector_maps(m.cfg, m.model, m.extractor, m.searcher, m.residual_scale,
                                     tiny_run.train_images, exclude_sources=ids))
    assert cal.threshold == pytest.approx(threshold_at(loo, 0.01), abs=1e-6)
    own = image_scores(detector_maps(m.cfg, m.model, m.extractor, m.searcher, m.residual_scale, tiny_run.train_images))
    assert loo.mean() > own.mean()  # matching an image against itself would set the threshold too low
    assert cal.quantiles["0.5"] == pytest.approx(float(np.median(loo)), abs=1e-6)
    loaded = SemiREST.load(tiny_run.run_dir / "model.safetensors")
    assert loaded.calibration == cal
    assert loaded.metadata["trained_at"].endswith("+00:00")


def test_checkpoint_without_calibration_loads_with_none(tiny_run, tmp_path):
    m = tiny_run.model
    path = save_checkpoint(tmp_path / "old.safetensors", m.cfg, m.model, m.bank, m.residual_scale, {"category": "demo"})
    assert load_checkpoint(path).calibration is None
    assert SemiREST.load(path).calibration is None


def test_calibration_json_round_trip_and_miss_rate():
    cal = calibrate_scores([0.1, 0.2, 0.3, 0.4], 0.25, 2, defect_scores=[0.35, 0.5, 0.9])
    assert cal.threshold == 0.3 and cal.measured_false_alarm == 0.25
    assert cal.miss_rate == pytest.approx(0.0) and cal.n_defect == 3
    assert Calibration.from_json(cal.to_json()) == cal
    assert Calibration.from_json(None) is None
