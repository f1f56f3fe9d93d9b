"""Exact k nearest bank entries for many queries, fast on CPUs with bf16 matrix units and on GPUs.

SemiREST needs neighbours (not only distances) for every token of every training image, the
synthetic pool and each test image (Eq. 5, Eq. 12): millions of queries against a bank of tens of
thousands of 1024-d entries. faiss' flat index is float32 BLAS only and becomes a per-query loop
once entries are excluded (the same-image rule of defaults row 5). Here the candidates come from a
bf16 GEMM (about 5x the float32 speed on this project's AMX CPU, tensor cores on a GPU), and the
best ``candidates`` per query are then re-ranked with exact float32 distances, so the returned
order is exact unless the true neighbour falls outside the bf16 shortlist (the tests compare with
brute force).

Banks built with an approximate faiss index (``bank.index`` "ivf", or "auto" above
``bank.index_threshold`` entries) are searched through that index instead (MemoryBank.search).
"""
from __future__ import annotations

import numpy as np
import torch

from semirest.core.memory.bank import MemoryBank


class BankSearcher:
    """k-NN over a :class:`MemoryBank`'s entries on ``device``; excludes one source image on request."""

    def __init__(self, bank: MemoryBank, device: torch.device | str = "cpu", candidates: int = 16,
                 chunk: int = 2048):
        self.bank = bank
        self.device = torch.device(device)
        self.features = torch.from_numpy(bank.features).to(self.device)
        self.low = self.features.to(torch.bfloat16)
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
            approx = self.sq_norms[None, :] - 2.0 * (q.to(torch.bfloat16) @ self.low.T).float()
            if hi > lo:
                approx[:, lo:hi] = float("inf")
            cand = approx.topk(c, dim=1, largest=False).indices
            exact = ((q[:, None, :] - self.features[cand]) ** 2).sum(-1)
            order = exact.topk(k, dim=1, largest=False).indices
            result.append(cand.gather(1, order))
        return torch.cat(result).to(out_device)
