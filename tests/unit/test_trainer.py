"""Tiny but real SemiREST training on the CPU: demo images at 64 px, a 2-block Swin, a few steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semirest.core.config import make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.data.demo import make_demo_dataset
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.bank import BankSearcher
from semirest.core.data.datasets import load_images
from semirest.core.train.checkpoint import CheckpointError, load_checkpoint
from semirest.core.methods.semirest import SemiREST
from semirest.core.train.trainer import Trainer, lr_factor

TINY = [
    "features.image_size=64", "features.d_f=64", "features.pretrain_dim=64", "features.batch_size=8",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.steps=6", "train.b1=2", "train.b2=2", "train.synthetic_pool=6",
    "train.ema_decay=0.9", "bank.coreset_ratio=0.25", "device=\"cpu\"",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    cat = load_mvtec_category(root, "demo")
    return cat, load_images(cat.train), load_images(cat.test)


@pytest.fixture(scope="module")
def fitted(demo, device):
    cat, train, _ = demo
    cfg = make_config("fast", "un", TINY + [f"device=\"{device}\""])
    m = SemiREST(cfg, device, cat)
    m.fit(train)
    return m


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(99, 100, 0.1) < 0.01


@pytest.mark.cuda
def test_searcher_matches_brute_force_and_excludes_source(device):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(300, 16)).astype(np.float32)
    bank = MemoryBank(feats, np.repeat(np.arange(3), 100))
    s = BankSearcher(bank, device)
    q = torch.from_numpy(rng.normal(size=(50, 16)).astype(np.float32))
    d = torch.cdist(q, torch.from_numpy(bank.features))
    assert torch.equal(s.search(q, 3), d.topk(3, largest=False).indices)
    rows = s.search(q, 3, exclude_source=1)
    assert not np.isin(bank.source_ids[rows.numpy()], [1]).any()


def test_searcher_shortlist_in_either_dtype_matches_brute_force():
    # float32 where the CPU has no bf16 matrix units (bf16 was 5x slower there), bf16 where it has
    rng = np.random.default_rng(1)
    bank = MemoryBank(rng.normal(size=(400, 32)).astype(np.float32), np.repeat(np.arange(4), 100))
    q = torch.from_numpy(rng.normal(size=(64, 32)).astype(np.float32))
    d = torch.cdist(q, torch.from_numpy(bank.features))
    d[:, 200:300] = float("inf")
    for dtype in (torch.float32, torch.bfloat16):
        s = BankSearcher(bank, "cpu")
        s.shortlist_dtype, s.low = dtype, s.features.to(dtype)
        assert torch.equal(s.search(q, 2, exclude_source=2), d.topk(2, largest=False).indices)


@pytest.mark.cuda
def test_loss_decreases_on_a_fixed_batch(fitted, device):
    cfg = make_config("fast", "un", TINY + ["train.steps=40", "model.drop_path=0.0"])
    trainer = Trainer(cfg, fitted.data, device)
    tokens, labels = trainer.sample_batch()
    assert (labels == 1).any() and (labels == 0).any()
    losses = [trainer.train_on(tokens, labels) for _ in range(15)]
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.cuda
def test_fit_predicts_maps_at_image_resolution(fitted, demo):
    _, _, test = demo
    maps = fitted.predict(test[:3])
    assert [m.shape for m in maps] == [im.shape[:2] for im in test[:3]]
    assert all(np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 for m in maps)
    assert len(fitted.trainer.losses) == 6


@pytest.mark.cuda
def test_checkpoint_round_trip_identical_predictions(fitted, demo, tmp_path, device):
    _, _, test = demo
    path = fitted.save(tmp_path / "model.safetensors")
    loaded = SemiREST.load(path, device, expect=fitted.cfg)
    assert next(loaded.model.parameters()).device.type == device.type
    for a, b in zip(fitted.predict(test[:3]), loaded.predict(test[:3])):
        np.testing.assert_array_equal(a, b)
    assert loaded.residual_scale == fitted.residual_scale


@pytest.mark.cuda
def test_bf16_autocast_trains_and_predicts_close_to_float32(fitted, demo, device):
    """train.amp: the Swin runs under bf16 autocast in a training step and in prediction; the maps
    of the same weights stay within bf16 rounding of the float32 ones (and do differ: autocast ran)."""
    import copy

    from semirest.core.maps import predict_maps

    _, _, test = demo
    amp = copy.deepcopy(fitted.cfg)
    amp.train.amp = True
    plain = fitted.predict(test[:3])
    low = predict_maps(amp, fitted.model, fitted.extractor, fitted.searcher, fitted.residual_scale, test[:3])
    diff = max(float(np.abs(a - b).max()) for a, b in zip(plain, low))
    assert 0 < diff < 0.05
    trainer = Trainer(amp, fitted.data, device)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses = [trainer.step() for _ in range(2)]
    assert all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_foreign_or_corrupt_checkpoint_is_a_clear_error(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.safetensors")
    other = make_config("fast", "un", TINY + ["model.embed_dim=64"])
    with pytest.raises(CheckpointError, match="model.embed_dim"):
        load_checkpoint(path, expect=other)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_cancellation_stops_training(fitted):
    from semirest.core.train.trainer import TrainingCancelled

    cfg = make_config("fast", "un", TINY)
    trainer = Trainer(cfg, fitted.data, "cpu")
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(TrainingCancelled):
        trainer.run(should_stop=stop)
    assert trainer.step_count == 2


@pytest.mark.parametrize("override", ["model.bagging=false", "bank.residual=\"abs\"", "train.knn_aug=false",
                                      "features.lambda_pe=0.0", "train.pcr_dropout=true"])
def test_ablation_switches_train_and_predict(demo, override):
    cat, train, test = demo
    cfg = make_config("fast", "un", TINY + ["train.steps=2", override])
    m = SemiREST(cfg, "cpu", cat)
    m.fit(train)
    maps = m.predict(test[:2])
    assert all(np.isfinite(x).all() for x in maps)


@pytest.mark.parametrize("setting", ["sup", "semi"])
@pytest.mark.cuda
def test_sup_and_semi_settings_train_on_the_drawn_images(demo, setting, device):
    cat, train, _ = demo
    cfg = make_config("fast", setting, TINY + ["train.steps=3"])
    m = SemiREST(cfg, device, cat)
    assert m.labelled and all(s not in m.test_samples for s in m.labelled)
    steps = []
    m.fit(train, on_step=steps.append)
    assert len(m.trainer.losses) == 3 and all(np.isfinite(m.trainer.losses))
    assert [s["loss"] for s in steps[-3:]] == m.trainer.losses
    # the step statistics name the sampled windows: the labelled images are in every step of the stage
    assert all({w[0] for w in s["windows"]} == {"normal", "synthetic", "real"} for s in steps[-3:])
    assert all(len(w[2]) >= 1 for s in steps for w in s["windows"])
    if setting == "semi":
        assert len(m.un_losses) == 8 and len(steps) == 11  # un stage first: 3 * 8 / 3 steps
        semi = steps[8:]
        # one mean guess inside the boxes per step; positive_windows: every step's real window holds box tokens
        assert all(np.isfinite(s["guess_mean"]) and s["n_u"] > 0 and s["n_x"] > 0 for s in semi)
        assert "guess_mean" not in steps[0] and {w[0] for w in steps[0]["windows"]} == {"normal", "synthetic"}
        assert semi[-1]["n_u"] == m.trainer.last_stats["n_u"]
    maps = m.predict(load_images(m.test_samples[:2]))
    assert all(np.isfinite(x).all() for x in maps)


def test_positive_windows_always_sample_a_window_holding_the_defect(fitted):
    # One positive token in one corner: with one window drawn per image, a uniform draw finds it
    # in a fraction of the steps; train.positive_windows finds it every time, unknown tokens too.
    from dataclasses import replace

    from semirest.core.labels.blocks import NEGATIVE, POSITIVE, UNKNOWN
    from semirest.core.train.trainer import ImageSet

    base = fitted.data.synthetic

    def one_token(value):
        labels = torch.full_like(base.labels, NEGATIVE)
        labels[:, 0, 0] = value
        return ImageSet(base.features, base.neighbours, labels, base.masks)

    def hits(cfg_over, value):
        cfg = make_config("fast", "un", TINY + ["train.window_fraction=0.01"] + cfg_over)
        trainer = Trainer(cfg, replace(fitted.data, synthetic=one_token(value)), "cpu")
        assert len(trainer.origins) > 1
        n = 0
        for _ in range(30):
            _, _, lab = trainer._gather([(trainer.data.synthetic, 1)], 1)
            n += int((lab == value).any())
        return n

    assert hits(["train.positive_windows=true"], POSITIVE) == 30
    assert hits(["train.positive_windows=true"], UNKNOWN) == 30
    assert hits(["train.positive_windows=false"], POSITIVE) < 30
