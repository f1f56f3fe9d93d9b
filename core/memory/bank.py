"""The memory bank: coreset features of normal images, searched with faiss, and its exact k-NN
search for training and prediction (:class:`BankSearcher`), with the residual to a neighbour.

Besides nearest-neighbour distances (PatchCore's score) it returns the neighbours themselves,
because SemiREST's input is the residual to them (Eq. 5), and the k-NN augmentation (Eq. 12)
needs the first three.

Every bank entry remembers its source image. A training image's features are searched with the
entries of that same image excluded: a feature matched against itself would give a zero residual
and teach the model that normal images look "perfectly normal" in a way test images never do
(algorithm-reference, defaults table row 5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import torch

from semirest.core.features.store import rows_of


@dataclass
class Neighbours:
    distances: np.ndarray  # (N, k) Euclidean distances, ascending
    indices: np.ndarray  # (N, k) rows of the bank


def ivf_nlist(n: int) -> int:
    """Default number of IVF lists for n entries: 4 * sqrt(n) (faiss' guideline), at least 1."""
    return max(1, int(round(4 * math.sqrt(n))))


def gpu_faiss_available() -> bool:
    """faiss was built with GPU support and torch sees a CUDA device."""
    return hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available() and faiss.get_num_gpus() > 0


class MemoryBank:
    """Bank entries with their source images, searched with a faiss index.

    ``index``: ``"flat"`` (exact, the default below ``index_threshold`` entries), ``"ivf"``
    (IndexIVFFlat: k-means into ``nlist`` lists, 4 * sqrt(N) by default, and ``nprobe`` of them
    searched per query; approximate, distances of the returned entries are exact), or ``"auto"``
    (IVF above ``index_threshold`` entries). Same-image exclusion works with both (an
    ``IDSelectorNot`` in the search parameters). With ``use_gpu`` and a GPU build of faiss, queries
    without exclusion run on a GPU copy of the index (faiss' GPU indexes take no ID selectors, so
    excluding queries use the CPU index).
    """

    def __init__(self, features: np.ndarray, source_ids: np.ndarray | None = None, index: str = "flat",
                 index_threshold: int = 1_000_000, nlist: int = 0, nprobe: int = 32, use_gpu: bool = False,
                 seed: int = 0):
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"a memory bank needs a non-empty (N, d) feature array, got {features.shape}")
        if source_ids is None:
            source_ids = np.full(features.shape[0], -1, dtype=np.int64)
        source_ids = np.asarray(source_ids, dtype=np.int64)
        # Sort by source so that each image's entries form one id range (for exclusion).
        order = np.argsort(source_ids, kind="stable")
        self.features = features[order]
        self.source_ids = source_ids[order]
        if index not in ("flat", "ivf", "auto"):
            raise ValueError(f"bank index must be 'flat', 'ivf' or 'auto', got {index!r}")
        n, d = self.features.shape
        kind = "ivf" if index == "ivf" or (index == "auto" and n > index_threshold) else "flat"
        self.index_kind = kind
        self.nprobe = int(nprobe)
        self.nlist = 0
        if kind == "flat":
            self._index = faiss.IndexFlatL2(d)
            self._index.add(self.features)
        else:
            self.nlist = int(min(nlist if nlist > 0 else ivf_nlist(n), n))
            self._index = build_ivf(self.features, self.nlist, seed)
            self._index.nprobe = self.nprobe
        self._gpu_index = None
        if use_gpu and gpu_faiss_available():  # pragma: no cover - needs faiss-gpu and CUDA
            self._gpu_res = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
            if kind == "ivf":
                self._gpu_index.nprobe = self.nprobe
        ids, starts = np.unique(self.source_ids, return_index=True)
        ends = np.append(starts[1:], len(self.source_ids))
        self._ranges = {int(i): (int(s), int(e)) for i, s, e in zip(ids, starts, ends)}

    def __len__(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def search(self, queries: np.ndarray, k: int = 1, exclude_source: int | None = None) -> Neighbours:
        """k nearest bank entries of each query; entries of ``exclude_source`` are skipped."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (N, {self.dim}), got {q.shape}")
        params = None
        if exclude_source is not None and exclude_source in self._ranges:
            lo, hi = self._ranges[exclude_source]
            if hi - lo >= len(self):
                raise ValueError("cannot exclude the only source image of the bank")
            sel = faiss.IDSelectorNot(faiss.IDSelectorRange(lo, hi))
            if self.index_kind == "ivf":
                params = faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
            else:
                params = faiss.SearchParameters(sel=sel)
        k_eff = min(k, len(self))
        if params is None and self._gpu_index is not None:  # pragma: no cover - GPU only
            d2, idx = self._gpu_index.search(q, k_eff)
        else:
            d2, idx = self._index.search(q, k_eff, params=params)
        # an IVF search returns index -1 (distance inf) where the probed lists hold fewer than k entries
        return Neighbours(np.sqrt(np.maximum(d2, 0.0)), idx.astype(np.int64))

    def neighbours(self, indices: np.ndarray) -> np.ndarray:
        return self.features[indices]

    # -- persistence: plain arrays, so checkpoints stay in safetensors ----------------------------
    def state(self) -> dict[str, torch.Tensor]:
        return {
            "bank.features": torch.from_numpy(self.features),
            "bank.source_ids": torch.from_numpy(self.source_ids),
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], **index_options) -> "MemoryBank":
        return cls(state["bank.features"].numpy(), state["bank.source_ids"].numpy(), **index_options)


def build_ivf(features, nlist: int, seed: int = 0, train_per_list: int = 40, niter: int = 10,
              chunk: int = 262144) -> "faiss.IndexIVFFlat":
    """IndexIVFFlat (L2): k-means (``niter`` iterations, seeded) on at most ``train_per_list * nlist``
    entries (faiss warns below 39), then every entry added in chunks. ``features`` is an (N, d)
    array or a row source (:class:`~semirest.core.features.store.FeatureStore`), so a bank larger
    than memory allows twice (features + index) can be indexed straight from disk."""
    src = rows_of(features)
    n, d = src.n_rows, src.dim
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
    index.cp.seed = int(seed)
    index.cp.niter = int(niter)
    m = min(n, max(train_per_list, 1) * nlist)
    sample_idx = np.arange(n) if m == n else np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
    index.train(src.take_rows(sample_idx))
    for i in range(0, n, chunk):
        index.add(src.read_rows(i, min(n, i + chunk)))
    return index


RESIDUAL_MODES = ("square", "abs")


def residual(query: torch.Tensor, neighbour: torch.Tensor, mode: str = "square") -> torch.Tensor:
    """Element-wise residual S(f - m) of Eq. 5/6 (``"square"``) or |f - m| (``"abs"`` ablation)."""
    diff = query - neighbour
    if mode == "square":
        return diff * diff
    if mode == "abs":
        return diff.abs()
    raise ValueError(f"residual mode must be one of {RESIDUAL_MODES}, got {mode!r}")


# -- exact k-NN for training and prediction -------------------------------------------------------
# Exact k nearest bank entries for many queries, fast on CPUs with bf16 matrix units and on GPUs.
#
# SemiREST needs neighbours (not only distances) for every token of every training image, the
# synthetic pool and each test image (Eq. 5, Eq. 12): millions of queries against a bank of tens of
# thousands of 1024-d entries. faiss' flat index is float32 BLAS only and becomes a per-query loop
# once entries are excluded (the same-image rule of defaults row 5). Here the candidates come from a
# GEMM, and the best ``candidates`` per query are then re-ranked with exact float32 distances, so the
# returned order is exact unless the true neighbour falls outside the shortlist (the tests compare
# with brute force). The shortlist GEMM runs in bf16 where the hardware has bf16 matrix units (about
# 5x the float32 speed on an AMX CPU; tensor cores on a GPU) and in float32 elsewhere: on an AVX2 CPU
# without them, one 1024 x 1024 by 1024 x 32,768 product took 16.2 s in bf16 and 3.0 s in float32
# (one thread), which made the calibration of a 10 % bank model take hours.
#
# Banks built with an approximate faiss index (``bank.index`` "ivf", or "auto" above
# ``bank.index_threshold`` entries) are searched through that index instead (MemoryBank.search).
def shortlist_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU and on CPUs with bf16 matrix units (AMX or AVX512-BF16), else float32."""
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        return torch.bfloat16
    return torch.float32


class BankSearcher:
    """k-NN over a :class:`MemoryBank`'s entries on ``device``; excludes one source image on request."""

    def __init__(self, bank: MemoryBank, device: torch.device | str = "cpu", candidates: int = 16,
                 chunk: int = 2048):
        self.bank = bank
        self.device = torch.device(device)
        self.features = torch.from_numpy(bank.features).to(self.device)
        self.shortlist_dtype = shortlist_dtype(self.device)
        self.low = self.features.to(self.shortlist_dtype)
        self.sq_norms = (self.features * self.features).sum(1)
        self.candidates = int(candidates)
        self.chunk = int(chunk)
        ids, starts = np.unique(bank.source_ids, return_index=True)
        ends = np.append(starts[1:], len(bank.source_ids))
        self._ranges = {int(i): (int(s), int(e)) for i, s, e in zip(ids, starts, ends)}

    def __len__(self) -> int:
        return self.features.shape[0]

    def search(self, queries: torch.Tensor, k: int = 1, exclude_source: int | None = None) -> torch.Tensor:
        """(N, d) queries -> (N, k) int64 bank rows, nearest first, on ``queries.device``.

        Entries whose source is ``exclude_source`` are never returned (training PCRs, defaults row 5).
        """
        out_device = queries.device
        if getattr(self.bank, "index_kind", "flat") != "flat":
            # A bank too large for exact search answers from its approximate faiss index.
            found = self.bank.search(queries.detach().float().cpu().numpy(), k, exclude_source)
            return torch.from_numpy(found.indices).to(out_device)
        q_all = queries.to(self.device, torch.float32)
        lo = hi = 0
        if exclude_source is not None and exclude_source in self._ranges:
            lo, hi = self._ranges[exclude_source]
        n_valid = len(self) - (hi - lo)
        if n_valid < k:
            raise ValueError(f"the bank has {n_valid} usable entries, fewer than k={k}")
        c = min(max(self.candidates, k), n_valid)
        result = []
        for i in range(0, q_all.shape[0], self.chunk):
            q = q_all[i:i + self.chunk]
            # ||q - m||^2 up to the per-query constant ||q||^2: only the ranking matters here
            approx = self.sq_norms[None, :] - 2.0 * (q.to(self.shortlist_dtype) @ self.low.T).float()
            if hi > lo:
                approx[:, lo:hi] = float("inf")
            cand = approx.topk(c, dim=1, largest=False).indices
            exact = ((q[:, None, :] - self.features[cand]) ** 2).sum(-1)
            order = exact.topk(k, dim=1, largest=False).indices
            result.append(cand.gather(1, order))
        return torch.cat(result).to(out_device)


def scale_residual(r: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """What the Swin sees of a residual: divided by the global scale (defaults row 6)."""
    return r / scale if scale != 1.0 else r
