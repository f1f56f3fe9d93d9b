"""Batched PCF extraction shared by PatchCore and SemiREST, so the baseline and the method are
measured on identical features: images -> (B, h_f, w_f, d_f) float32 patch features on the CPU.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from semirest.core import distributed
from semirest.core.config import FeatureConfig
from semirest.core.features.backbones import FeatureBackbone
from semirest.core.features.patches import PatchFeatures, images_to_tensor, model_input_size, scaled_input_size
from semirest.core.features.store import FeatureStore
from semirest.core.progress import ProgressEvent, ProgressFn, no_progress


class FeatureExtractor:
    """Batched PCF extraction at the configured input size; results on the CPU as float32.

    ``spill_rows`` > 0: :meth:`extract_all` writes to a temporary on-disk
    :class:`~semirest.core.features.store.FeatureStore` (``spill_dtype``, in ``spill_dir``) instead
    of an array once the images hold more than that many patches (see ``bank.stream_threshold``).
    """

    def __init__(self, cfg: FeatureConfig, device: torch.device | str = "cpu", spill_rows: int = 0,
                 spill_dtype: str = "float32", spill_dir: str | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.spill_rows = int(spill_rows)
        self.spill_dtype = spill_dtype
        self.spill_dir = spill_dir
        backbone = FeatureBackbone(cfg.backbone, cfg.weights, cfg.allow_download)
        self.net = PatchFeatures(
            backbone,
            d_f=cfg.d_f,
            pretrain_dim=cfg.pretrain_dim,
            neighbourhood=cfg.neighbourhood,
            lambda_pe=cfg.lambda_pe,
        ).to(self.device)

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w) of the model input (features.input_size; see features/patches.py)."""
        return model_input_size(self.cfg)

    @property
    def keeps_aspect(self) -> bool:
        return self.cfg.input_scale > 0

    def input_size_for(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Model input size of one image: the square input, or its own scaled size (input_scale)."""
        return scaled_input_size(image_hw, self.cfg.input_scale) if self.keeps_aspect else self.input_size

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, h_f, w_f, d_f) float32 on the CPU; with input_scale all images must share one input size."""
        images = list(images)
        size = self.input_size
        if self.keeps_aspect and images:
            sizes = {self.input_size_for(im.shape[:2]) for im in images}
            if len(sizes) > 1:
                raise ValueError("images of different input sizes cannot share a batch; use extract_each()")
            size = sizes.pop()
        x = images_to_tensor(images, size).to(self.device)
        return self.net(x).float().cpu()

    def extract_each(self, images: Sequence[np.ndarray], progress: ProgressFn = no_progress,
                     stage: str = "features") -> list[np.ndarray]:
        """One (h_f, w_f, d_f) float32 array per image, each at its own input size (input_scale);
        images of the same input size are batched together."""
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(self.input_size_for(im.shape[:2]), []).append(i)
        done, bs = 0, self.cfg.batch_size
        for idx in groups.values():
            for j in range(0, len(idx), bs):
                part = idx[j:j + bs]
                for i, f in zip(part, self([images[i] for i in part]).numpy()):
                    out[i] = f
                done += len(part)
                progress(ProgressEvent(stage, done, len(images)))
        return out  # type: ignore[return-value]

    def extract_all(self, images: Sequence[np.ndarray], progress: ProgressFn = no_progress,
                    stage: str = "features") -> np.ndarray | FeatureStore:
        """(N, h_f, w_f, d_f) float32 for all images, in batches: an array, or a FeatureStore on
        disk when they hold more than ``spill_rows`` patches.

        Under torchrun the batches are spread over the ranks and gathered, so every rank gets the
        same result (:func:`semirest.core.distributed.map_gather`); memory holds one round of
        batches at a time.
        """
        n = len(images)
        box: dict = {}

        def compute(idx: list[int]) -> list[np.ndarray]:
            return [self([images[i] for i in idx]).numpy()]

        def emit(_: int, f: np.ndarray) -> None:
            out, pos = box.get("out"), box.get("pos", 0)
            if out is None:
                rows = n * f.shape[1] * f.shape[2]
                if 0 < self.spill_rows < rows:
                    out = FeatureStore.temporary(n, self.spill_dtype, self.spill_dir)
                else:
                    out = np.empty((n,) + f.shape[1:], dtype=np.float32)
                box["out"] = out
            out[pos:pos + len(f)] = f
            box["pos"] = pos + len(f)

        bs = self.cfg.batch_size
        # items of map_gather are whole batches: batch j covers images [j * bs, (j + 1) * bs)
        n_batches = (n + bs - 1) // bs
        distributed.map_gather(lambda js: [a for j in js for a in compute(list(range(j * bs, min(n, (j + 1) * bs))))],
                               n_batches, 1, emit,
                               lambda done: progress(ProgressEvent(stage, min(n, done * bs), n)))
        assert "out" in box
        return box["out"]
