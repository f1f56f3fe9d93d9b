"""Calibration at the end of training: score normal images the model has not fit on.

Every normal training image is in the bank, so each is scored leave-one-out: its own bank entries
(the bank remembers each entry's source image) are excluded from the nearest-neighbour search, the
situation of a new image on the line, at the cost of one prediction per image and no image taken
away from training. Images outside the Swin's normal pool (``train.normal_pool``: the fast preset
trains on 256, screw has 320) were never seen by the Swin either and are taken first; the rest of
the ``eval.calibration_images`` are a seeded draw from the pool (the Swin saw them, but with the
k-NN augmented residuals of training, not these). The scores, the threshold and the normalisation
are stored in the checkpoint (:mod:`semirest.core.calibration`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from semirest.core.calibration import Calibration, calibrate_components, map_score, uses_bank
from semirest.core.config import Config
from semirest.core.memory.bank import BankSearcher
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.progress import ProgressEvent, ProgressFn
from semirest.core.maps import detector_outputs


def _no_progress(_: ProgressEvent) -> None:
    pass


def calibration_indices(n_images: int, pool: np.ndarray | None, limit: int, seed: int) -> tuple[list[int], int]:
    """Which training images to score: those outside the Swin's pool first, then a seeded draw from
    it, at most ``limit`` (0: all); returns (indices, how many are outside the pool)."""
    all_ids = np.arange(n_images)
    inside = np.zeros(n_images, dtype=bool)
    if pool is not None:
        inside[np.asarray(pool, dtype=np.int64)] = True
    else:
        inside[:] = True
    rng = np.random.default_rng(seed + 7919)
    unseen = all_ids[~inside]
    seen = rng.permutation(all_ids[inside])
    limit = n_images if limit <= 0 else min(limit, n_images)
    unseen = rng.permutation(unseen)[:limit]
    chosen = np.concatenate([unseen, seen[:limit - len(unseen)]])
    return [int(i) for i in np.sort(chosen)], len(unseen)


def calibrate(cfg: Config, model: nn.Module, extractor: FeatureExtractor, searcher: BankSearcher, scale: float,
              load_image: Callable[[int], np.ndarray] | None, n_images: int, pool: np.ndarray | None = None,
              defects: Sequence[np.ndarray] | None = None, progress: ProgressFn = _no_progress,
              load_features: Callable[[int], np.ndarray] | None = None,
              defect_features: np.ndarray | None = None) -> Calibration | None:
    """Scores of the chosen normal training images (``load_image(i)`` gives image i of the training
    list, whose bank source id is i), leave-one-out; ``defects``: labelled defective images, for the
    miss rate at the threshold. None when ``eval.calibration_images`` < 0 or there are no images.

    ``load_features(i)`` (the (h_f, w_f, d_f) PCFs of image i) and ``defect_features`` replace the
    images when the PCFs are at hand (a project run's preparation cache): nothing is read again
    from the image files and ``extractor`` may be None."""
    if cfg.eval.calibration_images < 0 or n_images == 0:
        return None
    ids, n_unseen = calibration_indices(n_images, pool, cfg.eval.calibration_images, cfg.seed)
    spec = cfg.eval.image_score
    map_scores: list[float] = []
    bank_scores: list[float] = []
    bs = cfg.features.batch_size if extractor is None else extractor.cfg.batch_size
    for j in range(0, len(ids), bs):
        part = ids[j:j + bs]
        if load_features is not None:
            feats = torch.from_numpy(np.stack([np.asarray(load_features(i), dtype=np.float32) for i in part]))
            maps, bank = detector_outputs(cfg, model, extractor, searcher, scale, [], exclude_sources=part, features=feats)
        else:
            maps, bank = detector_outputs(cfg, model, extractor, searcher, scale, [load_image(i) for i in part],
                                          exclude_sources=part)
        map_scores += map_score(maps, spec).tolist()
        bank_scores += bank.tolist()
        progress(ProgressEvent("calibrate", min(j + bs, len(ids)), len(ids)))
    defect_maps = defect_bank = None
    if defect_features is not None and len(defect_features):
        feats = torch.from_numpy(np.asarray(defect_features, dtype=np.float32))
        defect_maps, defect_bank = detector_outputs(cfg, model, extractor, searcher, scale, [], features=feats)
    elif defects:
        defect_maps, defect_bank = detector_outputs(cfg, model, extractor, searcher, scale, list(defects))
    return calibrate_components(map_scores, bank_scores if uses_bank(spec) else None, cfg.eval.false_alarm, n_unseen,
                                None if defect_maps is None else map_score(defect_maps, spec), defect_bank, spec)
