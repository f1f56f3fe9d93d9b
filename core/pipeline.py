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
from semirest.core.features.patches import PatchFeatures, images_to_tensor, scaled_input_size
from semirest.core.maps import upsample_and_smooth
from semirest.core.memory.bank import MemoryBank
from semirest.core.memory.coreset import select_coreset
from semirest.core.memory.stream import ArrayRows, FeatureStore, stream_coreset


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
    """Batched PCF extraction at the configured input size; results on the CPU as float32.

    ``spill_rows`` > 0: :meth:`extract_all` writes to a temporary on-disk
    :class:`~semirest.core.memory.stream.FeatureStore` (``spill_dtype``, in ``spill_dir``) instead
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
        return (self.cfg.image_size, self.cfg.image_size)

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

    def extract_each(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress,
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

    def extract_all(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress,
                    stage: str = "features") -> np.ndarray | FeatureStore:
        """(N, h_f, w_f, d_f) float32 for all images, in batches: an array, or a FeatureStore on
        disk when they hold more than ``spill_rows`` patches.

        Under torchrun the batches are spread over the ranks and gathered, so every rank gets the
        same result (:func:`semirest.core.distributed.map_gather`); memory holds one round of
        batches at a time.
        """
        from semirest.core import distributed

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


def rows_and_sources(maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps of different sizes (h_i, w_i, d) -> all rows (n, d) and each row's image index."""
    rows = np.concatenate([f.reshape(-1, f.shape[-1]) for f in maps])
    ids = np.concatenate([np.full(f.shape[0] * f.shape[1], i, dtype=np.int64) for i, f in enumerate(maps)])
    return rows, ids


def fit_memory_bank_rows(rows: np.ndarray, source_ids: np.ndarray, cfg: BankConfig, seed: int = 0,
                         progress: ProgressFn = _no_progress) -> MemoryBank:
    """Coreset-subsample training features given as rows (n, d) with each row's source image
    (feature maps of different sizes, features.input_scale); selection in memory, on rank 0 under
    torchrun."""
    from semirest.core import distributed

    progress(ProgressEvent("coreset", 0, 1, {"features": len(rows)}))
    result = distributed.on_main(lambda: select_coreset(rows, cfg.coreset_ratio, cfg.projection_dim, seed,
                                                        cfg.max_size, cfg.projection))
    return _bank_of(result, rows[result.indices], np.asarray(source_ids)[result.indices], cfg, progress)


def fit_memory_bank(train_features, cfg: BankConfig, seed: int = 0, progress: ProgressFn = _no_progress) -> MemoryBank:
    """Coreset-subsample the (N, h, w, d) training PCFs (an array or a FeatureStore) into a bank
    that remembers each source image.

    Up to ``cfg.stream_threshold`` patches the coreset is :func:`select_coreset` on all of them in
    memory (:func:`fit_memory_bank_rows`); above it, :func:`stream_coreset` (two stages, bounded
    memory). Under torchrun the selection runs on rank 0 only and its indices are broadcast.
    """
    from semirest.core import distributed

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
        ex = self.extractor
        if not ex.spill_rows and self.bank_cfg.stream_threshold > 0:
            ex.spill_rows, ex.spill_dtype = self.bank_cfg.stream_threshold, self.bank_cfg.stream_dtype
            ex.spill_dir = self.bank_cfg.stream_dir
        if ex.keeps_aspect:
            rows, ids = rows_and_sources(ex.extract_each(images, progress))
            self.bank = fit_memory_bank_rows(rows, ids, self.bank_cfg, self.seed, progress)
            return
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

    def predict(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress) -> list[np.ndarray]:
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
