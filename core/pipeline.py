"""The shared front half of every method: images -> PCFs -> memory bank -> matches.

PatchCore stops at the nearest-neighbour distance; SemiREST continues with the residuals to the
matched entries (:mod:`semirest.core.memory.bank`) and a Swin model over them. Both use the
:class:`FeatureExtractor` and :func:`fit_memory_bank` here, so the baseline and the method are
measured on identical features.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from semirest.core.config import BankConfig, FeatureConfig
from semirest.core.data.datasets import Sample
from semirest.core.features.backbones import FeatureBackbone
from semirest.core.features.patches import PatchFeatures, images_to_tensor
from semirest.core.maps import upsample_and_smooth
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.coreset import select_coreset


@dataclass
class ProgressEvent:
    """What a long step reports: the CLI draws a bar from it, the studio a progress widget."""

    stage: str
    done: int
    total: int
    info: dict = field(default_factory=dict)


ProgressFn = Callable[[ProgressEvent], None]


def _no_progress(_: ProgressEvent) -> None:
    pass


def pick_device(spec: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{spec}' was requested but no CUDA device is available")
    return dev


def load_images(samples: Sequence[Sample]) -> list[np.ndarray]:
    return [s.load_image() for s in samples]


class FeatureExtractor:
    """Batched PCF extraction at the configured input size; results on the CPU as float32."""

    def __init__(self, cfg: FeatureConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
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
        return (self.cfg.image_size, self.cfg.image_size)

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, h_f, w_f, d_f) float32 on the CPU."""
        x = images_to_tensor(list(images), self.input_size).to(self.device)
        return self.net(x).float().cpu()

    def extract_all(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress, stage: str = "features") -> np.ndarray:
        """(N, h_f, w_f, d_f) float32 for all images, in batches."""
        out = None
        bs = self.cfg.batch_size
        for i in range(0, len(images), bs):
            f = self(images[i : i + bs]).numpy()
            if out is None:
                out = np.empty((len(images),) + f.shape[1:], dtype=np.float32)
            out[i : i + len(f)] = f
            progress(ProgressEvent(stage, min(i + bs, len(images)), len(images)))
        assert out is not None
        return out


def fit_memory_bank(train_features: np.ndarray, cfg: BankConfig, seed: int = 0, progress: ProgressFn = _no_progress) -> MemoryBank:
    """Coreset-subsample the (N, h, w, d) training PCFs into a bank that remembers each source image."""
    n, h, w, d = train_features.shape
    flat = train_features.reshape(-1, d)
    progress(ProgressEvent("coreset", 0, 1, {"features": flat.shape[0]}))
    result = select_coreset(flat, cfg.coreset_ratio, cfg.projection_dim, seed, cfg.max_size, cfg.projection)
    progress(ProgressEvent("coreset", 1, 1, {"kept": len(result.indices), "seconds": result.seconds}))
    source = np.repeat(np.arange(n), h * w)[result.indices]
    return MemoryBank(flat[result.indices], source)


def to_image_maps(token_maps: np.ndarray, sizes: Sequence[tuple[int, int]], sigma: float) -> list[np.ndarray]:
    """Token-level maps -> maps at each image's own resolution (bilinear + Gaussian)."""
    return [upsample_and_smooth(m, hw, sigma) for m, hw in zip(token_maps, sizes)]


class PatchCore:
    """The PatchCore baseline: score = distance to the nearest bank entry (paper's Table 1 row)."""

    name = "patchcore"

    def __init__(self, extractor: FeatureExtractor, bank_cfg: BankConfig, sigma: float = 4.0, seed: int = 0):
        self.extractor = extractor
        self.bank_cfg = bank_cfg
        self.sigma = sigma
        self.seed = seed
        self.bank: MemoryBank | None = None

    def fit(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress) -> None:
        feats = self.extractor.extract_all(images, progress)
        self.bank = fit_memory_bank(feats, self.bank_cfg, self.seed, progress)

    def token_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self.bank is None:
            raise RuntimeError("fit() must run before prediction")
        f = self.extractor(images).numpy()
        b, h, w, d = f.shape
        nn = self.bank.search(f.reshape(-1, d), k=1)
        return nn.distances[:, 0].reshape(b, h, w)

    def predict(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress) -> list[np.ndarray]:
        maps: list[np.ndarray] = []
        bs = self.extractor.cfg.batch_size
        for i in range(0, len(images), bs):
            batch = images[i : i + bs]
            maps += to_image_maps(self.token_scores(batch), [im.shape[:2] for im in batch], self.sigma)
            progress(ProgressEvent("predict", min(i + bs, len(images)), len(images)))
        return maps
