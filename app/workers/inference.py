"""Heatmaps of a finished run for the image on screen, computed in a worker thread.

The worker loads the run's checkpoint with :meth:`SemiREST.load` and maps an image with
:meth:`SemiREST.predict`: the code path of ``semirest predict``, so the studio and the command line
give the same map for the same run. Requests keep only the latest one (flipping through images
never queues work), and results come back as numpy arrays through a queued signal.
"""
from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot


class InferenceWorker(QObject):
    map_ready = Signal(int, int, object)  # run id, image id, (H, W) float32 map
    failed = Signal(str)
    _wake = Signal()

    def __init__(self, device: str = "auto"):
        super().__init__()
        self.device = device
        self._lock = threading.Lock()
        self._pending: tuple[int, Path, int, Path] | None = None
        self._model = None
        self._model_key: tuple[int, Path] | None = None
        self._wake.connect(self._work)

    def request(self, run_id: int, checkpoint: Path, image_id: int, image_path: Path) -> None:
        """Called from the GUI thread: map this image next (replaces an earlier, unstarted request)."""
        with self._lock:
            self._pending = (run_id, Path(checkpoint), image_id, Path(image_path))
        self._wake.emit()

    @Slot()
    def _work(self) -> None:
        from semirest.core.data.images import read_image
        from semirest.core.device import pick_device
        from semirest.core.methods.semirest import SemiREST

        with self._lock:
            job, self._pending = self._pending, None
        if job is None:
            return
        run_id, ckpt, image_id, path = job
        try:
            if self._model_key != (run_id, ckpt):
                self._model = SemiREST.load(ckpt, pick_device(self.device))
                self._model_key = (run_id, ckpt)
            m = self._model.predict([read_image(path)])[0]
        except Exception as exc:
            self.failed.emit(f"no heatmap for {path.name}: {type(exc).__name__}: {exc}")
            return
        self.map_ready.emit(run_id, image_id, m)


class InferenceController(QObject):
    def __init__(self, parent=None, device: str = "auto"):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("semirest-inference")
        self.worker = InferenceWorker(device)
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, ms: int = 10000) -> None:
        self.thread.quit()
        self.thread.wait(ms)
