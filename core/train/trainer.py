"""SemiREST training loop (paper section 4.2) for the un / sup settings, built so that a step is cheap.

Everything that does not change during training is computed once by :func:`prepare_training_data`:
the PCFs of the normal images, the memory bank, every training token's k = 3 nearest bank entries
with its own image excluded (defaults row 5), a pool of MemSeg synthetic anomalies with their PCFs,
neighbours and Eq. 14 block labels, and (sup) the real labelled images the same way. A training
step (:meth:`Trainer.step`) then only samples b1 normal + b2 synthetic (+ b3 real) images, draws
round(p * Q) >= 1 of each image's Q windows (defaults row 12), turns the windows into residual
tokens with the k-NN augmentation (Eq. 12; the plain 1-NN residual of Eq. 5/6 when ``knn_aug`` is
off), optionally drops tokens (Eq. 13), runs the Swin (Eq. 9), and applies the focal loss (Eq. 11)
with AdamW, warm-up + cosine lr, gradient clipping and an EMA of the weights (used for evaluation).

Residual scale (defaults row 6, our choice): squared residuals of 1024-d features have a tiny,
heavy-tailed range; every residual is divided by one global scalar, the mean 1-NN residual over the
normal training tokens, so the first linear layer sees values of order 1 whatever the backbone. The
scalar is stored in the checkpoint and used at test time.

The "no bagging" ablation (``model.bagging = False``) trains and predicts on whole token maps (one
window the size of the map), i.e. one Swin over the whole image.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from semirest.core import distributed
from semirest.core.config import Config, ConfigError, validate_config
from semirest.core.device import autocast
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.labels.blocks import IGNORE, NEGATIVE, POSITIVE, UNKNOWN, block_labels, semi_labels_from_boxes
from semirest.core.labels.boxes import RotatedBox, boxes_from_mask
from semirest.core.memory.bank import BankSearcher, MemoryBank, residual, scale_residual
from semirest.core.memory.fit import fit_memory_bank
from semirest.core.model.bagging import window_origins
from semirest.core.model.swin import ResidualSwin, SwinConfig
from semirest.core.model.tokens import pcr_to_tokens
from semirest.core.progress import ProgressEvent, ProgressFn
from semirest.core.progress import no_progress as _no_progress
from semirest.core.train.augment import KnnAugmenter, pcr_dropout
from semirest.core.train.box_targets import box_targets, nn_distances, normal_distance_threshold
from semirest.core.train.losses import focal_loss
from semirest.core.train.resmixmatch import ResMixMatchParams, resmixmatch_loss
from semirest.core.train.synthetic import SyntheticAnomalies


class TrainingDataError(ValueError):
    """The training images cannot train a model (too few of them); the message says what to add."""


class TrainingCancelled(Exception):
    """Raised inside :meth:`Trainer.run` when the cancel callable returns True."""


# -- model ------------------------------------------------------------------------------------------
def swin_config(cfg: Config) -> SwinConfig:
    m = cfg.model
    return SwinConfig(in_dim=cfg.features.d_f * m.rho * m.rho, embed_dim=m.embed_dim, depth=m.depth,
                      num_heads=m.num_heads, window_size=m.window_size, mlp_ratio=m.mlp_ratio,
                      drop_path=m.drop_path, input_size=m.mu, input_norm=m.input_norm,
                      magnitude_skip=m.magnitude_skip)


def build_model(cfg: Config) -> ResidualSwin:
    return ResidualSwin(swin_config(cfg))


# -- precomputed training data ---------------------------------------------------------------------
@dataclass
class ImageSet:
    """Training images reduced to what a step needs (all on the CPU).

    ``features`` (N, h_f, w_f, d_f) float16 PCFs (stored compactly, used as float32); ``neighbours`` (N, h_f, w_f, K) int64 bank rows,
    nearest first, own source excluded; ``labels`` (N, h_t, w_t) int64 Eq. 14 token labels.
    """

    features: torch.Tensor
    neighbours: torch.Tensor
    labels: torch.Tensor
    masks: list | None = None  # pixel masks the labels came from (synthetic / real), for relabelling

    def __len__(self) -> int:
        return self.features.shape[0]


@dataclass
class TrainingData:
    bank: MemoryBank
    residual_scale: float
    normal: ImageSet
    synthetic: ImageSet
    real: ImageSet | None = None
    seconds: float = 0.0
    # indices (into the training images) of the normal images the Swin trains on (train.normal_pool);
    # the others were only put in the bank, and calibration scores them first
    pool: np.ndarray | None = None


def token_grid(cfg: Config, feature_hw: tuple[int, int]) -> tuple[int, int]:
    rho = cfg.model.rho
    return feature_hw[0] // rho, feature_hw[1] // rho


def _neighbour_rows(searcher: BankSearcher, feats: np.ndarray, k: int, sources: Sequence[int | None],
                    progress: ProgressFn, stage: str) -> torch.Tensor:
    n, h, w, d = feats.shape
    out = torch.empty((n, h, w, k), dtype=torch.int64)

    def one(i: int) -> torch.Tensor:
        q = torch.from_numpy(feats[i].reshape(-1, d))
        return searcher.search(q, k, exclude_source=sources[i]).reshape(h, w, k).cpu()

    # under torchrun the images are spread over the ranks and the rows gathered (a plain loop otherwise)
    distributed.map_gather(lambda idx: [one(i) for i in idx], n, 1, out.__setitem__,
                           lambda done: progress(ProgressEvent(stage, done, n)))
    return out


def make_image_set(cfg: Config, feats: np.ndarray, masks: Sequence[np.ndarray | None], sources: Sequence[int | None],
                   searcher: BankSearcher, progress: ProgressFn, stage: str) -> ImageSet:
    """PCFs + k-NN rows + Eq. 14 labels (all NEGATIVE where the mask is None) for a set of images."""
    if not isinstance(feats, np.ndarray):  # a FeatureStore (extraction spilled to disk): the set lives in memory
        feats = feats[np.arange(len(feats))]
    n, h, w, _ = feats.shape
    grid = token_grid(cfg, (h, w))
    labels = torch.full((n,) + grid, NEGATIVE, dtype=torch.int64)
    for i, m in enumerate(masks):
        if m is not None:
            labels[i] = torch.from_numpy(block_labels(m, grid, cfg.train.eps_plus, cfg.train.eps_minus))
    rows = _neighbour_rows(searcher, feats, max(3, cfg.bank.knn), sources, progress, stage)
    keep = list(masks) if any(m is not None for m in masks) else None
    # float16 halves the largest array (the residual is formed in float32 from it, see _windows)
    return ImageSet(torch.from_numpy(feats).to(torch.float16), rows, labels, keep)


def relabel(cfg: Config, images: ImageSet, semi: bool = False,
            boxes: Sequence[list[RotatedBox]] | None = None) -> ImageSet:
    """The same images with labels recomputed from their masks: Eq. 14 with ``cfg``'s eps, or
    (``semi``) Eq. 15 from rotated boxes: ``boxes`` per image when given (e.g. jittered, as a person
    draws them), else one rotated box per defect region (:func:`boxes_from_mask`)."""
    if images.masks is None:
        return images
    grid = tuple(images.labels.shape[1:])
    labels = images.labels.clone()
    for i, m in enumerate(images.masks):
        if m is None:
            continue
        if semi:
            drawn = list(boxes[i]) if boxes is not None else boxes_from_mask(m)
            labels[i] = torch.from_numpy(semi_labels_from_boxes(drawn, m.shape[:2], grid, cfg.train.box_unknown_fraction))
        else:
            labels[i] = torch.from_numpy(block_labels(m, grid, cfg.train.eps_plus, cfg.train.eps_minus))
    return ImageSet(images.features, images.neighbours, labels, images.masks)


def box_target_set(data: TrainingData, quantile: float) -> ImageSet:
    """The box-labelled images with their Eq. 15 UNKNOWN tokens turned into targets by the bank's
    distances (:mod:`semirest.core.train.box_targets`)."""
    bank = torch.from_numpy(data.bank.features)
    real = data.real
    threshold = normal_distance_threshold(data.normal.features, data.normal.neighbours, bank, quantile)
    labels = real.labels.clone()
    for i in range(len(real)):
        d = nn_distances(real.features[i], real.neighbours[i], bank).numpy()
        labels[i] = torch.from_numpy(box_targets(labels[i].numpy(), d, threshold))
    return ImageSet(real.features, real.neighbours, labels, real.masks)


def residual_scale(cfg: Config, normal: ImageSet, bank_features: torch.Tensor, max_images: int = 64) -> float:
    """Mean 1-NN residual over (up to ``max_images``) normal training images (defaults row 6)."""
    if not cfg.train.residual_norm:
        return 1.0
    total, count = 0.0, 0
    for i in range(min(len(normal), max_images)):
        f = normal.features[i].float()
        r = residual(f, bank_features[normal.neighbours[i, ..., 0]], cfg.bank.residual)
        total += float(r.double().sum())
        count += r.numel()
    return max(total / max(count, 1), 1e-12)


def prepare_training_data(cfg: Config, extractor: FeatureExtractor, images: Sequence[np.ndarray],
                          category: str = "auto", progress: ProgressFn = _no_progress,
                          real: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                          train_features: np.ndarray | None = None) -> TrainingData:
    """Everything fixed during training, computed once (see the module docstring).

    ``images``: normal RGB uint8 training images; ``real``: (image, pixel mask) pairs of labelled
    defective images (sup); ``train_features``: the images' PCFs when already extracted.
    """
    if cfg.features.input_scale > 0:
        raise ConfigError("features.input_scale (each image at its own aspect) works with the PatchCore "
                          "method only: SemiREST trains on one token grid for every image; use features.image_size")
    need = 2 if cfg.bank.exclude_self else 1
    if len(images) < need:
        raise TrainingDataError(
            f"{len(images)} normal training image{'s' if len(images) != 1 else ''}: training needs at least {need} "
            "(each image's patches are compared with those of the other normal images); add normal images")
    t0 = time.perf_counter()
    tc = cfg.train
    feats = train_features if train_features is not None else extractor.extract_all(images, progress)
    bank = fit_memory_bank(feats, cfg.bank, cfg.seed, progress)
    searcher = BankSearcher(bank, extractor.device)
    rng = np.random.default_rng(cfg.seed)
    n = len(images)
    pool = np.arange(n) if tc.normal_pool <= 0 or tc.normal_pool >= n else np.sort(rng.choice(n, tc.normal_pool, replace=False))
    normal = make_image_set(cfg, feats[pool], [None] * len(pool), [int(i) for i in pool], searcher, progress, "knn normal")
    del feats

    n_syn = tc.synthetic_pool if tc.synthetic_pool > 0 else len(pool)
    gen = SyntheticAnomalies(foreground=category)
    src_ids = rng.choice(n, n_syn, replace=n_syn > n)
    syn_images, syn_masks = [], []
    for j, s in enumerate(src_ids):
        im, m = gen.generate(images[int(s)], rng)
        syn_images.append(im)
        syn_masks.append(m)
        progress(ProgressEvent("synthesise", j + 1, n_syn))
    syn_feats = extractor.extract_all(syn_images, progress, stage="features syn")
    del syn_images
    synthetic = make_image_set(cfg, syn_feats, syn_masks, [int(s) for s in src_ids], searcher, progress, "knn syn")
    del syn_feats

    real_set = None
    if real:
        real_feats = extractor.extract_all([im for im, _ in real], progress, stage="features real")
        real_set = make_image_set(cfg, real_feats, [m for _, m in real], [None] * len(real), searcher, progress, "knn real")
    scale = residual_scale(cfg, normal, searcher.features.cpu())
    return TrainingData(bank, scale, normal, synthetic, real_set, time.perf_counter() - t0, pool)


# -- schedule and EMA ------------------------------------------------------------------------------
def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to 0 (defaults row 9)."""
    warm = max(1, int(round(total * warmup_fraction)))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode whose weights take no gradient (the EMA model, the semi start guesser)."""
    out = copy.deepcopy(model).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


class EMA:
    """Exponential moving average of a model's weights (evaluation model, paper 4.2).

    The decay ramps up as min(decay, (1 + t) / (10 + t)) so short runs are not dominated by the
    random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = frozen_copy(model)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


# -- tokens ----------------------------------------------------------------------------------------
def window_size_tokens(cfg: Config, grid: tuple[int, int]) -> tuple[int, int]:
    """(mu, step) of the windows used in training and prediction; the whole map without bagging."""
    if cfg.model.bagging:
        return cfg.model.mu, cfg.model.step
    side = max(grid)
    return side, side


def _pad(x: torch.Tensor, h: int, w: int, value=0) -> torch.Tensor:
    """Pad dims 0 and 1 of ``x`` at the bottom / right up to (h, w)."""
    ph, pw = h - x.shape[0], w - x.shape[1]
    if ph <= 0 and pw <= 0:
        return x
    out = torch.full((max(h, x.shape[0]), max(w, x.shape[1])) + tuple(x.shape[2:]), value, dtype=x.dtype)
    out[: x.shape[0], : x.shape[1]] = x
    return out


class Trainer:
    """The training loop; ``model`` may be given to continue from earlier weights (semi).

    ``on_step`` is called after every optimiser step with that step's statistics: ``step``, ``loss``,
    ``lr``, ``windows`` (the sampled windows' origins per image and set) and, with ResMixMatch,
    Algorithm 1's ``loss_x, loss_u, lambda_u, n_x, n_u, guess_mean`` (the mean guess inside the
    boxes: a fall towards 0 is the guesses collapsing to "normal").
    """

    def __init__(self, cfg: Config, data: TrainingData, device: torch.device | str = "cpu",
                 model: ResidualSwin | None = None, on_step: Callable[[dict], None] | None = None):
        validate_config(cfg)  # before training, not when the calibration after it needs a value
        self.cfg = cfg
        self.data = data
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.model = (model if model is not None else build_model(cfg)).to(self.device)
        for p in self.model.parameters():  # an EMA copy (semi's starting point) has them frozen
            p.requires_grad_(True)
        self.ema = EMA(self.model, cfg.train.ema_decay)
        tc = cfg.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, tc.steps, tc.warmup_fraction))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.bank_features = torch.from_numpy(data.bank.features)
        # one k-NN augmenter (Eq. 12) for the fully supervised part and ResMixMatch's copies
        # (Algorithm 1 step 2)
        self.augmenter = KnnAugmenter(tc.a1, tc.a2, cfg.bank.residual, True, tc.noise_std, tc.noise_clip,
                                      cfg.model.rho, data.residual_scale)
        self.step_count = 0
        self.losses: list[float] = []
        self.semi = cfg.setting == "semi" and data.real is not None and tc.b3 > 0
        if self.semi and tc.semi_method == "box_targets":
            self.data = data = replace(data, real=box_target_set(data, tc.box_quantile))
            self.semi = False  # the boxed images now hold targets: they train through the focal loss
        self.mix_params = ResMixMatchParams(
            m_copies=tc.m_copies, sharpen_t=tc.sharpen_t, mixup_alpha=tc.mixup_alpha, dropout=tc.mix_dropout,
            dropout_alpha=tc.dropout_alpha, alpha_x=tc.focal_alpha, gamma_x=tc.focal_gamma, alpha_u=tc.alpha_u,
            gamma_u=tc.gamma_u, lambda_u=tc.lambda_u, rampup_steps=tc.rampup_steps, mixmatch=tc.mixmatch)
        self.on_step = on_step
        self.last_stats: dict = {}
        self._step_windows: list = []
        h_f, w_f = data.normal.features.shape[1:3]
        self.grid = token_grid(cfg, (h_f, w_f))
        self.mu, self.stride = window_size_tokens(cfg, self.grid)
        self.origins = window_origins(self.grid, self.mu, self.stride)

    # one image -> its sampled windows
    def _windows(self, images: ImageSet, i: int, n_windows: int):
        rho, mu = self.cfg.model.rho, self.mu
        feats = _pad(images.features[i].float(), mu * rho, mu * rho)
        rows = _pad(images.neighbours[i], mu * rho, mu * rho)
        labels = _pad(images.labels[i], mu, mu, IGNORE)
        sel = torch.randperm(len(self.origins), generator=self.generator)[:n_windows]
        if self.cfg.train.positive_windows:
            sel = self._with_positive_window(sel, labels)
        part = next((k for k in ("normal", "synthetic", "real") if getattr(self.data, k) is images), "other")
        self._step_windows.append((part, i, self.origins[sel].tolist()))
        fw, nw, lw = [], [], []
        for r, c in self.origins[sel].tolist():
            fw.append(feats[r * rho:(r + mu) * rho, c * rho:(c + mu) * rho])
            nw.append(rows[r * rho:(r + mu) * rho, c * rho:(c + mu) * rho])
            lw.append(labels[r:r + mu, c:c + mu])
        # Maps smaller than a window: padded positions carry IGNORE labels, so whatever residual
        # they get never reaches the loss.
        f, n, lab = torch.stack(fw), torch.stack(nw), torch.stack(lw)
        return f, n, lab

    def _with_positive_window(self, sel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Make sure one sampled window holds a positive (or, for box-labelled images, unknown) token
        when the image has any: a uniform draw of 2 of 9 windows misses a small synthetic defect
        half the time, and the step then learns from negatives only; semi's single window per real
        image missed the boxes 63 % of the time on screw (train.positive_windows)."""
        mu = self.mu
        wanted = (labels == POSITIVE) | (labels == UNKNOWN)
        has = torch.tensor([bool(wanted[r:r + mu, c:c + mu].any()) for r, c in self.origins.tolist()])
        if not has.any() or has[sel].any():
            return sel
        candidates = torch.nonzero(has).flatten()
        pick = candidates[torch.randint(len(candidates), (1,), generator=self.generator)]
        return torch.cat([pick, sel[1:]])

    def _gather(self, parts, n_windows: int):
        """Sampled windows of b images from each (ImageSet, b): PCFs, neighbour features, labels."""
        fs, ns, ls = [], [], []
        for images, b in parts:
            if b <= 0 or len(images) == 0:
                continue
            idx = torch.randint(len(images), (b,), generator=self.generator)
            for i in idx.tolist():
                f, n, lab = self._windows(images, i, n_windows)
                fs.append(f)
                ns.append(n)
                ls.append(lab)
        f = torch.cat(fs).to(self.device)
        neigh = self.bank_features[torch.cat(ns)[..., :3]].to(self.device)
        return f, neigh, torch.cat(ls).to(self.device)

    def sample_semi(self):
        """ResMixMatch inputs (semi): ((PCFs, neighbours), Eq. 15 labels) of b3 box-labelled images."""
        tc = self.cfg.train
        n_windows = max(1, int(round(tc.window_fraction * len(self.origins))))
        f, neigh, labels = self._gather([(self.data.real, tc.b3)], n_windows)
        return (f, neigh), labels

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B_w, mu, mu, d_t), labels (B_w, mu, mu)) for one step, on the trainer's device."""
        tc = self.cfg.train
        n_windows = max(1, int(round(tc.window_fraction * len(self.origins))))
        parts = [(self.data.normal, tc.b1), (self.data.synthetic, tc.b2)]
        if self.data.real is not None and tc.b3 > 0 and not self.semi:
            parts.append((self.data.real, tc.b3))
        f, neigh, labels = self._gather(parts, n_windows)
        if tc.knn_aug:
            tokens = self.augmenter((f, neigh), self.generator)
        else:
            r = residual(f, neigh[..., 0, :], self.cfg.bank.residual)
            tokens = pcr_to_tokens(scale_residual(r, self.data.residual_scale), self.cfg.model.rho)
        if tc.pcr_dropout:
            tokens = pcr_dropout(tokens, tc.dropout_alpha, self.generator)
        return tokens, labels

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tc = self.cfg.train
        return focal_loss(self.model(tokens), labels, tc.focal_alpha, tc.focal_gamma)

    def train_on(self, tokens: torch.Tensor, labels: torch.Tensor, semi=None) -> float:
        """One optimiser step on a given batch (also used by the tests on a fixed batch); ``semi``:
        ResMixMatch inputs from :meth:`sample_semi`, whose L_mix is added (paper 3.4)."""
        self.model.train()
        with autocast(self.cfg, self.device):
            loss = self.loss(tokens, labels)
            if semi is not None:
                l_mix, self.last_stats = resmixmatch_loss(self.model, semi[0], semi[1], self.step_count,
                                                          self.mix_params, self.generator, self.augmenter)
                loss = loss + l_mix
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model, self.step_count)
        self.step_count += 1
        value = float(loss.detach())
        self.losses.append(value)
        if self.on_step is not None:
            self.on_step({"step": self.step_count, "loss": value, "lr": self.scheduler.get_last_lr()[0],
                          "windows": self._step_windows, **(self.last_stats if semi is not None else {})})
        self._step_windows = []
        return value

    def step(self) -> float:
        tokens, labels = self.sample_batch()
        return self.train_on(tokens, labels, self.sample_semi() if self.semi else None)

    def run(self, progress: ProgressFn = _no_progress, should_stop: Callable[[], bool] | None = None) -> ResidualSwin:
        """Train for the remaining ``train.steps``; returns the EMA model. Checks ``should_stop``
        before every step and raises :class:`TrainingCancelled` when it returns True."""
        total = self.cfg.train.steps
        t0 = time.perf_counter()
        start = self.step_count
        smooth = None
        while self.step_count < total:
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"training cancelled at step {self.step_count} of {total}")
            loss = self.step()
            smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
            done = self.step_count - start
            per_step = (time.perf_counter() - t0) / done
            progress(ProgressEvent("train", self.step_count, total, {
                "loss": smooth, "lr": self.scheduler.get_last_lr()[0],
                "eta_s": round(per_step * (total - self.step_count), 1)}))
        return self.ema.model
