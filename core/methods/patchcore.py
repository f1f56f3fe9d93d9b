"""The PatchCore baseline (the paper's Table 1 row): the score of a patch is its distance to the
nearest memory-bank entry, upsampled and smoothed to each image's resolution."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from semirest.core.config import BankConfig, Config
from semirest.core.data.datasets import Category
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.features.patches import choose_input_size
from semirest.core.features.store import FeatureStore
from semirest.core.maps import to_image_maps, upsample_and_smooth
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.fit import fit_memory_bank, fit_memory_bank_rows, rows_and_sources
from semirest.core.methods.registry import register_method
from semirest.core.progress import ProgressEvent, ProgressFn, no_progress


class PatchCore:
    """The PatchCore baseline: score = distance to the nearest bank entry (paper's Table 1 row)."""

    name = "patchcore"

    def __init__(self, extractor: FeatureExtractor, bank_cfg: BankConfig, sigma: float = 4.0, seed: int = 0):
        self.extractor = extractor
        self.bank_cfg = bank_cfg
        self.sigma = sigma
        self.seed = seed
        self.bank: MemoryBank | None = None

    def fit(self, images: Sequence[np.ndarray], progress: ProgressFn = no_progress) -> None:
        ex = self.extractor
        if not ex.spill_rows and self.bank_cfg.stream_threshold > 0:
            ex.spill_rows, ex.spill_dtype = self.bank_cfg.stream_threshold, self.bank_cfg.stream_dtype
            ex.spill_dir = self.bank_cfg.stream_dir
        if ex.keeps_aspect:
            rows, ids = rows_and_sources(ex.extract_each(images, progress))
            self.bank = fit_memory_bank_rows(rows, ids, self.bank_cfg, self.seed, progress)
            return
        choose_input_size(ex.cfg, [im.shape[:2] for im in images])
        feats = ex.extract_all(images, progress)
        self.bank = fit_memory_bank(feats, self.bank_cfg, self.seed, progress)
        if isinstance(feats, FeatureStore):
            feats.close()

    def _scores(self, f: np.ndarray) -> np.ndarray:
        """(B, h, w, d) features -> (B, h, w) nearest-entry distances."""
        b, h, w, d = f.shape
        return self.bank.search(f.reshape(-1, d), k=1).distances[:, 0].reshape(b, h, w)

    def token_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, h_f, w_f) scores of images that share one input size."""
        if self.bank is None:
            raise RuntimeError("fit() must run before prediction")
        return self._scores(self.extractor(images).numpy())

    def predict(self, images: Sequence[np.ndarray], progress: ProgressFn = no_progress) -> list[np.ndarray]:
        if self.bank is None:
            raise RuntimeError("fit() must run before prediction")
        maps: list[np.ndarray] = []
        bs = self.extractor.cfg.batch_size
        for i in range(0, len(images), bs):
            batch = images[i : i + bs]
            if self.extractor.keeps_aspect:  # each image at its own size: one search per image
                maps += [upsample_and_smooth(self._scores(f[None])[0], im.shape[:2], self.sigma)
                         for f, im in zip(self.extractor.extract_each(batch), batch)]
            else:
                maps += to_image_maps(self.token_scores(batch), [im.shape[:2] for im in batch], self.sigma)
            progress(ProgressEvent("predict", min(i + bs, len(images)), len(images)))
        return maps


@register_method("patchcore")
def patchcore_factory(cfg: Config, device: torch.device, category: Category) -> PatchCore:
    return PatchCore(FeatureExtractor(cfg.features, device), cfg.bank, cfg.eval.sigma, cfg.seed)
