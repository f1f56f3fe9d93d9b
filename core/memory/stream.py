"""Patch features that do not fit in memory: a two-stage coreset over the on-disk feature store.

When a training set has millions of patches (N x d float32 is 8 GB for 2 M patches of 1024-d),
the features are written to a :class:`~semirest.core.features.store.FeatureStore` (a flat binary
file, float32 or float16) as they are extracted, and :func:`stream_coreset` selects the bank
without ever holding all N x d values:

* stage 1 reads the store in chunks of C rows, projects each chunk to the p selection
  coordinates (top principal directions from a 20,000-row sample, as :func:`select_coreset`), and
  keeps ``ceil(M * C / N)`` rows of it, chosen by greedy k-center within the chunk (or at random,
  ``stage1="random"``): at most M candidates in all, of which only their p coordinates stay in
  memory;
* stage 2 runs the exact greedy (:func:`greedy_coreset`) on the M candidates to the final k.

Coverage: every feature is within r1 of a stage-1 candidate of its chunk and every candidate within
r2 of a selected entry, so the coverage radius (in the selection coordinates) is at most r1 + r2;
both are returned. Random stage 1 has no such bound (a rare patch can miss the subsample).

Memory bound (bytes, float32 working arrays; what :func:`memory_bound_bytes` computes):
4 * (M * (p + 2) + 2 * G * B + C * (2 d + p + 2 + 2 B) + 2 S * d + k * d), with p the selection
dimension, B = 256 the greedy update batch, G = min(M, 65536) the greedy's row chunk and
S = 20,000 the PCA sample: the candidates' coordinates, the greedy's GEMM temporaries, one chunk
(read buffer, float32 copy, coordinates, the chunk greedy's distances and temporaries), the PCA
sample and the final bank entries. For M = 262,144, C = 32,768, B = 256, d = 1024, p = 256,
k = 20,000: about 1.0 GB, whatever N is (0.6 GB for d = 256; measured figures in BENCHMARKS.md).
Reads use ``pread`` into private buffers (no memory map), so the resident size measures what is
really held. Time: stage 1 is O(M * C * p), stage 2 O(M * k * p), plus one projection pass; the
store is read twice (the PCA sample and one pass).
"""
from __future__ import annotations

import math
import time

import numpy as np

from semirest.core.features.store import rows_of
from semirest.core.memory.coreset import CoresetResult, greedy_coreset, principal_basis

PCA_SAMPLE = 20000


def memory_bound_bytes(max_in_memory: int, chunk_rows: int, projection_dim: int, dim: int, k: int,
                       max_batch: int = 256) -> int:
    """The working-set bound of :func:`stream_coreset` stated in the module docstring (bytes)."""
    p = dim if projection_dim <= 0 or projection_dim >= dim else projection_dim
    g = min(max_in_memory, 65536)
    return 4 * (max_in_memory * (p + 2) + 2 * g * max_batch + chunk_rows * (2 * dim + p + 2 + 2 * max_batch)
                + 2 * PCA_SAMPLE * dim + k * dim)


def stream_coreset(features, k: int, max_in_memory: int = 262144, chunk_rows: int = 32768,
                   projection_dim: int = 256, seed: int = 0, stage1: str = "greedy",
                   progress=None) -> CoresetResult:
    """Two-stage coreset of ``k`` rows of a :class:`FeatureStore` (or array) in bounded memory.

    See the module docstring for the stages, the coverage bound and the memory bound. Returns
    selected row indices (selection order of stage 2); ``radius`` is the bound r1 + r2 in the
    selection coordinates, and ``stage_radii`` (r1, r2) is attached to the result.
    ``progress(done_rows, n_rows)`` is called after every chunk.
    """
    if stage1 not in ("greedy", "random"):
        raise ValueError(f"stage1 must be 'greedy' or 'random', got {stage1!r}")
    t0 = time.perf_counter()
    src = rows_of(features)
    n, d = src.n_rows, src.dim
    k = int(min(max(k, 1), n))
    m_total = int(min(max(max_in_memory, k), n))
    rng = np.random.default_rng(seed)
    p = d if projection_dim <= 0 or projection_dim >= d else projection_dim
    if p < d:
        sample_idx = np.sort(rng.choice(n, min(PCA_SAMPLE, n), replace=False))
        mean, basis = principal_basis(src.take_rows(sample_idx), p, sample=PCA_SAMPLE, seed=seed)
    else:
        mean = basis = None

    def coords_of(x: np.ndarray) -> np.ndarray:
        if basis is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        return np.ascontiguousarray((x - mean) @ basis.T, dtype=np.float32)

    cand_coords = np.empty((m_total + math.ceil(n / chunk_rows), p), dtype=np.float32)
    cand_rows = np.empty(len(cand_coords), dtype=np.int64)
    filled, r1 = 0, 0.0
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        c = stop - start
        quota = min(c, int(math.ceil(m_total * c / n)))
        coords = coords_of(src.read_rows(start, stop))
        if quota >= c:
            sel = np.arange(c)
        elif stage1 == "greedy":
            res = greedy_coreset(coords, quota, start=int(rng.integers(c)))
            sel, r1 = res.indices, max(r1, res.radius)
        else:
            sel = np.sort(rng.choice(c, quota, replace=False))
        cand_coords[filled:filled + len(sel)] = coords[sel]
        cand_rows[filled:filled + len(sel)] = start + sel
        filled += len(sel)
        del coords
        if progress is not None:
            progress(stop, n)
    cand_coords, cand_rows = cand_coords[:filled], cand_rows[:filled]
    if stage1 == "random" and filled < n:
        r1 = float("nan")  # a random subsample bounds nothing
    if k >= filled:
        indices, r2 = cand_rows, 0.0
    else:
        res2 = greedy_coreset(cand_coords, k, start=int(rng.integers(filled)))
        indices, r2 = cand_rows[res2.indices], res2.radius
    result = CoresetResult(indices=np.asarray(indices, dtype=np.int64), radius=float(r1 + r2),
                           seconds=time.perf_counter() - t0)
    result.stage_radii = (float(r1), float(r2))  # type: ignore[attr-defined]
    return result
