"""The SemiREST method object (fit / predict), as registered in ``benchmark.METHODS["semirest"]``.

``fit`` runs the whole of paper 4.2: PCFs, memory bank, precomputed k-NN and synthetic pool, the
training loop, and keeps the EMA model; ``predict`` gives maps at each image's own resolution, like
:class:`semirest.core.pipeline.PatchCore`, so the benchmark treats both alike. For sup / semi the
10 drawn test images (``split_budget``) are trained on and removed from ``test_samples``.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import replace
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch

from semirest.core import distributed
from semirest.core.config import Config, apply_setting
from semirest.core.data.datasets import Category, Sample, split_budget
from semirest.core.memory.knn import BankSearcher
from semirest.core.pipeline import FeatureExtractor, ProgressFn
from semirest.core.train.checkpoint import load_checkpoint, save_checkpoint
from semirest.core.calibration import Calibration
from semirest.core.train.trainer import (Trainer, TrainingData, detector_maps, image_scores, predict_maps,
                                         prepare_training_data, relabel)

log = logging.getLogger(__name__)


def _no_progress(_) -> None:
    pass


def cpu_warning(cfg: Config, device: torch.device) -> str | None:
    """The paper preset is meant for a GPU: say so on the CPU (it still runs)."""
    if device.type == "cpu" and cfg.preset == "paper":
        return ("warning: the paper preset (WRN-50 @ 512 px, 51 M-parameter Swin, 8000 steps) is running on "
                "the CPU; expect many hours. Use --preset fast or a CUDA device.")
    return None


class SemiREST:
    name = "semirest"

    def __init__(self, cfg: Config, device: torch.device | str = "cpu", category: Category | str | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 labelled: Sequence[tuple[np.ndarray, np.ndarray]] | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.category = category
        self.category_name = category.name if isinstance(category, Category) else (category or "auto")
        msg = cpu_warning(cfg, self.device)
        if msg:
            print(msg, file=sys.stderr)
            log.warning(msg)
        self.extractor = FeatureExtractor(cfg.features, self.device, cfg.bank.stream_threshold,
                                          cfg.bank.stream_dtype, cfg.bank.stream_dir)
        self.should_stop = should_stop
        self.model = None
        self.bank = None
        self.searcher: BankSearcher | None = None
        self.residual_scale = 1.0
        self.data: TrainingData | None = None
        self.trainer: Trainer | None = None
        self.labelled: list[Sample] = []
        self.test_samples: list[Sample] | None = None
        self.un_losses: list[float] = []
        self.calibration: Calibration | None = None  # threshold and normalisation (end of fit, or the checkpoint's)
        self.metadata: dict = {}  # a loaded checkpoint's metadata (trained_at, category, ...)
        # labelled images given by the caller (``semirest train --labels``: a studio export) win over
        # the benchmark's budget drawn from the test set
        self.given = list(labelled) if labelled is not None else None
        if cfg.setting in ("sup", "semi") and isinstance(category, Category) and self.given is None:
            self.labelled, self.test_samples = split_budget(category.test, 10, cfg.seed)

    def _real(self):
        if self.given is not None:
            return self.given
        out = []
        for s in self.labelled:
            im = s.load_image()
            out.append((im, s.load_mask(im.shape[:2])))
        return out

    def fit(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress) -> None:
        """un / sup: one training run. semi: the unsupervised model first (paper 4.2: semi starts from
        it), then the semi stage on the same precomputed data, relabelled with the semi epsilons
        (synthetic, Eq. 14) and boxes (real images, Eq. 15)."""
        setting = self.cfg.setting
        real = self._real() if setting in ("sup", "semi") else None
        first = unsupervised_stage(self.cfg) if setting == "semi" else self.cfg
        self.data = prepare_training_data(first, self.extractor, images, self.category_name, progress, real)
        self.trainer = Trainer(distributed.local_config(first), self.data, self.device)
        distributed.prepare_trainer(self.trainer)  # DDP + per-rank sampling under torchrun (no-op otherwise)
        self.model = self.trainer.run(progress, self.should_stop)
        if setting == "semi":
            self.un_losses = list(self.trainer.losses)
            data = replace(self.data, synthetic=relabel(self.cfg, self.data.synthetic),
                           real=relabel(self.cfg, self.data.real, semi=True) if self.data.real is not None else None)
            self.trainer = Trainer(distributed.local_config(self.cfg), data, self.device,
                                   model=copy.deepcopy(self.model).train())
            distributed.prepare_trainer(self.trainer)
            self.model = self.trainer.run(progress, self.should_stop)
        self.bank = self.data.bank
        self.residual_scale = self.data.residual_scale
        self.searcher = BankSearcher(self.bank, self.device)
        self.calibrate(images, [im for im, _ in real] if real else None, progress)

    def calibrate(self, images: Sequence[np.ndarray], defects: Sequence[np.ndarray] | None = None,
                  progress: ProgressFn = _no_progress) -> Calibration | None:
        """Threshold and normalisation from the normal training ``images`` (the ones fit on, in
        that order: their bank source ids), leave-one-out (:mod:`semirest.core.train.calibrate`)."""
        from semirest.core.train.calibrate import calibrate

        pool = self.data.pool if self.data is not None else None
        self.calibration = calibrate(self.cfg, self.model, self.extractor, self.searcher, self.residual_scale,
                                     lambda i: images[i], len(images), pool, defects, progress)
        return self.calibration

    def predict(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress) -> list[np.ndarray]:
        if self.model is None or self.searcher is None:
            raise RuntimeError("fit() or load() must run before prediction")
        return predict_maps(self.cfg, self.model, self.extractor, self.searcher, self.residual_scale, images, progress)

    def detect(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(maps (B, H, W) at the model's input size, image scores (B,)): what the exported detector
        computes (:func:`detector_maps`); the score is the one the calibration is about."""
        if self.model is None or self.searcher is None:
            raise RuntimeError("fit() or load() must run before prediction")
        maps = detector_maps(self.cfg, self.model, self.extractor, self.searcher, self.residual_scale, images)
        return maps, image_scores(maps, self.cfg.eval.image_score)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike):
        if self.model is None or self.bank is None:
            raise RuntimeError("nothing to save: fit() has not run")
        return save_checkpoint(path, self.cfg, self.model, self.bank, self.residual_scale,
                               {"category": str(self.category_name)}, self.calibration)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu", expect: Config | None = None) -> "SemiREST":
        ck = load_checkpoint(path, expect)
        obj = cls(ck.config, device)
        obj.model = ck.model.to(obj.device)
        obj.bank = ck.bank
        obj.residual_scale = ck.residual_scale
        obj.searcher = BankSearcher(ck.bank, obj.device)
        obj.calibration = ck.calibration
        obj.metadata = dict(ck.metadata or {})
        return obj


def unsupervised_stage(cfg: Config) -> Config:
    """The un configuration that precedes a semi run: same model, features and bank, the un
    hyper-parameters of paper 4.2, and the un length (make_config gives semi 3/8 of it)."""
    un = copy.deepcopy(cfg)
    apply_setting(un, "un")
    un.train.steps = max(1, int(round(cfg.train.steps * 8 / 3)))
    return un


def semirest_factory(cfg: Config, device: torch.device, category: Category) -> SemiREST:
    return SemiREST(cfg, device, category)
