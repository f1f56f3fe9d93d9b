"""Training in a worker thread: a QThread around :class:`~semirest.core.project.run.ProjectTrainingRun`.

The GUI thread never trains, never predicts and never waits for the worker. The worker calls
:func:`~semirest.core.project.run.train_project` (as ``semirest project train`` does), which
opens its own connection to the project (a store serves one thread), reads the labels, records
the run (``runs`` table) and its end; the worker reports through queued signals:

* ``progress(ProgressEvent)``: stage, step, total, loss and ETA;
* ``heatmap(LiveHeatmap)``: the current EMA model's map of the image on screen (a numpy array,
  computed in the worker) every ``live_every`` steps;
* ``finished(dict)``: run id, :class:`RunResult`; ``failed(str)``: an error message.

Cancel sets an event checked before every training step; the run then saves its last EMA model.
"""
from __future__ import annotations

import threading
import traceback
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from semirest.core.progress import ProgressEvent


class TrainingWorker(QObject):
    plan_ready = Signal(int, str, str)  # run id, setting, explanation
    progress = Signal(object)  # ProgressEvent
    heatmap = Signal(object)  # LiveHeatmap
    finished = Signal(object)  # {"run_id": int, "result": RunResult}
    failed = Signal(str)

    def __init__(self, project_path: Path, preset: str, device: str, overrides: list[str] | None = None,
                 live_every: int = 10, live_min_interval_s: float = 1.0, choices: dict | None = None):
        super().__init__()
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
        self.run_id: int | None = None

    # -- called from the GUI thread ------------------------------------------------------------
    def cancel(self) -> None:
        self._stop.set()

    def set_live_target(self, image_id: int | None, path: Path | None) -> None:
        with self._lock:
            self._target = None if image_id is None or path is None else (image_id, Path(path))

    # -- the worker thread ---------------------------------------------------------------------
    def _live_image(self):
        from semirest.core.data.images import read_image

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

    @Slot()
    def run(self) -> None:
        from semirest.core.project.run import train_project

        try:
            self.progress.emit(ProgressEvent("reading labels", 0, 1))
            run_id, result = train_project(
                self.project_path, self.preset, self.device, self.overrides, self.choices,
                on_run=lambda rid, plan: self.plan_ready.emit(rid, plan.setting, plan.explanation),
                progress=self.progress.emit, should_stop=self._stop.is_set, live_image=self._live_image,
                on_heatmap=self.heatmap.emit, live_every=self.live_every, live_min_interval_s=self.live_min_interval_s)
            self.run_id = run_id
            self.finished.emit({"run_id": run_id, "result": result})
        except Exception as exc:  # every error becomes a message, never a crash of the studio
            self.failed.emit(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}")


class TrainingController(QObject):
    """Owns one worker and its QThread at a time (start, cancel, wait)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thread: QThread | None = None
        self.worker: TrainingWorker | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start(self, worker: TrainingWorker) -> TrainingWorker:
        if self.running:
            raise RuntimeError("a training run is already in progress")
        thread = QThread()
        thread.setObjectName("semirest-training")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # direct: QThread.quit is thread-safe, and the GUI-side slots of finished / failed may then
        # wait() for the thread without waiting on a queued quit behind themselves
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.failed.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        self.thread, self.worker = thread, worker
        thread.start()
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def wait(self, ms: int = 30000) -> bool:
        return self.thread.wait(ms) if self.thread is not None else True
