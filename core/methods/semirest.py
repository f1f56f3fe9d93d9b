"""The SemiREST method object (fit / predict / save / load), registered as ``"semirest"``.

``fit`` runs the whole of paper 4.2: PCFs, memory bank, precomputed k-NN and synthetic pool, the
training loop, and keeps the EMA model; ``predict`` gives maps at each image's own resolution, like
:class:`semirest.core.methods.patchcore.PatchCore`, so the benchmark treats both alike. For sup / semi the
10 drawn test images (``split_budget``) are trained on and removed from ``test_samples``.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch

from semirest.core.calibration import Calibration, image_score
from semirest.core.config import Config
from semirest.core.data.datasets import Category, Sample, split_budget
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.features.patches import choose_input_size
from semirest.core.maps import detector_outputs, predict_maps, predict_scored_maps
from semirest.core.memory.bank import BankSearcher
from semirest.core.methods.registry import register_method
from semirest.core.progress import ProgressFn
from semirest.core.progress import no_progress as _no_progress
from semirest.core.train.checkpoint import load_checkpoint, save_checkpoint
from semirest.core.train.calibrate import calibrate
from semirest.core.train.stages import train_stages, unsupervised_stage
from semirest.core.train.trainer import Trainer, TrainingData, prepare_training_data, relabel

log = logging.getLogger(__name__)


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

    def fit(self, images: Sequence[np.ndarray], progress: ProgressFn = _no_progress,
            on_step: Callable[[dict], None] | None = None) -> None:
        """un / sup: one training run. semi: the unsupervised model first (paper 4.2: semi starts from
        it), then the semi stage on the same precomputed data, relabelled with the semi epsilons
        (synthetic, Eq. 14) and boxes (real images) (:func:`train_stages`). ``on_step``: every
        optimiser step's statistics (:class:`Trainer`)."""
        choose_input_size(self.cfg.features, [im.shape[:2] for im in images])
        setting = self.cfg.setting
        real = self._real() if setting in ("sup", "semi") else None
        first = unsupervised_stage(self.cfg) if setting == "semi" else self.cfg
        self.data = prepare_training_data(first, self.extractor, images, self.category_name, progress, real)
        labelled = self.data.real
        if setting == "semi" and labelled is not None:
            labelled = relabel(self.cfg, labelled, semi=True)
        result = train_stages(self.cfg, self.data, labelled, self.device, progress, self.should_stop,
                              on_stage=self._on_stage, on_step=on_step)
        self.model, self.trainer, self.un_losses = result.model, result.trainer, result.un_losses
        self.bank = self.data.bank
        self.residual_scale = self.data.residual_scale
        self.searcher = BankSearcher(self.bank, self.device)
        self.calibrate(images, [im for im, _ in real] if real else None, progress)

    def _on_stage(self, name: str, cfg: Config, data: TrainingData, trainer: Trainer) -> None:
        """A stage begins: its trainer is ``self.trainer`` while it trains (periodic checkpoints
        save its EMA model)."""
        self.trainer = trainer

    def calibrate(self, images: Sequence[np.ndarray], defects: Sequence[np.ndarray] | None = None,
                  progress: ProgressFn = _no_progress) -> Calibration | None:
        """Threshold and normalisation from the normal training ``images`` (the ones fit on, in
        that order: their bank source ids), leave-one-out (:mod:`semirest.core.train.calibrate`)."""
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
        computes (:func:`detector_outputs`); the score is the one the calibration is about."""
        if self.model is None or self.searcher is None:
            raise RuntimeError("fit() or load() must run before prediction")
        maps, bank = detector_outputs(self.cfg, self.model, self.extractor, self.searcher, self.residual_scale, images)
        return maps, image_score(maps, self.cfg.eval.image_score, bank, self.calibration)

    def predict_scored(self, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """(maps at each image's resolution, calibrated-unit image scores) in one pass (:func:`predict_scored_maps`)."""
        if self.model is None or self.searcher is None:
            raise RuntimeError("fit() or load() must run before prediction")
        return predict_scored_maps(self.cfg, self.model, self.extractor, self.searcher, self.residual_scale, images,
                                   self.calibration)

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


@register_method("semirest")
def semirest_factory(cfg: Config, device: torch.device, category: Category) -> SemiREST:
    return SemiREST(cfg, device, category)
