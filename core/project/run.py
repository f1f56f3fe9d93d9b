"""One training run on a labeling project: the API the studio's worker thread calls (no Qt).

Config and a :class:`~semirest.core.project.plan.TrainingPlan` in; progress events, live
heatmaps of the current EMA model and a :class:`RunResult` out. It runs the same pieces as
``semirest train`` (:func:`prepare_training_data`, :class:`Trainer`, the un stage before semi of
:meth:`SemiREST.fit`, :func:`save_checkpoint`), with the real images' token labels taken from the
plan instead of from MVTec masks, and the same prediction as ``semirest predict`` (the scoring pass
loads the saved checkpoint with :meth:`SemiREST.load`).

Preparation goes through the project's :class:`~semirest.core.project.preparation_cache.PreparationCache`:
PCFs, bank, k-NN rows and the synthetic pool of an unchanged image set are read back instead of
recomputed, and a new labelled image only adds its own PCFs and k-NN rows.

Two phases: :meth:`ProjectTrainingRun.run` trains, calibrates and saves; the run is then finished
and its model usable. :meth:`ProjectTrainingRun.score` then scores the held-out and labelled images
for the review queue, one ``score`` event per image (the image on screen first), and computes the
held-out metrics from them; it can be cancelled, keeping the scores made so far.

Cancellation: ``should_stop`` is checked before every training step and at every progress event of
the preparation (features, k-NN) and of scoring, so a cancel takes effect within one step. When
training had started, the current EMA model is saved, so a cancelled run still leaves a usable
checkpoint.
"""
from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from semirest.core.config import Config, make_config
from semirest.core.data.images import image_size, read_image
from semirest.core.device import pick_device
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.features.patches import choose_input_size
from semirest.core.files import write_json
from semirest.core.labels.blocks import NEGATIVE
from semirest.core.maps import predict_maps
from semirest.core.memory.bank import BankSearcher, MemoryBank
from semirest.core.memory.fit import bank_index_options
from semirest.core.methods.semirest import SemiREST
from semirest.core.metrics import evaluate
from semirest.core.progress import ProgressEvent, ProgressFn, WithEta
from semirest.core.progress import no_progress as _no_progress
from semirest.core.project.plan import TrainingPlan, plan_from_store, token_labels
from semirest.core.project.preparation_cache import PreparationCache, cache_folder
from semirest.core.project.store import ProjectStore
from semirest.core.train.calibrate import calibrate
from semirest.core.train.checkpoint import save_checkpoint
from semirest.core.train.stages import train_stages, unsupervised_stage
from semirest.core.train.trainer import (
    ImageSet,
    Trainer,
    TrainingCancelled,
    TrainingData,
    make_image_set,
    prepare_training_data,
    relabel,
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
    scoring: str = ""  # after a finished run: done | cancelled | failed | "" (not scored)


@dataclass
class ScoringResult:
    state: str  # done | cancelled
    scores: dict[int, float]
    metrics: dict
    duration_s: float


@dataclass
class LiveHeatmap:
    """A map of the image being viewed, from the EMA model at ``step`` (probabilities in [0, 1])."""

    image_id: int
    heatmap: np.ndarray
    step: int
    stage: str


class ProjectTrainingRun:
    """Train on a plan; call :meth:`run` (blocking) in a worker thread, then :meth:`score`.

    ``live_image``: returns (image id, RGB uint8 image) of the image on screen, or None; every
    ``live_every`` steps (and at most once per ``live_min_interval_s``) the EMA model's map of it is
    passed to ``on_heatmap``. ``cache``: the project's preparation cache (None: a temporary one,
    removed when the run ends).
    """

    def __init__(self, cfg: Config, plan: TrainingPlan, out_dir: str | Path, device: torch.device | str = "cpu",
                 progress: ProgressFn = _no_progress, should_stop: Callable[[], bool] | None = None,
                 live_image: Callable[[], tuple[int, np.ndarray] | None] | None = None,
                 on_heatmap: Callable[[LiveHeatmap], None] | None = None, live_every: int = 10,
                 live_min_interval_s: float = 0.0, score_images: list | None = None,
                 reference_mask: Callable[[int, tuple[int, int]], np.ndarray | None] | None = None,
                 cache: PreparationCache | None = None):
        self.cfg = copy.deepcopy(cfg)
        self.cfg.setting = plan.setting
        self.plan = plan
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.progress = WithEta(progress)
        self.should_stop = should_stop or (lambda: False)
        self.live_image = live_image
        self.on_heatmap = on_heatmap
        self.live_every = max(1, live_every)
        self.live_min_interval_s = live_min_interval_s
        self.score_images = score_images  # PlanImages to score after training (default: all but normal)
        # (image id, hw) -> bool mask, or None for an all-normal image; called in the run's thread
        self.reference_mask = reference_mask
        self.cache = cache
        self.trainer: Trainer | None = None
        self.stage_cfg: Config | None = None
        self.data = None
        self.searcher: BankSearcher | None = None
        self.losses: list[float] = []
        self.stage_starts: list[tuple[str, int]] = []  # (stage name, index of its first loss)
        self._last_live = 0.0
        self._stage = ""
        self.calibration = None
        self._extractor: FeatureExtractor | None = None
        self._normal_keys: list[str] = []
        # what the preparation took from the cache and what it computed (stored in train.json)
        self.preparation: dict = {}
        self.first_step_s: float | None = None
        self._t0 = 0.0
        self._summary: dict = {}

    @property
    def extractor(self) -> FeatureExtractor:
        """The backbone, built when first needed: a run whose preparation is all cached never builds
        it before training."""
        if self._extractor is None:
            self._extractor = FeatureExtractor(self.cfg.features, self.device)
        return self._extractor

    # -- hooks ---------------------------------------------------------------------------------
    def _progress(self, ev: ProgressEvent) -> None:
        if self.should_stop():
            raise TrainingCancelled(f"cancelled during {ev.stage}")
        if ev.stage == "train":
            if self.first_step_s is None:
                self.first_step_s = time.perf_counter() - self._t0
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

    # -- preparation ---------------------------------------------------------------------------
    def _load(self, items, stage: str) -> list[np.ndarray]:
        out = []
        for i, p in enumerate(items):
            out.append(read_image(p.path))
            self._progress(ProgressEvent(stage, i + 1, len(items)))
        return out

    def _normal_features(self, indices, images: list[np.ndarray] | None = None, count: bool = True) -> dict[int, np.ndarray]:
        """float16 PCFs of normal images ``indices``: from the cache, the missing ones extracted
        (from ``images`` when given, else read from their files) and stored."""
        cache, keys = self.cache, self._normal_keys
        out: dict[int, np.ndarray] = {}
        missing = []
        for i in indices:
            a = cache.load_features(keys[i])
            if a is None:
                missing.append(i)
            else:
                out[i] = a
        if missing:
            ims = [images[i] for i in missing] if images is not None else self._load([self.plan.normal[i] for i in missing], "load normal")
            feats = self.extractor.extract_all(ims, self._progress, stage="features")
            for j, i in enumerate(missing):
                out[i] = cache.save_features(keys[i], feats[j])
        if count:
            self.preparation["features_cached"] = self.preparation.get("features_cached", 0) + len(out) - len(missing)
            self.preparation["features_extracted"] = self.preparation.get("features_extracted", 0) + len(missing)
        return out

    def _normal_sizes(self) -> list[tuple[int, int]]:
        """(h, w) of the normal training images: the project's record, else the file header."""
        out = []
        for p in self.plan.normal:
            hw = p.hw
            if hw is None:
                wh = image_size(p.path)
                hw = None if wh is None else (wh[1], wh[0])
            if hw is not None:
                out.append(hw)
        return out

    def _normal_feature(self, i: int) -> np.ndarray:
        return self._normal_features([i], count=False)[i]

    def _prepare(self, first: Config) -> TrainingData:
        """The normal and synthetic training sets and the bank, from the cache when the normal
        images and the fields they depend on are unchanged, else computed and stored."""
        plan, cache = self.plan, self.cache
        self._normal_keys = [cache.image_key(p.path, first.features) for p in plan.normal]
        self.preparation_key = key = cache.preparation_key(first, self._normal_keys, plan.category)
        entry = cache.load_preparation(key)
        t0 = time.perf_counter()
        if entry is not None:
            arrays, masks, meta = entry
            pool = arrays["pool"]
            got = self._normal_features([int(i) for i in pool])
            feats = torch.from_numpy(np.stack([got[int(i)] for i in pool]))
            grid = token_grid(first, tuple(feats.shape[1:3]))
            bank = MemoryBank(arrays["bank_features"], arrays["bank_sources"], **bank_index_options(first.bank))
            normal = ImageSet(feats, torch.from_numpy(arrays["normal_neighbours"]),
                              torch.full((len(pool),) + grid, NEGATIVE, dtype=torch.int64))
            syn = arrays["synthetic_features"]
            synthetic = relabel(first, ImageSet(torch.from_numpy(syn), torch.from_numpy(arrays["synthetic_neighbours"]),
                                                torch.full((len(syn),) + grid, NEGATIVE, dtype=torch.int64), masks or None))
            self.preparation["bank"] = "cached"
            self._progress(ProgressEvent("preparation (cached)", 1, 1))
            return TrainingData(bank, float(meta["residual_scale"]), normal, synthetic, None, time.perf_counter() - t0, pool)
        images = self._load(plan.normal, "load normal")
        got = self._normal_features(range(len(images)), images)
        feats = np.stack([got[i] for i in range(len(images))]).astype(np.float32)
        del got
        data = prepare_training_data(first, self.extractor, images, plan.category, self._progress, train_features=feats)
        del feats, images
        cache.save_preparation(key, {
            "bank_features": data.bank.features, "bank_sources": data.bank.source_ids,
            "pool": np.asarray(data.pool, dtype=np.int64), "normal_neighbours": data.normal.neighbours.numpy(),
            "synthetic_features": data.synthetic.features.numpy(),
            "synthetic_neighbours": data.synthetic.neighbours.numpy()},
            list(data.synthetic.masks or []), {"residual_scale": data.residual_scale})
        self.preparation["bank"] = "built"
        return data

    def _labelled_set(self, cfg: Config) -> tuple[ImageSet | None, np.ndarray | None]:
        """The labelled images' set (PCFs cached per image, k-NN rows per image and bank; token
        labels from the plan) and their float32 PCFs for the calibration's miss rate."""
        plan, cache = self.plan, self.cache
        if not (plan.labelled and plan.setting in ("sup", "semi")):
            return None, None
        k = max(3, cfg.bank.knn)
        image_keys = [cache.image_key(p.path, cfg.features) for p in plan.labelled]
        keys = [cache.labelled_key(ik, self.preparation_key, k) for ik in image_keys]
        self._labelled_keys = (set(image_keys), set(keys))
        feats: list = [cache.load_features(ik) for ik in image_keys]
        rows: list = [cache.load_rows(key) if f is not None else None for key, f in zip(keys, feats)]
        to_extract = [i for i, f in enumerate(feats) if f is None]
        if to_extract:
            images = self._load([plan.labelled[i] for i in to_extract], "load labelled")
            for i, im in zip(to_extract, images):
                if plan.labelled[i].hw is None:
                    plan.labelled[i].hw = im.shape[:2]
            f = self.extractor.extract_all(images, self._progress, stage="features real")
            for j, i in enumerate(to_extract):
                feats[i] = cache.save_features(image_keys[i], f[j])
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            n = len(missing)
            part = make_image_set(cfg, np.stack([feats[i] for i in missing]).astype(np.float32), [None] * n, [None] * n,
                                  self.searcher, self._progress, "knn real")
            for j, i in enumerate(missing):
                rows[i] = part.neighbours[j].numpy()
                cache.save_rows(keys[i], rows[i])
        self.preparation["labelled_cached"] = len(keys) - len(missing)
        self.preparation["labelled_computed"] = len(missing)
        self.preparation["labelled_extracted"] = len(to_extract)
        x = torch.from_numpy(np.stack(feats))
        grid = token_grid(cfg, tuple(x.shape[1:3]))
        labels = torch.stack([torch.from_numpy(token_labels(item, plan.setting, grid, cfg)) for item in plan.labelled])
        return ImageSet(x, torch.from_numpy(np.stack(rows)), labels), x.float().numpy()

    # -- training ------------------------------------------------------------------------------
    def _on_stage(self, name: str, cfg: Config, data, trainer: Trainer) -> None:
        """A stage begins: keep what a save on cancel and the live heatmaps need."""
        if self.trainer is not None:
            self.losses += self.trainer.losses
        self.stage_starts.append((name, len(self.losses)))
        self.stage_cfg, self.data, self._stage, self.trainer = cfg, data, name, trainer

    def _save(self) -> Path:
        path = self.out_dir / CHECKPOINT_NAME
        save_checkpoint(path, self.stage_cfg, self.trainer.ema.model, self.data.bank, self.data.residual_scale,
                        {"category": self.plan.category, "setting": self.stage_cfg.setting}, self.calibration)
        return path

    def _calibrate(self, defect_features: np.ndarray | None) -> None:
        """Threshold and normalisation as :meth:`SemiREST.fit` makes them (leave-one-out scores of
        the normal training images), from their cached PCFs: no image is read or extracted again."""
        self.calibration = calibrate(self.stage_cfg, self.trainer.ema.model, self._extractor, self.searcher,
                                     self.data.residual_scale, None, len(self.plan.normal), self.data.pool,
                                     None, self._progress, load_features=self._normal_feature,
                                     defect_features=defect_features)

    def run(self) -> RunResult:
        """Prepare (through the cache), train, calibrate and save; scoring is :meth:`score`."""
        self._t0 = t0 = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plan, cfg = self.plan, self.cfg
        temporary = None
        if self.cache is None:
            temporary = tempfile.TemporaryDirectory(prefix="semirest-prep-")
            self.cache = PreparationCache(temporary.name)
        try:
            if not plan.normal:
                raise ValueError("no normal training images: every image is labelled, or the project has none")
            choose_input_size(cfg.features, self._normal_sizes())
            first = unsupervised_stage(cfg) if plan.setting == "semi" else cfg
            data = self._prepare(first)
            self.searcher = BankSearcher(data.bank, self.device)
            self._labelled_keys: tuple[set[str], set[str]] = (set(), set())
            real_set, real_feats = self._labelled_set(cfg)
            self.preparation["cache_freed_bytes"] = self.cache.keep_only(
                set(self._normal_keys) | self._labelled_keys[0], self._labelled_keys[1])
            self.preparation["seconds"] = round(time.perf_counter() - t0, 2)
            if self.cache.write_errors:  # the run goes on; the next one recomputes what was not kept
                self.preparation["cache_write_errors"] = self.cache.write_errors[:3]
            train_stages(cfg, data, real_set, self.device, self._progress, self.should_stop, on_stage=self._on_stage)
            self.losses += self.trainer.losses
            self._calibrate(real_feats)
        except TrainingCancelled as exc:
            ckpt = self._save() if self.trainer is not None and self.trainer.step_count > 0 else None
            msg = f"{exc}" + ("; the last EMA model was saved" if ckpt else "; no checkpoint (training had not started)")
            return self._result("cancelled", ckpt, t0, msg)
        finally:
            if temporary is not None:
                self.cache = None
                temporary.cleanup()
        ckpt = self._save()
        return self._result("finished", ckpt, t0, "")

    def _result(self, state, ckpt, t0, message, metrics=None) -> RunResult:
        m = dict(metrics or {})
        m["steps"] = len(self.losses)
        m["final_loss"] = float(np.mean(self.losses[-20:])) if self.losses else None
        m["loss_every_10"] = [round(float(x), 5) for x in self.losses[::10]]
        m["stage_starts"] = [[name, i] for name, i in self.stage_starts]
        dur = time.perf_counter() - t0
        self._summary = {"state": state, "message": message, "duration_s": round(dur, 2),
                         "first_step_s": None if self.first_step_s is None else round(self.first_step_s, 2),
                         "preparation": self.preparation, "metrics": m,
                         "plan": self.plan.snapshot(), "config": self.cfg.to_dict()}
        write_json(self.out_dir / "train.json", self._summary)
        return RunResult(state, ckpt, m, {}, dur, message)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, ckpt: Path, first: Callable[[], int | None] | None = None) -> ScoringResult:
        """Maps of the held-out and labelled images with the saved checkpoint (as ``semirest
        predict``; scores in the calibration's units, which the studio's threshold reads): one
        ``score`` event per image (info ``image_id``, ``score``), the image
        ``first()`` names taken next whenever it is still unscored; then pixel AUROC / PRO / AP
        where masks exist. A cancel ends it with the scores made so far and no metrics."""
        t0 = time.perf_counter()
        model = SemiREST.load(ckpt, self.device)
        items = self.score_images if self.score_images is not None else self.plan.evaluation + list(self.plan.labelled)
        eval_ids = {p.image_id for p in self.plan.evaluation}
        masks_for = self.reference_mask
        scores: dict[int, float] = {}
        maps, masks = [], []
        left = list(items)
        while left:
            if self.should_stop():
                return self._scored("cancelled", scores, {}, t0)
            want = first() if first is not None else None
            j = next((k for k, p in enumerate(left) if p.image_id == want), 0)
            p = left.pop(j)
            im = read_image(p.path)
            maps_one, score_one = model.predict_scored([im])
            m = maps_one[0]
            scores[p.image_id] = float(score_one[0])
            if p.image_id in eval_ids and masks_for is not None:
                ref = masks_for(p.image_id, im.shape[:2])
                ref = np.zeros(im.shape[:2], dtype=bool) if ref is None else np.asarray(ref, dtype=bool)
                # keep maps small: metrics only need a float32 map and a bool mask per image
                maps.append(m.astype(np.float32))
                masks.append(ref)
            self.progress(ProgressEvent("score", len(scores), len(items), {"image_id": p.image_id, "score": scores[p.image_id]}))
        metrics = {}
        if maps and any(x.any() for x in masks):
            # nan (e.g. image AUROC when every held-out image is defective) is stored as None: JSON has no nan
            metrics = {k: (float(v) if v == v else None) for k, v in evaluate(maps, masks).items()}
            metrics["eval_images"] = len(maps)
        elif maps:
            metrics["note"] = "no defect pixel among the held-out images: no pixel metrics"
        return self._scored("done", scores, metrics, t0)

    def _scored(self, state: str, scores: dict, metrics: dict, t0: float) -> ScoringResult:
        res = ScoringResult(state, scores, metrics, time.perf_counter() - t0)
        if self._summary:  # train.json gets the held-out metrics once they exist
            self._summary["metrics"].update(metrics)
            self._summary["scoring"] = {"state": state, "images": len(scores), "duration_s": round(res.duration_s, 2)}
            write_json(self.out_dir / "train.json", self._summary)
        return res


def runs_folder(project_path: str | Path) -> Path:
    """Checkpoints of a project's runs live next to it: ``<project>.sqlite.runs/run<id>/``."""
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".runs")


def train_project(project_path: str | Path, preset: str = "fast", device: str = "auto", overrides: list[str] | None = None,
                  choices: dict | None = None, on_run: Callable[[int, TrainingPlan], None] | None = None,
                  on_trained: Callable[[int, RunResult], None] | None = None, score: bool = True,
                  first_to_score: Callable[[], int | None] | None = None, use_cache: bool = True,
                  **run_kwargs) -> tuple[int, RunResult]:
    """One stored run on a project: read its labels, record the run, train, record the end, then
    score the review queue.

    Opens its own :class:`ProjectStore` connection (a store serves one thread), so the studio's
    worker thread and ``semirest project train`` call it alike. ``on_run(run_id, plan)`` is called
    once the run row exists; ``on_trained(run_id, result)`` once the run is stored as ended (its
    model usable), before scoring; ``first_to_score()`` names the image to score next (the one on
    screen); ``run_kwargs`` go to :class:`ProjectTrainingRun` (progress, should_stop, live_image,
    on_heatmap, live_every, ...). The preparation cache beside the project is used unless
    ``use_cache`` is False. Scores and held-out metrics are stored when scoring ends (a cancelled
    scoring stores the scores made so far). A failure is recorded as a failed run and re-raised.
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
        cache = PreparationCache(cache_folder(store.path)) if use_cache else None
        runner = ProjectTrainingRun(cfg, plan, runs_folder(store.path) / f"run{run_id:03d}", dev,
                                    reference_mask=lambda i, hw: store.reference_mask(i, hw), cache=cache, **run_kwargs)
        result = runner.run()
        store.finish_run(run_id, result.state, result.duration_s, result.checkpoint, result.metrics, result.message or None)
        ended, run_id = run_id, None  # the end is stored: an interrupted scoring leaves it as it is
        if result.state != "finished" or not score:
            return ended, result
        if on_trained is not None:
            on_trained(ended, result)
        try:
            scored = runner.score(result.checkpoint, first_to_score)
        except Exception as exc:  # the trained model stays usable: a scoring failure is a message
            result.scoring, result.message = "failed", f"scoring failed: {type(exc).__name__}: {exc}"
            store.finish_run(ended, result.state, result.duration_s, result.checkpoint, result.metrics, result.message)
            return ended, result
        result.scores, result.scoring = scored.scores, scored.state
        result.metrics.update(scored.metrics)
        if scored.state == "cancelled":
            result.message = f"scoring cancelled after {len(scored.scores)} images; no held-out metrics"
        store.set_run_scores(ended, scored.scores)
        store.finish_run(ended, result.state, result.duration_s, result.checkpoint, result.metrics, result.message or None)
        return ended, result
    except BaseException as exc:
        if run_id is not None:
            try:
                store.finish_run(run_id, "failed", message=f"{type(exc).__name__}: {exc}")
            except Exception:
                pass
        raise
    finally:
        store.close()
