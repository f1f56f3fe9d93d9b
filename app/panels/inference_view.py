"""The inference view: which run's maps to show, the heatmap on the image (opacity, threshold), and
the image list's scores of that run.

Maps of a finished run are computed in the inference lane (:mod:`semirest.app.workers.inference`) with the
code path of ``semirest predict``; while a run trains, the live EMA map of the image on screen
(from the training panel) is shown instead. Colouring a map takes a few ms: it is reduced to at
most 768 px first (``heatmap_argb``).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSlider, QVBoxLayout, QWidget

from semirest.app.canvas.overlay import heatmap_argb
from semirest.app.workers.inference import InferenceMaps
from semirest.core.project.store import ProjectStore

STATE_TEXT = {"running": "running", "finished": "finished", "cancelled": "cancelled", "failed": "failed"}
KEPT_MAPS = 16  # maps of (run, image) kept, so flipping back and forth never recomputes


class InferenceView(QWidget):
    heatmap_changed = Signal(object)  # ARGB32 (h, w) uint32 overlay for the canvas, or None
    scores_changed = Signal(object)  # {image id: score} of the chosen run (int keys: not a QVariantMap)
    metrics_changed = Signal(object)  # the chosen run's held-out metrics, when it finished
    message = Signal(str)  # for the status bar

    def __init__(self, store: ProjectStore, parent=None):
        super().__init__(parent)
        self.store = store
        self.inference = InferenceMaps(self)
        self.inference.map_ready.connect(self._on_map)
        self.inference.failed.connect(self.message)
        self.maps: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()  # (run, image) -> map
        self.live: tuple[int, np.ndarray] | None = None  # image id and map of the live model
        self.run_id: int | None = None  # the run whose maps are shown
        self.training = False  # a run is training: its live maps, no inference of older runs meanwhile
        self._image: tuple[int, Path, tuple[int, int] | None] | None = None  # id, path, (h, w) on screen
        self._build()

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        view = QGroupBox("Inference view")
        vf = QFormLayout(view)
        self.runs = QComboBox()
        vf.addRow("Run", self.runs)
        self.show_heatmap = QCheckBox("Show heatmap (H)")
        self.show_heatmap.setChecked(True)
        self.show_heatmap.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        vf.addRow(self.show_heatmap)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        vf.addRow("Opacity", self.opacity)
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, 100)
        self.threshold.setValue(50)
        self.threshold_label = QLabel()
        vf.addRow("Threshold", self.threshold)
        vf.addRow("", self.threshold_label)
        lay.addWidget(view)
        self.runs.currentIndexChanged.connect(self._run_chosen)
        self.show_heatmap.toggled.connect(lambda _on: self.update_heatmap())
        self.opacity.valueChanged.connect(lambda _v: self.update_heatmap())
        self.threshold.valueChanged.connect(lambda _v: self.update_heatmap())

    @property
    def threshold_value(self) -> float:
        """The map threshold, 0..1 (map values are probabilities)."""
        return self.threshold.value() / 100

    # -- inputs ---------------------------------------------------------------------------------
    def show_image(self, image_id: int | None, path: Path | None, hw: tuple[int, int] | None) -> None:
        """The image on screen changed (``hw`` None: it cannot be shown)."""
        self._image = None if image_id is None else (image_id, Path(path), None if hw is None else tuple(hw))
        self.update_heatmap()

    def set_training(self, running: bool) -> None:
        self.training = running

    @Slot(int, object)
    def set_live(self, image_id: int, m: np.ndarray) -> None:
        self.live = (image_id, m)
        self.update_heatmap()

    @Slot(object)
    def run_ended(self, show_run: int | None) -> None:
        """A training run ended: the live map goes, and the run list is read again."""
        self.live = None
        self.load_runs(select=show_run)

    def toggle_heatmap(self) -> None:
        self.show_heatmap.setChecked(not self.show_heatmap.isChecked())

    # -- runs -----------------------------------------------------------------------------------
    def load_runs(self, select: int | None = None) -> None:
        """Fill the run list; choose ``select``, else the newest run with a usable checkpoint."""
        rows = self.store.runs()
        self.runs.blockSignals(True)
        self.runs.clear()
        self.runs.addItem("none", None)
        for r in rows:
            dur = f", {r.duration_s:.0f} s" if r.duration_s is not None else ""
            self.runs.addItem(f"#{r.id} {r.setting} {r.preset} {STATE_TEXT.get(r.state, r.state)}{dur}", r.id)
        usable = [r for r in rows if r.checkpoint and r.state in ("finished", "cancelled")]
        want = select if select is not None else (usable[-1].id if usable else None)
        idx = max(0, self.runs.findData(want)) if want is not None else 0
        self.runs.setCurrentIndex(idx)
        self.runs.blockSignals(False)
        self._run_chosen()

    def _run_chosen(self, *_args) -> None:
        self.run_id = self.runs.currentData()
        scores = {}
        if self.run_id is not None:
            rec = self.store.run(self.run_id)
            scores = self.store.run_scores(self.run_id)
            if rec.state == "finished":
                self.metrics_changed.emit(rec.metrics)
        self.scores_changed.emit(scores)
        self.update_heatmap()

    # -- the map on screen ----------------------------------------------------------------------
    def current_map(self) -> np.ndarray | None:
        """The map of the image on screen: the live model's while training, else the chosen run's."""
        if self._image is None:
            return None
        image_id = self._image[0]
        if self.live is not None and self.live[0] == image_id:
            return self.live[1]
        if self.run_id is not None:
            return self.maps.get((self.run_id, image_id))
        return None

    def update_heatmap(self) -> None:
        self.threshold_label.setText(f"{self.threshold_value:.2f} (scores are probabilities, 0..1)")
        if self._image is None or self._image[2] is None or not self.show_heatmap.isChecked():
            self.heatmap_changed.emit(None)
            return
        image_id, path, hw = self._image
        m = self.current_map()
        if m is None and not self.training and self.run_id is not None:
            ckpt = self.store.run_checkpoint_path(self.store.run(self.run_id))
            if ckpt is not None and ckpt.is_file():
                self.inference.request(self.run_id, ckpt, image_id, path)
        if m is None or m.shape != hw:
            self.heatmap_changed.emit(None)
            return
        self.heatmap_changed.emit(heatmap_argb(m, self.opacity.value() / 100, self.threshold_value))

    @Slot(int, int, object)
    def _on_map(self, run_id: int, image_id: int, m) -> None:
        self.maps[(run_id, image_id)] = m
        while len(self.maps) > KEPT_MAPS:
            self.maps.popitem(last=False)
        if self._image is not None and self._image[0] == image_id and run_id == self.run_id:
            self.update_heatmap()

    def shutdown(self) -> None:
        self.inference.stop()
