"""Patch features on disk: one flat binary file (float32 or float16), written as images are extracted
and read in chunks with ``pread`` into private buffers (no memory map, so the resident size is what
is really held); :func:`rows_of` gives arrays and stores one row interface.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


class FeatureStore:
    """``(n_images, h, w, d)`` features in one binary file, row-major, written and read in pieces.

    Behaves enough like the in-memory array for the extractor and the bank: ``shape``, ``len``,
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
