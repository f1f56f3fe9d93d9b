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


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def greedy_coreset(x: np.ndarray, k: int, start: int = 0, pool_size: int = 4096, max_batch: int = 512) -> CoresetResult:
    """Exact greedy k-center selection of ``k`` rows of ``x``, with batched distance updates.

    Each round takes the ``pool_size`` points farthest from the current selection. Any point
    outside the pool is at most ``threshold`` (the largest outside distance) away from the
    selection, and selecting more points only lowers that. So greedy steps run on the pool
    alone, exactly, as long as the farthest pool point is farther than ``threshold``. Then one
    matrix product updates all N distances with the whole batch of new centres. The selection is
    the textbook one (up to float rounding in near-ties).
    """
    t0 = time.perf_counter()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    k = int(min(max(k, 1), n))
    norms = _sq_norms(x)
    selected = [int(start)]
    dist = _dist_to(x, x[start])
    dist[start] = 0.0
    chunk = 32768
    while len(selected) < k:
        p = min(pool_size, n - 1)
        pool = np.argpartition(dist, n - p - 1)[n - p - 1 :]
        threshold = dist[pool[0]]  # the (p+1)-th largest distance bounds everything outside
        pool = pool[1:]
        pd = dist[pool].copy()
        px = x[pool]
        new: list[int] = []
        while len(new) < max_batch and len(selected) + len(new) < k:
            a = int(np.argmax(pd))
            if pd[a] < threshold or pd[a] <= 0.0:
                break
            c = int(pool[a])
            new.append(c)
            np.minimum(pd, _dist_to(px, x[c]), out=pd)
        if not new:  # pool exhausted at the threshold: fall back to one exact textbook step
            c = int(np.argmax(dist))
            if dist[c] <= 0.0:
                break  # every point coincides with a selected one
            new = [c]
        centres = x[new]
        cn = norms[new]
        for i in range(0, n, chunk):
            d2 = norms[i : i + chunk, None] + cn[None, :] - 2.0 * (x[i : i + chunk] @ centres.T)
            np.minimum(dist[i : i + chunk], np.sqrt(np.maximum(d2.min(axis=1), 0.0)), out=dist[i : i + chunk])
        dist[new] = 0.0
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
