"""The inference view: which run's maps to show, the heatmap on the image (opacity, threshold, a
colour legend), and the image list's scores of that run.

The threshold is set in calibrated units: 0.50 is the run's calibrated threshold (its false-alarm
rate on normal images it did not fit on, :mod:`semirest.core.calibration`), whatever the model, so
maps show from the first look. The same raw value colours the map, proposes boxes and decides OK/NG
in ``semirest inspect``; beside the slider the view counts, on the project's images of known
condition that the run scored, the good images it would reject and the defect images it would
miss. A run without calibration is set in raw units, starting from its own score distribution.

Maps of a finished run are computed in the inference lane (:mod:`semirest.app.workers.inference`) with the
code path of ``semirest predict``; while a run trains, the live EMA map of the image on screen
(from the training panel) is shown instead. Colouring a map takes a few ms: it is reduced to at
most 768 px first (``heatmap_argb``).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSlider, QVBoxLayout, QWidget

from semirest.app.canvas.overlay import heatmap_argb
from semirest.app.workers.inference import InferenceMaps
from semirest.core.calibration import Calibration, checkpoint_calibration, fallback_threshold, outcome_at
from semirest.core.project.plan import known_conditions
from semirest.core.project.store import ProjectStore

STATE_TEXT = {"running": "running", "finished": "finished", "cancelled": "cancelled", "failed": "failed"}
KEPT_MAPS = 16  # maps of (run, image) kept, so flipping back and forth never recomputes


class HeatmapLegend(QWidget):
    """The heatmap's colours on its fixed [0, 1] scale, with the threshold drawn on it: left of the
    mark the map is transparent, right of it coloured."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.threshold = 0.5  # raw
        self.mark_text = ""
        ramp = heatmap_argb(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :], 1.0, 0.0)
        self._ramp = QImage(np.ascontiguousarray(ramp).data, 256, 1, 4 * 256, QImage.Format.Format_ARGB32_Premultiplied).copy()
        self.setMinimumHeight(34)

    def sizeHint(self) -> QSize:
        return QSize(200, 34)

    def set_threshold(self, raw: float, text: str) -> None:
        self.threshold, self.mark_text = float(raw), text
        self.update()

    def paintEvent(self, _ev) -> None:
        p = QPainter(self)
        w, bar_h = self.width() - 2, 12
        bar = QRectF(1, 1, w, bar_h)
        p.drawImage(bar, self._ramp)
        x = 1 + w * min(1.0, max(0.0, self.threshold))
        p.fillRect(QRectF(1, 1, x - 1, bar_h), QColor(255, 255, 255, 150))  # below: not drawn on the image
        p.setPen(QPen(QColor("black"), 2))
        p.drawLine(int(x), 0, int(x), bar_h + 3)
        p.setPen(self.palette().text().color())
        fm = p.fontMetrics()
        y = bar_h + 3 + fm.ascent()
        p.drawText(1, y, "0")
        p.drawText(w + 1 - fm.horizontalAdvance("1"), y, "1")
        tw = fm.horizontalAdvance(self.mark_text)
        p.drawText(int(min(max(x - tw / 2, 12), w - 12 - tw)), y, self.mark_text)
        p.end()


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
        self.calibration: Calibration | None = None  # the chosen run's, None when it has none
        self.scores: dict[int, float] = {}  # the chosen run's image scores
        self.conditions: dict[int, bool] = {}  # images of known condition: defective?
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
        self.threshold.setToolTip("0.50 is the run's calibrated threshold (its false-alarm rate on normal images)")
        self.threshold_label = QLabel()
        self.threshold_label.setWordWrap(True)
        self.legend = HeatmapLegend()
        self.outcome_label = QLabel()
        self.outcome_label.setWordWrap(True)
        vf.addRow("Threshold", self.threshold)
        vf.addRow("", self.threshold_label)
        vf.addRow("Colours", self.legend)
        vf.addRow("At this setting", self.outcome_label)
        for w in (self.runs, self.opacity, self.threshold):
            w.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # Enter/Esc hand the keys back (see keyPressEvent)
        lay.addWidget(view)
        self.runs.currentIndexChanged.connect(self._run_chosen)
        self.show_heatmap.toggled.connect(lambda _on: self.update_heatmap())
        self.opacity.valueChanged.connect(lambda _v: self.update_heatmap())
        self.threshold.valueChanged.connect(lambda _v: self.update_heatmap())

    @property
    def setting(self) -> float:
        """The slider's value: calibrated units (0.5 = the run's threshold), or raw when uncalibrated."""
        return self.threshold.value() / 100

    @property
    def threshold_value(self) -> float:
        """The raw threshold, 0..1 in map units: what colours the map and proposes boxes."""
        if self.calibration is not None:
            return self.calibration.raw_threshold(self.setting)
        return self.setting

    def set_setting(self, value: float) -> None:
        self.threshold.setValue(int(round(100 * min(1.0, max(0.0, value)))))

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
        usable = [r for r in rows if r.checkpoint and r.state == "finished"]  # a cancelled run is chosen by hand only
        want = select if select is not None else (usable[-1].id if usable else None)
        idx = max(0, self.runs.findData(want)) if want is not None else 0
        self.runs.setCurrentIndex(idx)
        self.runs.blockSignals(False)
        self._run_chosen()

    def _run_chosen(self, *_args) -> None:
        same_run = self.run_id is not None and self.runs.currentData() == self.run_id and self.scores
        self.run_id = self.runs.currentData()
        scores: dict[int, float] = {}
        self.calibration = None
        if self.run_id is not None:
            rec = self.store.run(self.run_id)
            scores = self.store.run_scores(self.run_id)
            ckpt = self.store.run_checkpoint_path(rec)
            if ckpt is not None and ckpt.is_file():
                self.calibration = checkpoint_calibration(ckpt)
            if rec.state == "finished":
                self.metrics_changed.emit(rec.metrics)
        self.scores = scores
        self.conditions = known_conditions(self.store) if scores else {}
        self.threshold.blockSignals(True)
        if same_run:
            pass  # the run read again (its scoring ended): the inspector's setting stays
        elif self.calibration is not None:
            self.set_setting(0.5)
        elif scores:
            self.set_setting(fallback_threshold(scores, self.conditions))
        self.threshold.blockSignals(False)
        self.scores_changed.emit(scores)
        self.update_heatmap()

    def keyPressEvent(self, ev) -> None:
        """Enter or Esc in a control of the view gives the keyboard back to the window's shortcuts."""
        if ev.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape):
            focused = self.focusWidget()
            if focused is not None:
                focused.clearFocus()
            ev.accept()
            return
        super().keyPressEvent(ev)

    def _describe_threshold(self) -> None:
        raw = self.threshold_value
        cal = self.calibration
        if cal is not None:
            self.threshold_label.setText(
                f"{self.setting:.2f} calibrated (0.50 = {cal.false_alarm:.1%} false alarms on {cal.n_images} "
                f"normal images); raw score {raw:.3f}")
            mark = f"{self.setting:.2f}"
        else:
            self.threshold_label.setText(f"{raw:.2f} raw score (this run has no calibration)")
            mark = f"{raw:.2f}"
        self.legend.set_threshold(raw, mark)
        if self.scores:
            self.outcome_label.setText(outcome_at(self.scores, self.conditions, raw).text())
        else:
            self.outcome_label.setText("no image scores for this run" if self.run_id is not None else "")

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
        self._describe_threshold()
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
