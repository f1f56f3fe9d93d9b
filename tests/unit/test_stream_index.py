"""Millions of patches: the on-disk feature store, the two-stage streaming coreset, and the IVF bank
index with same-image exclusion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from semirest.core.config import BankConfig, FeatureConfig
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.coreset import coverage_radius, select_coreset
from semirest.core.memory.bank import BankSearcher
from semirest.core.features.store import FeatureStore
from semirest.core.memory.stream import memory_bound_bytes, stream_coreset
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.memory.fit import fit_memory_bank


def _clustered(n=20000, d=24, seed=0, clusters=60):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))).astype(np.float32)


def _store_of(x4: np.ndarray, dtype="float32", batch=3) -> FeatureStore:
    store = FeatureStore.temporary(len(x4), dtype)
    for i in range(0, len(x4), batch):
        store[i:i + batch] = x4[i:i + batch]
    return store


def test_feature_store_round_trip():
    x = np.random.default_rng(0).standard_normal((7, 3, 4, 5)).astype(np.float32)
    store = _store_of(x)
    assert store.shape == x.shape and store.n_rows == 7 * 12 and store.dim == 5
    flat = x.reshape(-1, 5)
    np.testing.assert_array_equal(store.read_rows(10, 30), flat[10:30])
    idx = np.array([50, 3, 4, 5, 83, 0, 4])
    np.testing.assert_array_equal(store.take_rows(idx), flat[idx])
    np.testing.assert_array_equal(store[np.array([6, 2])], x[[6, 2]])
    np.testing.assert_array_equal(store[3], x[3])
    half = _store_of(x, "float16")
    np.testing.assert_array_equal(half.read_rows(0, 84), flat.astype(np.float16).astype(np.float32))
    folder = store.path.parent
    store.close()
    assert not folder.exists()


@pytest.mark.parametrize("stage1", ["greedy", "random"])
def test_stream_coreset_is_bounded_and_close_to_in_memory_greedy(stage1):
    x = _clustered()
    store = _store_of(x.reshape(-1, 10, 10, 24), batch=17)  # 200 "images" of 100 patches
    k = 200
    res = stream_coreset(store, k, max_in_memory=2000, chunk_rows=3000, projection_dim=0, seed=0, stage1=stage1)
    assert len(res.indices) == k and len(set(res.indices.tolist())) == k
    assert res.indices.min() >= 0 and res.indices.max() < len(x)
    full = select_coreset(x, ratio=k / len(x), projection_dim=0, seed=0)
    r_stream, r_full = coverage_radius(x, res.indices), coverage_radius(x, full.indices)
    assert r_stream < 1.5 * r_full, (r_stream, r_full)
    if stage1 == "greedy":  # the stated coverage bound r1 + r2 holds (selection space = feature space here)
        assert r_stream <= res.radius * (1 + 1e-4)
        assert res.stage_radii[0] > 0 and res.stage_radii[1] > 0


def test_memory_bound_of_the_defaults():
    # the figure the docstring states (bank.* defaults, 1024-d features, 20 k entries): about 1 GB
    b = memory_bound_bytes(262144, 32768, 256, 1024, 20000)
    assert 0.9e9 < b < 1.1e9
    assert memory_bound_bytes(2 * 262144, 32768, 256, 1024, 20000) > b


def test_fit_memory_bank_streams_above_the_threshold_and_not_below():
    x = _clustered(n=6000, d=16).reshape(60, 10, 10, 16)
    cfg = BankConfig(coreset_ratio=0.05, projection_dim=0)
    in_mem = fit_memory_bank(x, cfg)
    from_store = fit_memory_bank(_store_of(x), cfg)  # below the threshold: the same selection
    np.testing.assert_array_equal(in_mem.features, from_store.features)
    np.testing.assert_array_equal(in_mem.source_ids, from_store.source_ids)
    small = BankConfig(coreset_ratio=0.05, projection_dim=0, stream_threshold=1000, max_in_memory=1200, stream_chunk=1000)
    streamed = fit_memory_bank(_store_of(x), small)
    assert len(streamed) == 300
    # every entry is a feature of the image it claims to come from
    for f, s in zip(streamed.features[::37], streamed.source_ids[::37]):
        assert np.any(np.all(x[s].reshape(-1, 16) == f, axis=1))


def test_extract_all_spills_to_disk_above_spill_rows():
    cfg = FeatureConfig(image_size=64, d_f=32, pretrain_dim=32, batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    plain = FeatureExtractor(cfg).extract_all(images)
    spilling = FeatureExtractor(cfg, spill_rows=100)
    spilling.net = FeatureExtractor(cfg).net  # same weights (they are loaded, not random, but be explicit)
    stored = spilling.extract_all(images)
    assert isinstance(stored, FeatureStore) and stored.shape == plain.shape
    np.testing.assert_array_equal(stored[np.arange(5)], plain)


# -- approximate index -------------------------------------------------------------------------------
def test_ivf_with_all_lists_probed_is_exact_and_excludes_the_source():
    x = _clustered(n=4000, d=16, seed=3)
    src = np.repeat(np.arange(40), 100)
    flat = MemoryBank(x, src)
    ivf = MemoryBank(x, src, index="ivf", nlist=16, nprobe=16)
    assert flat.index_kind == "flat" and ivf.index_kind == "ivf" and ivf.nlist == 16
    q = x[1200:1260] + 0.01  # features of image 12
    a, b = flat.search(q, 3), ivf.search(q, 3)
    np.testing.assert_array_equal(a.indices, b.indices)
    ex = ivf.search(q, 3, exclude_source=12)
    assert not (ivf.source_ids[ex.indices] == 12).any() and (ex.indices >= 0).all()
    np.testing.assert_allclose(ex.distances, flat.search(q, 3, exclude_source=12).distances, rtol=1e-5)


def test_auto_index_switches_at_the_threshold_and_ivf_recall_is_high():
    x = _clustered(n=8000, d=16, seed=4)
    assert MemoryBank(x, index="auto", index_threshold=10000).index_kind == "flat"
    bank = MemoryBank(x, index="auto", index_threshold=5000, nprobe=8)
    assert bank.index_kind == "ivf" and bank.nlist == round(4 * np.sqrt(8000))
    q = _clustered(n=500, d=16, seed=4)  # same cluster centres, fresh points
    exact = MemoryBank(x).search(q, 1).indices[:, 0]
    approx = bank.search(q, 1).indices[:, 0]
    assert np.mean(exact == approx) > 0.9


def test_bank_searcher_uses_the_ivf_index_with_exclusion():
    x = _clustered(n=3000, d=16, seed=5)
    src = np.repeat(np.arange(30), 100)
    bank = MemoryBank(x, src, index="ivf", nlist=8, nprobe=8)
    s = BankSearcher(bank, "cpu")
    q = torch.from_numpy(x[500:520] + 0.01)
    rows = s.search(q, 3, exclude_source=5)
    assert rows.shape == (20, 3) and rows.dtype == torch.int64
    assert not (bank.source_ids[rows.numpy()] == 5).any()
    exact = BankSearcher(MemoryBank(x, src), "cpu").search(q, 3, exclude_source=5)
    assert torch.equal(rows, exact)


def test_semirest_trains_with_spilled_features_streaming_coreset_and_ivf(tmp_path):
    """End to end in one process: features spilled to disk (normal and synthetic), the two-stage
    coreset, an IVF bank searched with same-image exclusion for the k-NN precompute, prediction."""
    from semirest.core.config import make_config
    from semirest.core.data.datasets import load_mvtec_category
    from semirest.core.data.demo import make_demo_dataset
    from semirest.core.data.datasets import load_images
    from semirest.core.methods.semirest import SemiREST

    from .test_trainer import TINY

    make_demo_dataset(tmp_path, seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    cat = load_mvtec_category(tmp_path, "demo")
    cfg = make_config("fast", "un", TINY + [
        "train.steps=2", "bank.stream_threshold=300", "bank.max_in_memory=250", "bank.stream_chunk=100",
        'bank.index="ivf"', "bank.ivf_nlist=8", "bank.ivf_nprobe=4"])
    m = SemiREST(cfg, "cpu", cat)
    m.fit(load_images(cat.train))
    assert m.bank.index_kind == "ivf" and len(m.bank) == round(8 * 8 * 8 * 0.25)
    maps = m.predict(load_images(cat.test[:2]))
    assert all(np.isfinite(x).all() for x in maps)


def test_patchcore_fits_from_spilled_features():
    from semirest.core.methods.patchcore import PatchCore

    cfg = FeatureConfig(image_size=64, d_f=32, pretrain_dim=32, batch_size=2)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    bank_cfg = BankConfig(coreset_ratio=0.25, stream_threshold=200, max_in_memory=150, stream_chunk=64)
    pc = PatchCore(FeatureExtractor(cfg), bank_cfg)
    pc.fit(images)
    assert len(pc.bank) == 96 and pc.extractor.spill_rows == 200
    maps = pc.predict(images[:2])
    assert [m.shape for m in maps] == [(64, 64), (64, 64)] and all(np.isfinite(m).all() for m in maps)
