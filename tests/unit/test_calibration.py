"""Calibration: threshold at the requested false-alarm rate from leave-one-out scores, normalisation
that maps it to 0.5, stored in the checkpoint; checkpoints without it still load."""
from __future__ import annotations

import numpy as np
import pytest

from semirest.core.calibration import Calibration, calibrate_scores, denormalise, normalise, threshold_at
from semirest.core.train.calibrate import calibration_indices
from semirest.core.train.checkpoint import load_checkpoint, save_checkpoint
from semirest.core.methods.semirest import SemiREST
from semirest.core.calibration import image_score as image_scores
from semirest.core.maps import detector_maps


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


def test_top_share_image_score_in_numpy_and_in_the_export_graph(tiny_run):
    import copy

    import torch

    from semirest.core.calibration import image_score, score_top_k
    from semirest.core.config import ConfigError
    from semirest.core.data.images import read_image
    from semirest.core.features.patches import images_to_tensor
    from semirest.core.train.export import DetectorGraph
    from semirest.core.train.trainer import Trainer

    maps = np.zeros((2, 10, 10), dtype=np.float32)
    maps[0, 0, 0] = 1.0  # one hot pixel
    maps[1, :2, :5] = 0.5  # a spot of ten
    assert image_score(maps, "max").tolist() == [1.0, 0.5]
    assert image_score(maps, "top:0.1") == pytest.approx([0.1, 0.5])
    assert score_top_k("top:0.001", 4096) == 4
    for bad in ("mean", "top:0", "top:x", "top:2"):
        with pytest.raises(ValueError, match="eval.image_score"):
            score_top_k(bad, 10)
    m = copy.copy(tiny_run.model)
    m.cfg = copy.deepcopy(m.cfg)
    m.cfg.eval.image_score = "top:0.05"
    # not training images: a feature that is itself a bank entry has a residual of exactly 0, which
    # the magnitude skip reads as a dropped token; the graph's features differ by ~1e-6 from it
    images = [read_image(s.path) for s in tiny_run.category.test[:3]]
    got_maps, got = m.detect(images)
    assert got == pytest.approx(image_score(got_maps, "top:0.05"))
    with torch.no_grad():
        _, graph_scores, _ = DetectorGraph(m, m.calibration)(images_to_tensor(images, m.extractor.input_size))
    assert np.abs(graph_scores.numpy() - got).max() < 1e-5
    m.cfg.eval.image_score = "median"
    with pytest.raises(ConfigError, match="image_score"):
        Trainer(m.cfg, m.data, "cpu")


def test_checkpoint_calibration_reads_the_metadata_alone(tiny_run, tmp_path):
    from semirest.core.calibration import checkpoint_calibration

    assert checkpoint_calibration(tiny_run.run_dir / "model.safetensors") == tiny_run.model.calibration
    m = tiny_run.model
    old = save_checkpoint(tmp_path / "old.safetensors", m.cfg, m.model, m.bank, m.residual_scale, {"category": "demo"})
    assert checkpoint_calibration(old) is None
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert checkpoint_calibration(bad) is None and checkpoint_calibration(tmp_path / "missing") is None


def test_predict_scored_gives_predict_maps_and_the_calibrated_score(tiny_run):
    from semirest.core.data.datasets import load_images

    m = tiny_run.model
    images = load_images(tiny_run.category.test[:3])
    maps, scores = m.predict_scored(images)
    for got, want in zip(maps, m.predict(images)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(scores, m.detect(images)[1], atol=1e-6)


def test_outcome_at_a_threshold_counts_only_images_of_known_condition():
    from semirest.core.calibration import fallback_threshold, outcome_at

    scores = {1: 0.1, 2: 0.4, 3: 0.7, 4: 0.2, 5: 0.9, 6: 0.8}
    defective = {1: False, 2: False, 3: True, 4: True, 5: True}  # 6: unknown
    out = outcome_at(scores, defective, 0.3)
    assert (out.good_rejected, out.n_good, out.defect_missed, out.n_defect) == (1, 2, 1, 3)
    assert out.text() == "1 of 2 good images rejected; 1 of 3 defect images missed"
    assert outcome_at(scores, {}, 0.3).text().startswith("no scored image")
    assert fallback_threshold(scores, defective, 0.0) == 0.4  # no good image above it
    assert fallback_threshold(scores, {}) == pytest.approx(0.55)  # median of all: half the maps show
    assert fallback_threshold({}, {}) is None


def test_bank_combined_score_known_answers_and_calibration():
    from semirest.core.calibration import calibrate_components, combine, image_score, uses_bank

    comps = {"map": [0.5, 0.1], "bank": [2.0, 0.5]}
    # one spread above both means: z = 1, sigmoid(1); at both means: 0.5; map up, bank down: 0.5
    got = combine([0.6, 0.5, 0.6], [2.5, 2.0, 1.5], comps)
    assert got == pytest.approx([1 / (1 + np.exp(-1.0)), 0.5, 0.5], abs=1e-6)
    assert uses_bank("top:0.01+bank") and not uses_bank("top:0.01")
    rng = np.random.default_rng(1)
    m, b = rng.normal(0.3, 0.05, 200), rng.normal(4.0, 0.7, 200)
    cal = calibrate_components(m, b, 0.01, 0, defect_map=[0.9], defect_bank=[9.0], score="max+bank")
    assert cal.components["map"] == pytest.approx([m.mean(), m.std()])
    assert cal.components["bank"] == pytest.approx([b.mean(), b.std()])
    combined = combine(m, b, cal.components)
    assert cal.threshold == pytest.approx(threshold_at(combined, 0.01)) and (combined > cal.threshold).mean() <= 0.01
    assert cal.miss_rate == 0.0  # far above both means
    assert Calibration.from_json(cal.to_json()) == cal
    maps = np.full((2, 4, 4), 0.3, dtype=np.float32)
    maps[1, 0, 0] = 0.9
    scores = image_score(maps, "max+bank", np.array([4.0, 9.0]), cal)
    assert scores == pytest.approx(combine([0.3, 0.9], [4.0, 9.0], cal.components))
    # a map-only calibration (or none) scores a "+bank" model by its map: older checkpoints keep working
    assert image_score(maps, "max+bank", None, None).tolist() == pytest.approx([0.3, 0.9])
    assert calibrate_components(m, None, 0.01).components == {}


def test_bank_combined_score_in_torch_and_in_the_export_graph(tiny_run):
    import copy

    import torch

    from semirest.core.calibration import combine, map_score
    from semirest.core.data.images import read_image
    from semirest.core.features.patches import images_to_tensor
    from semirest.core.maps import detector_outputs
    from semirest.core.train.export import DetectorGraph

    m = copy.copy(tiny_run.model)
    m.cfg = copy.deepcopy(m.cfg)
    m.cfg.eval.image_score = "top:0.05+bank"
    cal = m.calibrate(tiny_run.train_images)
    assert set(cal.components) == {"map", "bank"}
    ids = list(range(len(tiny_run.train_images)))
    maps, bank = detector_outputs(m.cfg, m.model, m.extractor, m.searcher, m.residual_scale,
                                  tiny_run.train_images, exclude_sources=ids)
    # the bank component is PatchCore's image score: the largest nearest-neighbour distance, leave-one-out
    feats = m.extractor(tiny_run.train_images[:1])[0].reshape(-1, m.bank.features.shape[1]).numpy()
    others = m.bank.features[m.bank.source_ids != 0]
    nn = np.sqrt(((feats[:, None, :] - others[None]) ** 2).sum(-1).min(1)).max()
    assert bank[0] == pytest.approx(nn, rel=1e-4)
    assert cal.components["bank"][0] == pytest.approx(bank.mean(), rel=1e-5)
    assert cal.threshold == pytest.approx(threshold_at(combine(map_score(maps, "top:0.05"), bank, cal.components), 0.01))
    images = [read_image(s.path) for s in tiny_run.category.test[:3]]
    got_maps, got = m.detect(images)
    assert got == pytest.approx(combine(map_score(got_maps, "top:0.05"),
                                        detector_outputs(m.cfg, m.model, m.extractor, m.searcher, m.residual_scale,
                                                         images)[1], cal.components), abs=1e-6)
    with torch.no_grad():
        _, graph_scores, normalised = DetectorGraph(m, cal)(images_to_tensor(images, m.extractor.input_size))
    assert np.abs(graph_scores.numpy() - got).max() < 1e-5
    assert normalised.numpy() == pytest.approx(cal.normalise(got), abs=1e-5)
    _, listed = m.predict_scored(images)
    np.testing.assert_allclose(listed, got, atol=1e-6)
