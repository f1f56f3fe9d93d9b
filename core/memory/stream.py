"""Patch features that do not fit in memory: a chunked on-disk store and a two-stage coreset.

When a training set has millions of patches (N x d float32 is 8 GB for 2 M patches of 1024-d),
the features are written to a :class:`FeatureStore` (a flat binary file, float32 or float16) as
they are extracted, and :func:`stream_coreset` selects the bank without ever holding all N x d
values:

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
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .coreset import CoresetResult, greedy_coreset, principal_basis

PCA_SAMPLE = 20000


class FeatureStore:
    """``(n_images, h, w, d)`` features in one binary file, row-major, written and read in pieces.

    Behaves enough like the in-memory array for the pipeline: ``shape``, ``len``,
    ``store[image_indices]`` (float32 copy), item assignment of consecutive images
    (``store[i:j] = batch``). Rows (patches) are read with :meth:`read_rows` / :meth:`take_rows`.
    """

    def __init__(self, path: str | os.PathLike, n_images: int, tail: tuple[int, int, int] | None = None,
                 dtype: str = "float32", owns_dir: str | None = None):
        self.path = Path(path)
        self.n_images = int(n_images)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype("float32"), np.dtype("float16")):
            raise ValueError(f"a feature store holds float32 or float16, not {dtype}")
        self.tail: tuple[int, int, int] | None = tuple(tail) if tail is not None else None
        self._owns_dir = owns_dir
        self._fh = open(self.path, "w+b", buffering=0)

    @classmethod
    def open(cls, path: str | os.PathLike, n_images: int, tail: tuple[int, int, int],
             dtype: str = "float32") -> "FeatureStore":
        """An existing store file (written earlier with the same shape and dtype), read-write."""
        store = cls.__new__(cls)
        store.path, store.n_images, store.dtype = Path(path), int(n_images), np.dtype(dtype)
        store.tail, store._owns_dir = tuple(tail), None
        store._fh = open(store.path, "r+b", buffering=0)
        if os.path.getsize(store.path) < store.nbytes:
            raise ValueError(f"{path}: holds {os.path.getsize(store.path)} bytes, fewer than {store.shape} {dtype}")
        return store

    @classmethod
    def temporary(cls, n_images: int, dtype: str = "float32", dir: str | None = None) -> "FeatureStore":
        """A store in a fresh temporary folder, removed by :meth:`close` (or garbage collection)."""
        folder = tempfile.mkdtemp(prefix="semirest-features-", dir=dir)
        return cls(Path(folder) / "features.bin", n_images, dtype=dtype, owns_dir=folder)

    # -- shape ----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        if self.tail is None:
            raise ValueError("the store is empty: its patch grid is known after the first write")
        return (self.n_images,) + self.tail

    def __len__(self) -> int:
        return self.n_images

    @property
    def dim(self) -> int:
        return self.shape[3]

    @property
    def rows_per_image(self) -> int:
        h, w, _ = self.shape[1:]
        return h * w

    @property
    def n_rows(self) -> int:
        return self.n_images * self.rows_per_image

    @property
    def nbytes(self) -> int:
        return self.n_rows * self.dim * self.dtype.itemsize

    # -- writing --------------------------------------------------------------------------------
    def __setitem__(self, key: slice, value: np.ndarray) -> None:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a feature store is written by consecutive images: store[i:j] = batch")
        value = np.asarray(value)
        if self.tail is None:
            self.tail = tuple(int(s) for s in value.shape[1:])
        start = key.start or 0
        if value.shape[1:] != self.tail or start + len(value) > self.n_images:
            raise ValueError(f"batch of shape {value.shape} does not fit images {start}.. of {self.shape}")
        data = np.ascontiguousarray(value, dtype=self.dtype)
        os.pwrite(self._fh.fileno(), memoryview(data).cast("B"), start * self._image_bytes)

    def append_rows(self, start_row: int, rows: np.ndarray) -> None:
        """Write (m, d) rows at row ``start_row`` (for stores built from flat rows, e.g. benchmarks)."""
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        os.pwrite(self._fh.fileno(), memoryview(data).cast("B"), start_row * self.dim * self.dtype.itemsize)

    @property
    def _image_bytes(self) -> int:
        h, w, d = self.tail
        return h * w * d * self.dtype.itemsize

    # -- reading --------------------------------------------------------------------------------
    def _read(self, offset: int, out: np.ndarray) -> np.ndarray:
        view = memoryview(out).cast("B")
        got = 0
        while got < len(view):
            n = os.preadv(self._fh.fileno(), [view[got:]], offset + got)
            if n <= 0:
                raise IOError(f"{self.path}: short read at byte {offset + got}")
            got += n
        return out

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32 (m, d)."""
        d = self.dim
        buf = self._read(start * d * self.dtype.itemsize, np.empty((stop - start, d), dtype=self.dtype))
        return buf if self.dtype == np.float32 else buf.astype(np.float32)

    def take_rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows at ``indices`` (any order) as float32 (m, d); consecutive runs are read at once."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.dim), dtype=np.float32)
        if len(indices) == 0:
            return out
        order = np.argsort(indices, kind="stable")
        s = indices[order]
        breaks = np.flatnonzero(np.diff(s) != 1) + 1
        pos = 0
        for run in np.split(s, breaks):
            out[order[pos:pos + len(run)]] = self.read_rows(int(run[0]), int(run[-1]) + 1)
            pos += len(run)
        return out

    def __getitem__(self, key) -> np.ndarray:
        """Images (int, slice or index array) as a float32 ``(m, h, w, d)`` array."""
        idx = np.arange(self.n_images)[key]
        scalar = np.ndim(idx) == 0
        idx = np.atleast_1d(idx)
        rpi = self.rows_per_image
        out = np.empty((len(idx),) + self.tail, dtype=np.float32)
        for j, i in enumerate(idx.tolist()):
            out[j] = self.read_rows(i * rpi, (i + 1) * rpi).reshape(self.tail)
        return out[0] if scalar else out

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        if self._owns_dir:
            shutil.rmtree(self._owns_dir, ignore_errors=True)
            self._owns_dir = None

    def __del__(self):  # temporary stores never outlive their owner
        try:
            self.close()
        except Exception:
            pass


class ArrayRows:
    """An in-memory (N, d) array with the row-reading interface of :class:`FeatureStore`."""

    def __init__(self, x: np.ndarray):
        self.x = x

    @property
    def n_rows(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.x[start:stop], dtype=np.float32)

    def take_rows(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.x[np.asarray(indices)], dtype=np.float32)


def rows_of(features) -> FeatureStore | ArrayRows:
    """Row access to a FeatureStore, an (N, d) array or an (n, h, w, d) array."""
    if isinstance(features, (FeatureStore, ArrayRows)) or hasattr(features, "read_rows"):
        return features
    x = np.asarray(features)
    return ArrayRows(x.reshape(-1, x.shape[-1]))


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
