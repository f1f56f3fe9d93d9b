"""The memory bank: coreset features of normal images, searched with faiss.

Besides nearest-neighbour distances (PatchCore's score) it returns the neighbours themselves,
because SemiREST's input is the residual to them (Eq. 5), and the k-NN augmentation (Eq. 12)
needs the first three.

Every bank entry remembers its source image. A training image's features are searched with the
entries of that same image excluded: a feature matched against itself would give a zero residual
and teach the model that normal images look "perfectly normal" in a way test images never do
(algorithm-reference, defaults table row 5).
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch


@dataclass
class Neighbours:
    distances: np.ndarray  # (N, k) Euclidean distances, ascending
    indices: np.ndarray  # (N, k) rows of the bank


class MemoryBank:
    def __init__(self, features: np.ndarray, source_ids: np.ndarray | None = None):
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
        self._index = faiss.IndexFlatL2(self.features.shape[1])
        self._index.add(self.features)
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
            params = faiss.SearchParameters(sel=faiss.IDSelectorNot(faiss.IDSelectorRange(lo, hi)))
        k_eff = min(k, len(self))
        d2, idx = self._index.search(q, k_eff, params=params)
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
    def from_state(cls, state: dict[str, torch.Tensor]) -> "MemoryBank":
        return cls(state["bank.features"].numpy(), state["bank.source_ids"].numpy())


def residuals(queries: np.ndarray | torch.Tensor, matched: np.ndarray | torch.Tensor, mode: str = "square"):
    """Eq. 5 and 6: element-wise squared (or absolute, the ablation) matching residual."""
    diff = queries - matched
    if mode == "square":
        return diff * diff
    if mode == "abs":
        return abs(diff)
    raise ValueError(f"residual mode must be 'square' or 'abs', got {mode!r}")
