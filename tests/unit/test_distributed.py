"""`semirest train` under torchrun: two CPU ranks with gloo agree on the final weights, only rank 0
writes the run folder, and a second run with the same seed and world size gives the same weights.
Plus the single-process behaviour of the helpers in semirest.core.distributed."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from semirest.core import distributed
from semirest.core.config import make_config
from semirest.core.data.demo import make_demo_dataset

TINY = [
    "features.image_size=64", "features.d_f=64", "features.pretrain_dim=64", "features.batch_size=4",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.b1=2", "train.b2=2", "train.synthetic_pool=6",
    "train.ema_decay=0.9", "bank.coreset_ratio=0.25",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(data, out, weights, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "semirest.core.cli", "train", "--data", str(data), "--category", "demo", "--out", str(out),
           "--steps", "6", "--device", "cpu", "--quiet", "--rank-weights", str(weights)]
    for s in TINY:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_demo_dataset(root / "data", seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    _torchrun(root / "data", root / "run", root / "weights")
    return root


def test_two_gloo_ranks_agree_and_only_rank0_writes(ddp_run):
    info = [json.loads((ddp_run / "weights" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["rank"] for i in info] == [0, 1] and all(i["world_size"] == 2 and i["backend"] == "gloo" for i in info)
    assert [i["wrote_checkpoint"] for i in info] == [True, False]
    assert all(i["steps"] == 6 and i["local_batch"] == [1, 1, 0] for i in info)  # b1=2, b2=2 split over 2 ranks
    # the ranks sampled different windows (different losses) ...
    assert info[0]["losses"] != info[1]["losses"]
    # ... yet hold identical weights, equal to rank 0's checkpoint
    w0, w1 = (load_file(str(ddp_run / "weights" / f"rank{r}.safetensors")) for r in (0, 1))
    ckpt = load_file(str(ddp_run / "run" / "model.safetensors"))
    assert w0.keys() == w1.keys() and len(w0) > 0
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
        assert torch.equal(w0[k], ckpt["model." + k]), k
    assert sorted(p.name for p in (ddp_run / "run").iterdir()) == ["model.safetensors", "train.json"]
    meta = json.loads((ddp_run / "run" / "train.json").read_text())
    assert meta["world_size"] == 2 and meta["steps"] == 6


@pytest.mark.slow
def test_same_seed_and_world_size_gives_the_same_weights(ddp_run):
    _torchrun(ddp_run / "data", ddp_run / "run_again", ddp_run / "weights_again")
    a = load_file(str(ddp_run / "run" / "model.safetensors"))
    b = load_file(str(ddp_run / "run_again" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- single-process behaviour ------------------------------------------------------------------------
def test_helpers_are_plain_loops_without_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx, device = distributed.init_from_env("cpu")
    assert not ctx.active and ctx.is_main and device == torch.device("cpu")
    seen = []
    distributed.map_gather(lambda idx: [i * i for i in idx], 7, 3, lambda i, v: seen.append((i, v)))
    assert seen == [(i, i * i) for i in range(7)]
    assert distributed.on_main(lambda: 5) == 5 and distributed.all_gather("x") == ["x"]
    cfg = make_config("fast", "un")
    assert distributed.local_config(cfg) is cfg


def test_local_config_splits_the_batch(monkeypatch):
    monkeypatch.setattr(distributed, "_CONTEXT", distributed.DistContext(1, 4, 1, "gloo"))
    cfg = make_config("fast", "sup")  # b1 2, b2 2, b3 2
    local = distributed.local_config(cfg)
    assert (local.train.b1, local.train.b2, local.train.b3) == (1, 1, 1)
    assert (cfg.train.b1, cfg.train.b2, cfg.train.b3) == (2, 2, 2)  # the original is untouched
    monkeypatch.setattr(distributed, "_CONTEXT", distributed.DistContext(0, 3, 0, "gloo"))
    assert distributed.local_config(make_config("fast", "un")).train.b1 == 2  # ceil(4 / 3)


def test_rank_seeds_differ_and_are_stable():
    seeds = [distributed.rank_seed(0, r) for r in range(4)]
    assert len(set(seeds)) == 4 and seeds == [distributed.rank_seed(0, r) for r in range(4)]
    assert all(0 <= s < 2 ** 63 for s in seeds)
    assert np.random.default_rng(seeds[0]).integers(10) is not None


def test_map_gather_puts_every_rank_slice_in_item_order(monkeypatch):
    """Simulated 3-rank job: each rank computes its slices, the gather returns all ranks' slices,
    and every rank emits items 0..n-1 in order (rank r's own slice is what it computed)."""
    n, world, per_rank = 11, 3, 2

    def fn(idx):
        return [i * 10 for i in idx]

    for r in range(world):
        monkeypatch.setattr(distributed, "_CONTEXT", distributed.DistContext(r, world, r, "gloo"))
        rounds = []

        def fake_all_gather(mine, r=r, rounds=rounds):
            start = len(rounds) * world * per_rank
            rounds.append(mine)
            parts = []
            for q in range(world):
                lo = min(n, start + q * per_rank)
                parts.append(mine if q == r else fn(list(range(lo, min(n, lo + per_rank)))))
            return parts

        monkeypatch.setattr(distributed, "all_gather", fake_all_gather)
        seen = []
        distributed.map_gather(fn, n, per_rank, lambda i, v: seen.append((i, v)))
        assert seen == [(i, i * 10) for i in range(n)]
        assert len(rounds) == 2  # ceil(11 / (3 * 2)) rounds
