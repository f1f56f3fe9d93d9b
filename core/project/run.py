"""One training run on a labeling project: the API the studio's worker thread calls (no Qt).

Config and a :class:`~semirest.core.project.plan.TrainingPlan` in; progress events, live
heatmaps of the current EMA model and a :class:`RunResult` out. It runs the same pieces as
``semirest train`` (:func:`prepare_training_data`, :class:`Trainer`, the un stage before semi of
:meth:`SemiREST.fit`, :func:`save_checkpoint`), with the real images' token labels taken from the
plan instead of from MVTec masks, and the same prediction as ``semirest predict`` (the scoring pass
loads the saved checkpoint with :meth:`SemiREST.load`).

Cancellation: ``should_stop`` is checked before every training step and at every progress event of
the preparation (features, k-NN), so a cancel takes effect within one step. When training had
started, the current EMA model is saved, so a cancelled run still leaves a usable checkpoint.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from semirest.core.config import Config, make_config
from semirest.core.data.images import read_image
from semirest.core.device import pick_device
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.files import write_json
from semirest.core.maps import predict_maps
from semirest.core.memory.bank import BankSearcher
from semirest.core.methods.semirest import SemiREST
from semirest.core.metrics import evaluate
from semirest.core.progress import ProgressEvent, ProgressFn
from semirest.core.progress import no_progress as _no_progress
from semirest.core.project.plan import TrainingPlan, plan_from_store, token_labels
from semirest.core.project.store import ProjectStore
from semirest.core.train.calibrate import calibrate
from semirest.core.train.checkpoint import save_checkpoint
from semirest.core.train.stages import train_stages, unsupervised_stage
from semirest.core.train.trainer import (
    Trainer,
    TrainingCancelled,
    make_image_set,
    prepare_training_data,
    token_grid,
)

CHECKPOINT_NAME = "model.safetensors"


@dataclass
class RunResult:
    state: str  # finished | cancelled | failed
    checkpoint: Path | None
    metrics: dict = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)  # image id -> map maximum
    duration_s: float = 0.0
    message: str = ""


@dataclass
class LiveHeatmap:
    """A map of the image being viewed, from the EMA model at ``step`` (probabilities in [0, 1])."""

    image_id: int
    heatmap: np.ndarray
    step: int
    stage: str


class ProjectTrainingRun:
    """Train on a plan; call :meth:`run` (blocking) in a worker thread.

    ``live_image``: returns (image id, RGB uint8 image) of the image on screen, or None; every
    ``live_every`` steps (and at most once per ``live_min_interval_s``) the EMA model's map of it is
    passed to ``on_heatmap``.
    """

    def __init__(self, cfg: Config, plan: TrainingPlan, out_dir: str | Path, device: torch.device | str = "cpu",
                 progress: ProgressFn = _no_progress, should_stop: Callable[[], bool] | None = None,
                 live_image: Callable[[], tuple[int, np.ndarray] | None] | None = None,
                 on_heatmap: Callable[[LiveHeatmap], None] | None = None, live_every: int = 10,
                 live_min_interval_s: float = 0.0, score_images: list | None = None,
                 reference_mask: Callable[[int, tuple[int, int]], np.ndarray | None] | None = None):
        self.cfg = copy.deepcopy(cfg)
        self.cfg.setting = plan.setting
        self.plan = plan
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self.live_image = live_image
        self.on_heatmap = on_heatmap
        self.live_every = max(1, live_every)
        self.live_min_interval_s = live_min_interval_s
        self.score_images = score_images  # PlanImages to score after training (default: all but normal)
        # (image id, hw) -> bool mask, or None for an all-normal image; called in the run's thread
        self.reference_mask = reference_mask
        self.trainer: Trainer | None = None
        self.stage_cfg: Config | None = None
        self.data = None
        self.searcher: BankSearcher | None = None
        self.losses: list[float] = []
        self._last_live = 0.0
        self._stage = ""
        self.calibration = None

    # -- hooks ---------------------------------------------------------------------------------
    def _progress(self, ev: ProgressEvent) -> None:
        if self.should_stop():
            raise TrainingCancelled(f"cancelled during {ev.stage}")
        if ev.stage == "train":
            ev = ProgressEvent(self._stage, ev.done, ev.total, dict(ev.info))
            if self.trainer is not None and self.trainer.losses:
                ev.info["last_loss"] = self.trainer.losses[-1]
            self.progress(ev)
            if ev.done % self.live_every == 0 or ev.done == ev.total:
                self._live(ev.done)
        else:
            self.progress(ev)

    def _live(self, step: int) -> None:
        if self.live_image is None or self.on_heatmap is None or self.trainer is None:
            return
        now = time.perf_counter()
        if now - self._last_live < self.live_min_interval_s:
            return
        item = self.live_image()
        if item is None:
            return
        image_id, image = item
        model = self.trainer.ema.model
        with torch.no_grad():
            m = predict_maps(self.stage_cfg, model, self.extractor, self.searcher, self.data.residual_scale, [image])[0]
        self._last_live = time.perf_counter()
        self.on_heatmap(LiveHeatmap(image_id, m, step, self._stage))

    # -- the run -------------------------------------------------------------------------------
    def _load(self, items, stage: str) -> list[np.ndarray]:
        out = []
        for i, p in enumerate(items):
            out.append(read_image(p.path))
            self._progress(ProgressEvent(stage, i + 1, len(items)))
        return out

    def _on_stage(self, name: str, cfg: Config, data, trainer: Trainer) -> None:
        """A stage begins: keep what a save on cancel and the live heatmaps need."""
        if self.trainer is not None:
            self.losses += self.trainer.losses
        self.stage_cfg, self.data, self._stage, self.trainer = cfg, data, name, trainer

    def _save(self) -> Path:
        path = self.out_dir / CHECKPOINT_NAME
        save_checkpoint(path, self.stage_cfg, self.trainer.ema.model, self.data.bank, self.data.residual_scale,
                        {"category": self.plan.category, "setting": self.stage_cfg.setting}, self.calibration)
        return path

    def _calibrate(self, real_images) -> None:
        """Threshold and normalisation as :meth:`SemiREST.fit` makes them (leave-one-out scores of
        the normal training images, read again from their files)."""
        normal = self.plan.normal
        self.calibration = calibrate(self.stage_cfg, self.trainer.ema.model, self.extractor, self.searcher,
                                     self.data.residual_scale, lambda i: read_image(normal[i].path), len(normal),
                                     self.data.pool, real_images, self._progress)

    def run(self) -> RunResult:
        t0 = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plan, cfg = self.plan, self.cfg
        try:
            if not plan.normal:
                raise ValueError("no normal training images: every image is labelled, or the project has none")
            self.extractor = FeatureExtractor(cfg.features, self.device)
            normal = self._load(plan.normal, "load normal")
            first = unsupervised_stage(cfg) if plan.setting == "semi" else cfg
            data = prepare_training_data(first, self.extractor, normal, plan.category, self._progress)
            del normal
            self.searcher = BankSearcher(data.bank, self.device)
            real_set = None
            real_images = None
            if plan.labelled and plan.setting in ("sup", "semi"):
                real_images = self._load(plan.labelled, "load labelled")
                feats = self.extractor.extract_all(real_images, self._progress, stage="features real")
                n = len(real_images)
                real_set = make_image_set(cfg, feats, [None] * n, [None] * n, self.searcher, self._progress, "knn real")
                grid = token_grid(cfg, feats.shape[1:3])
                for i, item in enumerate(plan.labelled):
                    if item.hw is None:
                        item.hw = real_images[i].shape[:2]
                    real_set.labels[i] = torch.from_numpy(token_labels(item, plan.setting, grid, cfg))
            train_stages(cfg, data, real_set, self.device, self._progress, self.should_stop, on_stage=self._on_stage)
            self.losses += self.trainer.losses
            self._calibrate(real_images)
        except TrainingCancelled as exc:
            ckpt = self._save() if self.trainer is not None and self.trainer.step_count > 0 else None
            msg = f"{exc}" + ("; the last EMA model was saved" if ckpt else "; no checkpoint (training had not started)")
            return self._result("cancelled", ckpt, t0, msg)
        ckpt = self._save()
        try:
            metrics, scores = self._score(ckpt)
        except TrainingCancelled:
            return self._result("cancelled", ckpt, t0, "cancelled while scoring; the trained model was saved")
        return self._result("finished", ckpt, t0, "", metrics, scores)

    def _result(self, state, ckpt, t0, message, metrics=None, scores=None) -> RunResult:
        m = dict(metrics or {})
        m["steps"] = len(self.losses)
        m["final_loss"] = float(np.mean(self.losses[-20:])) if self.losses else None
        m["loss_every_10"] = [round(float(x), 5) for x in self.losses[::10]]
        dur = time.perf_counter() - t0
        write_json(self.out_dir / "train.json", {
            "state": state, "message": message, "duration_s": round(dur, 2), "metrics": m,
            "plan": self.plan.snapshot(), "config": self.cfg.to_dict()})
        return RunResult(state, ckpt, m, scores or {}, dur, message)

    def _score(self, ckpt: Path) -> tuple[dict, dict[int, float]]:
        """Maps of the held-out images with the saved checkpoint (as ``semirest predict``): image
        scores, and pixel AUROC / PRO / AP where masks exist."""
        model = SemiREST.load(ckpt, self.device)
        items = self.score_images if self.score_images is not None else self.plan.evaluation + list(self.plan.labelled)
        eval_ids = {p.image_id for p in self.plan.evaluation}
        masks_for = self.reference_mask
        scores, maps, masks = {}, [], []
        for i, p in enumerate(items):
            im = read_image(p.path)
            m = model.predict([im])[0]
            scores[p.image_id] = float(m.max())
            if p.image_id in eval_ids and masks_for is not None:
                ref = masks_for(p.image_id, im.shape[:2])
                ref = np.zeros(im.shape[:2], dtype=bool) if ref is None else np.asarray(ref, dtype=bool)
                # keep maps small: metrics only need a float32 map and a bool mask per image
                maps.append(m.astype(np.float32))
                masks.append(ref)
            self._progress(ProgressEvent("score", i + 1, len(items)))
        metrics = {}
        if maps and any(x.any() for x in masks):
            # nan (e.g. image AUROC when every held-out image is defective) is stored as None: JSON has no nan
            metrics = {k: (float(v) if v == v else None) for k, v in evaluate(maps, masks).items()}
            metrics["eval_images"] = len(maps)
        elif maps:
            metrics["note"] = "no defect pixel among the held-out images: no pixel metrics"
        return metrics, scores


def runs_folder(project_path: str | Path) -> Path:
    """Checkpoints of a project's runs live next to it: ``<project>.sqlite.runs/run<id>/``."""
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".runs")


def train_project(project_path: str | Path, preset: str = "fast", device: str = "auto", overrides: list[str] | None = None,
                  choices: dict | None = None, on_run: Callable[[int, TrainingPlan], None] | None = None,
                  **run_kwargs) -> tuple[int, RunResult]:
    """One stored run on a project: read its labels, record the run, train, record the end.

    Opens its own :class:`ProjectStore` connection (a store serves one thread), so the studio's
    worker thread and ``semirest project train`` call it alike. ``on_run(run_id, plan)`` is called
    once the run row exists; ``run_kwargs`` go to :class:`ProjectTrainingRun` (progress,
    should_stop, live_image, on_heatmap, live_every, ...). A failure is recorded as a failed run
    and re-raised.
    """
    store = ProjectStore.open(project_path, require_write=True)
    run_id = None
    try:
        plan = plan_from_store(store)
        cfg = make_config(preset, plan.setting, overrides or [])
        dev = pick_device(device)
        cfg.device = str(dev)
        snapshot = plan.snapshot()
        snapshot["choices"] = dict(choices or {"preset": preset, "device": device, "steps": 0})
        run_id = store.create_run(plan.setting, cfg.preset, cfg.to_dict(), snapshot)
        if on_run is not None:
            on_run(run_id, plan)
        runner = ProjectTrainingRun(cfg, plan, runs_folder(store.path) / f"run{run_id:03d}", dev,
                                    reference_mask=lambda i, hw: store.reference_mask(i, hw), **run_kwargs)
        result = runner.run()
        store.finish_run(run_id, result.state, result.duration_s, result.checkpoint, result.metrics, result.message or None)
        if result.scores:
            store.set_run_scores(run_id, result.scores)
        return run_id, result
    except BaseException as exc:
        if run_id is not None:
            try:
                store.finish_run(run_id, "failed", message=f"{type(exc).__name__}: {exc}")
            except Exception:
                pass
        raise
    finally:
        store.close()
