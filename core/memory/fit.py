"""Training features -> memory bank: a coreset of the training PCFs (in memory, or streamed from a
:class:`~semirest.core.features.store.FeatureStore` above ``bank.stream_threshold`` patches) in a
:class:`~semirest.core.memory.bank.MemoryBank` that remembers each entry's source image.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semirest.core import distributed
from semirest.core.config import BankConfig
from semirest.core.features.store import ArrayRows, FeatureStore
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.coreset import select_coreset
from semirest.core.memory.stream import stream_coreset
from semirest.core.progress import ProgressEvent, ProgressFn, no_progress


def rows_and_sources(maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps of different sizes (h_i, w_i, d) -> all rows (n, d) and each row's image index."""
    rows = np.concatenate([f.reshape(-1, f.shape[-1]) for f in maps])
    ids = np.concatenate([np.full(f.shape[0] * f.shape[1], i, dtype=np.int64) for i, f in enumerate(maps)])
    return rows, ids


def fit_memory_bank_rows(rows: np.ndarray, source_ids: np.ndarray, cfg: BankConfig, seed: int = 0,
                         progress: ProgressFn = no_progress) -> MemoryBank:
    """Coreset-subsample training features given as rows (n, d) with each row's source image
    (feature maps of different sizes, features.input_scale); selection in memory, on rank 0 under
    torchrun."""
    progress(ProgressEvent("coreset", 0, 1, {"features": len(rows)}))
    result = distributed.on_main(lambda: select_coreset(rows, cfg.coreset_ratio, cfg.projection_dim, seed,
                                                        cfg.max_size, cfg.projection))
    return _bank_of(result, rows[result.indices], np.asarray(source_ids)[result.indices], cfg, progress)


def fit_memory_bank(train_features, cfg: BankConfig, seed: int = 0, progress: ProgressFn = no_progress) -> MemoryBank:
    """Coreset-subsample the (N, h, w, d) training PCFs (an array or a FeatureStore) into a bank
    that remembers each source image.

    Up to ``cfg.stream_threshold`` patches the coreset is :func:`select_coreset` on all of them in
    memory (:func:`fit_memory_bank_rows`); above it, :func:`stream_coreset` (two stages, bounded
    memory). Under torchrun the selection runs on rank 0 only and its indices are broadcast.
    """
    n, h, w, d = train_features.shape
    rows = n * h * w
    if not 0 < cfg.stream_threshold < rows:
        flat = (train_features.read_rows(0, rows) if isinstance(train_features, FeatureStore)
                else train_features.reshape(-1, d))
        return fit_memory_bank_rows(flat, np.arange(rows) // (h * w), cfg, seed, progress)
    progress(ProgressEvent("coreset", 0, 1, {"features": rows}))
    source = train_features if isinstance(train_features, FeatureStore) else ArrayRows(train_features.reshape(-1, d))
    k = max(1, int(round(rows * cfg.coreset_ratio)))
    if cfg.max_size > 0:
        k = min(k, cfg.max_size)
    result = distributed.on_main(lambda: stream_coreset(source, k, cfg.max_in_memory, cfg.stream_chunk,
                                                        cfg.projection_dim, seed, cfg.stream_stage1))
    return _bank_of(result, source.take_rows(result.indices), result.indices // (h * w), cfg, progress)


def _bank_of(result, entries: np.ndarray, source_ids: np.ndarray, cfg: BankConfig, progress: ProgressFn) -> MemoryBank:
    progress(ProgressEvent("coreset", 1, 1, {"kept": len(result.indices), "seconds": result.seconds}))
    return MemoryBank(entries, source_ids, **bank_index_options(cfg))


def bank_index_options(cfg: BankConfig) -> dict:
    """The MemoryBank keyword arguments that choose its faiss index."""
    return dict(index=cfg.index, index_threshold=cfg.index_threshold, nlist=cfg.ivf_nlist,
                nprobe=cfg.ivf_nprobe, use_gpu=cfg.faiss_gpu)
