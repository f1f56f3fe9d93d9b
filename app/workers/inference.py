"""Heatmaps of a finished run for the image on screen, computed in the inference lane
(:mod:`semirest.app.workers`).

Each job loads the run's checkpoint with :meth:`SemiREST.load` (once per run) and maps an image
with :meth:`SemiREST.predict`: the code path of ``semirest predict``, so the studio and the command
line give the same map for the same run. A new request cancels the one not yet started (flipping
through images never queues work), and results come back as numpy arrays through queued signals.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from semirest.app.workers import Lane, Worker
from semirest.core.data.images import read_image
from semirest.core.device import pick_device
from semirest.core.methods.semirest import SemiREST


class InferenceMaps(QObject):
    map_ready = Signal(int, int, object)  # run id, image id, (H, W) float32 map
    failed = Signal(str)

    def __init__(self, parent=None, device: str = "auto"):
        super().__init__(parent)
        self.device = device
        self.lane = Lane("semirest-inference", self)
        self._pending: Worker | None = None
        self._model = None  # read and written in the lane's thread only
        self._model_key: tuple[int, Path] | None = None

    def request(self, run_id: int, checkpoint: Path, image_id: int, image_path: Path) -> None:
        """Map this image next (an earlier request that has not started is dropped)."""
        if self._pending is not None:
            self._pending.cancel()
        path = Path(image_path)
        w = Worker(self._map, run_id, Path(checkpoint), image_id, path)
        w.signals.returned.connect(self._on_map)
        w.signals.errored.connect(lambda text, name=path.name: self.failed.emit(f"no heatmap for {name}: {text.splitlines()[0]}"))
        self._pending = self.lane.start_worker(w)

    def _map(self, run_id: int, ckpt: Path, image_id: int, path: Path):
        if self._model_key != (run_id, ckpt):
            self._model = SemiREST.load(ckpt, pick_device(self.device))
            self._model_key = (run_id, ckpt)
        return run_id, image_id, self._model.predict([read_image(path)])[0]

    def _on_map(self, value) -> None:
        self.map_ready.emit(*value)

    def stop(self, ms: int = 10000) -> None:
        self.lane.stop(ms)
