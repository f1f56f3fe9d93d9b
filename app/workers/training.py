"""Training off the GUI thread: a :class:`TrainingJob` runs
:func:`~semirest.core.project.run.train_project` (as ``semirest project train`` does) in the
training lane (:mod:`semirest.app.workers`).

The GUI thread never trains, never predicts and never waits for the job. The run opens its own
connection to the project (a store serves one thread), reads the labels, records the run
(``runs`` table) and its end; the job reports through queued signals:

* ``plan_ready(run id, setting, explanation)`` once the labels are read;
* ``progress(ProgressEvent)``: stage, step, total, loss and ETA;
* ``heatmap(LiveHeatmap)``: the current EMA model's map of the image on screen (a numpy array,
  computed in the lane) every ``live_every`` steps;
* ``trained({"run_id": int, "result": RunResult})``: training ended and the run is stored, its
  model usable; scoring of the review queue follows in the same job, as ``progress`` events of
  stage ``score`` carrying ``image_id`` and ``score`` (the image on screen is scored first);
* ``returned({"run_id": int, "result": RunResult})`` after scoring (the result then holds the
  scores and held-out metrics); ``errored(str)``: an error message.

Cancel sets an event checked before every training step and every scored image; a cancelled
training saves its last EMA model, a cancelled scoring keeps the scores made so far.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from semirest.app.workers import Lane, Worker, WorkerSignals
from semirest.core.data.images import read_image
from semirest.core.progress import ProgressEvent
from semirest.core.project.run import train_project


class TrainingSignals(WorkerSignals):
    plan_ready = Signal(int, str, str)  # run id, setting, explanation
    progress = Signal(object)  # ProgressEvent
    heatmap = Signal(object)  # LiveHeatmap
    trained = Signal(object)  # {"run_id", "result"}: the run is stored, scoring follows


class TrainingJob:
    """One training run on a project; ``run`` is called in the training lane."""

    def __init__(self, project_path: Path, preset: str, device: str, overrides: list[str] | None = None,
                 live_every: int = 10, live_min_interval_s: float = 1.0, choices: dict | None = None):
        self.signals = TrainingSignals()
        self.choices = dict(choices or {})  # the panel's choices, kept with the run for Retrain
        self.project_path = Path(project_path)
        self.preset = preset
        self.device = device
        self.overrides = list(overrides or [])
        self.live_every = live_every
        self.live_min_interval_s = live_min_interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._target: tuple[int, Path] | None = None
        self._cached: tuple[Path, np.ndarray] | None = None
        self.scoring = False  # True once training ended and the review queue is being scored

    # -- called from the GUI thread ------------------------------------------------------------
    def cancel(self) -> None:
        self._stop.set()

    def set_live_target(self, image_id: int | None, path: Path | None) -> None:
        with self._lock:
            self._target = None if image_id is None or path is None else (image_id, Path(path))

    # -- the training lane ---------------------------------------------------------------------
    def _live_image(self):
        with self._lock:
            target = self._target
        if target is None:
            return None
        image_id, path = target
        if self._cached is None or self._cached[0] != path:
            try:
                self._cached = (path, read_image(path))
            except Exception:  # an unreadable image simply gets no live map
                return None
        return image_id, self._cached[1]

    def _image_on_screen(self) -> int | None:
        with self._lock:
            return None if self._target is None else self._target[0]

    def _trained(self, run_id, result) -> None:
        self.scoring = True
        self.signals.trained.emit({"run_id": run_id, "result": result})

    def run(self) -> dict:
        s = self.signals
        s.progress.emit(ProgressEvent("reading labels", 0, 1))
        run_id, result = train_project(
            self.project_path, self.preset, self.device, self.overrides, self.choices,
            on_run=lambda rid, plan: s.plan_ready.emit(rid, plan.setting, plan.explanation),
            progress=s.progress.emit, should_stop=self._stop.is_set, live_image=self._live_image,
            on_heatmap=s.heatmap.emit, live_every=self.live_every, live_min_interval_s=self.live_min_interval_s,
            on_trained=self._trained, first_to_score=self._image_on_screen)
        return {"run_id": run_id, "result": result}


class TrainingController(QObject):
    """One run at a time in the training lane (start, cancel, wait)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.lane = Lane("semirest-training", self)
        self.job: TrainingJob | None = None
        self.worker: Worker | None = None

    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.ended()

    @property
    def scoring(self) -> bool:
        """Training has ended and the job scores the review queue in the background."""
        return self.running and self.job is not None and self.job.scoring

    def start(self, job: TrainingJob) -> TrainingJob:
        """Start ``job``; a job still scoring the last run is cancelled and the new one runs after it."""
        if self.running and not self.scoring:
            raise RuntimeError("a training run is already in progress")
        if self.scoring:
            self.job.cancel()
        self.job = job
        self.worker = self.lane.start_worker(Worker(job.run, signals=job.signals))
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def wait(self, ms: int = 30000) -> bool:
        return self.worker.wait(ms / 1000) if self.worker is not None else True
