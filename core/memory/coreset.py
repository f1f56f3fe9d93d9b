"""Greedy k-center coreset selection (PatchCore's memory-bank subsampling), made fast.

PatchCore picks, again and again, the feature farthest from everything selected so far
(Gonzalez's greedy k-center). The textbook loop updates all N distances at every step:
O(N * k * D) work, which on 330,000 features and k = 33,000 is hours on a CPU.

:func:`greedy_coreset` returns the same selection in the same order, but it turns the
memory-bound per-step update (one matrix-vector pass over all N features per selected point)
into a few hundred matrix-matrix products, by running exact greedy steps on a small pool of the
farthest points between full updates (see its docstring for why that is exact).

As in PatchCore, distances are computed on a random projection to ``projection_dim`` dimensions
by default (a Johnson-Lindenstrauss sketch); the selected indices refer to the input features.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CoresetResult:
    indices: np.ndarray  # selected rows of the input, in selection order
    radius: float  # coverage radius in the space the selection was made in
    seconds: float


def random_projection(x: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Gaussian random projection to ``dim`` dimensions (distances preserved in expectation)."""
    if dim <= 0 or dim >= x.shape[1]:
        return np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((x.shape[1], dim)).astype(np.float32) / np.sqrt(dim)
    out = np.empty((x.shape[0], dim), dtype=np.float32)
    step = 65536
    for i in range(0, x.shape[0], step):
        np.matmul(x[i : i + step].astype(np.float32, copy=False), proj, out=out[i : i + step])
    return out


def _dist_to(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = x - c
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def greedy_coreset_reference(x: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Textbook greedy k-center: O(N k D). Kept as the ground truth for tests and benchmarks."""
    x = np.asarray(x, dtype=np.float32)
    sel = [start]
    dist = _dist_to(x, x[start])
    for _ in range(1, k):
        c = int(np.argmax(dist))
        sel.append(c)
        np.minimum(dist, _dist_to(x, x[c]), out=dist)
    return np.array(sel)


def greedy_coreset(
    x: np.ndarray,
    k: int,
    start: int = 0,
    pool_size: int = 4096,
    max_batch: int = 512,
    gemm_dtype: torch.dtype = torch.float32,
) -> CoresetResult:
    """Exact greedy k-center selection of ``k`` rows of ``x``, with batched distance updates.

    Each round takes the ``pool_size`` points farthest from the current selection. Any point
    outside the pool is at most ``threshold`` (the largest outside distance) away from the
    selection, and selecting more points only lowers that. So greedy steps run on the pool
    alone, exactly, as long as the farthest pool point is farther than ``threshold``. Then one
    matrix product updates all N distances with the whole batch of new centres. The selection is
    the textbook one (up to float rounding in near-ties). Runs on torch (multi-threaded GEMM).

    ``gemm_dtype=torch.bfloat16`` runs the batched update about 2.5x faster on CPUs with AMX or
    AVX512-BF16, at the price of ~0.4 % relative error in the updated distances (the selection is
    then approximate; :func:`coverage_radius` measures the effect).
    """
    t0 = time.perf_counter()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n = xt.shape[0]
    k = int(min(max(k, 1), n))
    norms = (xt * xt).sum(dim=1)
    xn, nn = xt.numpy(), norms.numpy()
    xg = xt if gemm_dtype == torch.float32 else xt.to(gemm_dtype)
    selected = [int(start)]
    dist = (xt - xt[start]).norm(dim=1)
    dist[start] = 0.0
    chunk = 65536
    while len(selected) < k:
        p = min(pool_size, n - 1)
        top = torch.topk(dist, p + 1, sorted=True)
        threshold = float(top.values[-1])  # bounds every point outside the pool
        pool = top.indices[:-1].numpy()
        # Greedy steps on the pool in numpy: the arrays are small, and numpy's per-call
        # overhead is lower than torch's on a busy CPU.
        pd = top.values[:-1].numpy().copy()
        px = xn[pool]
        pn = nn[pool]
        new: list[int] = []
        while len(new) < max_batch and len(selected) + len(new) < k:
            a = int(np.argmax(pd))
            best = float(pd[a])
            if best < threshold or best <= 0.0:
                break
            new.append(int(pool[a]))
            d2 = pn + pn[a] - 2.0 * (px @ px[a])
            np.minimum(pd, np.sqrt(np.maximum(d2, 0.0)), out=pd)
        if not new:  # pool exhausted at the threshold: one exact textbook step
            c = int(torch.argmax(dist))
            if float(dist[c]) <= 0.0:
                break  # every point coincides with a selected one
            new = [c]
        idx = torch.tensor(new)
        centres = xg[idx]
        cn = norms[idx]
        for i in range(0, n, chunk):
            prod = (xg[i : i + chunk] @ centres.T).float()
            d2 = (norms[i : i + chunk, None] + cn[None, :]).sub_(prod, alpha=2.0)
            torch.minimum(dist[i : i + chunk], d2.amin(dim=1).clamp_min_(0.0).sqrt_(), out=dist[i : i + chunk])
        dist[idx] = 0.0
        selected.extend(new)
    indices = np.array(selected, dtype=np.int64)
    return CoresetResult(indices=indices, radius=float(dist.max()), seconds=time.perf_counter() - t0)


def coverage_radius(x: np.ndarray, selected: np.ndarray) -> float:
    """Largest distance from any row of ``x`` to its nearest selected row (exact, via faiss)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x[selected])
    d, _ = index.search(x, 1)
    return float(np.sqrt(max(d.max(), 0.0)))


def select_coreset(
    features: np.ndarray,
    ratio: float = 0.1,
    projection_dim: int = 128,
    seed: int = 0,
) -> CoresetResult:
    """PatchCore subsampling: keep ``ratio`` of the features by greedy k-center selection."""
    n = features.shape[0]
    k = max(1, int(round(n * ratio)))
    if k >= n:
        return CoresetResult(indices=np.arange(n), radius=0.0, seconds=0.0)
    proj = random_projection(features, projection_dim, seed)
    start = int(np.random.default_rng(seed).integers(n))
    return greedy_coreset(proj, k, start=start)
