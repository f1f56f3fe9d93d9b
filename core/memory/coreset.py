"""Greedy k-center coreset selection (PatchCore's memory-bank subsampling), made fast.

PatchCore picks, again and again, the feature farthest from everything selected so far
(Gonzalez's greedy k-center). The textbook loop updates all N distances at every step:
O(N * k * D) work, which on 330,000 features and k = 33,000 is hours on a CPU.

:func:`greedy_coreset` returns exactly the same selection (same start, same order) but prunes
with the triangle inequality. Every point is assigned to its nearest selected centre; cluster j
has radius r_j (its farthest member). A new centre c can only take over points of cluster j if
d(c, centre_j) < 2 r_j, so all other clusters are skipped. The test for all clusters uses a
cheap lower bound of d(c, centre_j) from the first few principal coordinates, so the per-step
cost falls with the cluster sizes instead of staying at N.

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


def greedy_coreset(x: np.ndarray, k: int, start: int = 0, bound_dim: int = 8) -> CoresetResult:
    """Exact greedy k-center selection of ``k`` rows of ``x`` with triangle-inequality pruning."""
    t0 = time.perf_counter()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = int(min(max(k, 1), n))
    # Exact distances use ``x`` itself. For the pruning test, the first ``bound_dim`` principal
    # coordinates give a cheap lower bound on any distance (a projection never lengthens).
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    sample = x[:: max(1, n // 20000)] - mean
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    if vt.shape[0] < d:  # fewer samples than dimensions: complete the basis
        q, _ = np.linalg.qr(np.concatenate([vt.T, np.eye(d, dtype=np.float32)], axis=1))
        vt = q[:, :d].T
    bdim = min(bound_dim, d)
    low = np.ascontiguousarray((x - mean) @ vt[:bdim].T.astype(np.float32))

    centres = np.empty(k, dtype=np.int64)
    cb = np.empty((k, bdim), dtype=np.float32)  # centres' low-dimensional coordinates
    radius = np.zeros(k, dtype=np.float32)
    far = np.zeros(k, dtype=np.int64)
    members: list[np.ndarray] = [np.arange(n)]
    dist = _dist_to(x, x[start])
    centres[0] = start
    cb[0] = low[start]
    radius[0] = dist.max()
    far[0] = int(np.argmax(dist))

    for t in range(1, k):
        j_star = int(np.argmax(radius[:t]))
        c = int(far[j_star])
        centres[t] = c
        xc = x[c]
        cb[t] = low[c]
        # lower bound of d(c, centre_j) from the leading coordinates
        diff = cb[:t] - low[c]
        lb = np.einsum("ij,ij->i", diff, diff)
        cand = np.flatnonzero(lb < 4.0 * radius[:t] * radius[:t])
        if cand.size:
            # exact test on the survivors
            full = x[centres[cand]] - xc
            dc = np.einsum("ij,ij->i", full, full)
            cand = cand[dc < 4.0 * radius[cand] * radius[cand]]
        mine = []
        for j in cand.tolist():
            idx = members[j]
            dn = _dist_to(x[idx], xc)
            moved = dn < dist[idx]
            if not moved.any():
                continue
            dist[idx[moved]] = dn[moved]
            mine.append(idx[moved])
            keep = idx[~moved]
            members[j] = keep
            if keep.size:
                dk = dist[keep]
                a = int(np.argmax(dk))
                radius[j] = dk[a]
                far[j] = keep[a]
            else:
                radius[j] = 0.0
        own = np.concatenate(mine) if mine else np.array([c], dtype=np.int64)
        members.append(own)
        do = dist[own]
        a = int(np.argmax(do))
        radius[t] = do[a]
        far[t] = own[a]
    return CoresetResult(indices=centres, radius=float(radius.max()), seconds=time.perf_counter() - t0)


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
