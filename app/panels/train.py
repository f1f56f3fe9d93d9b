"""The Train panel: one-click training, live heatmaps, runs, the inference view and box proposals.

Views and wiring only: the setting rule, label conversion, training, prediction and proposals are
in ``semirest.core`` (:mod:`~semirest.core.project.plan`, :mod:`~semirest.core.project.run`,
:mod:`~semirest.core.project.proposals`); training runs in :mod:`semirest.app.workers.training`'s
thread and heatmaps of finished runs in :mod:`semirest.app.workers.inference`'s. Every signal from
a worker arrives here as a queued call in the GUI thread; the slots only copy small results into
widgets (colouring a heatmap takes a few ms: it is reduced to at most 768 px first).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGraphicsPolygonItem,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from semirest.app.canvas.overlay import heatmap_argb
from semirest.app.workers.inference import InferenceController
from semirest.app.workers.training import TrainingController, TrainingWorker
from semirest.core.project.plan import choose_setting

STATE_TEXT = {"running": "running", "finished": "finished", "cancelled": "cancelled", "failed": "failed"}
PROPOSAL_COLOR = QColor(255, 80, 200)


def device_choices() -> list[str]:
    import torch

    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def format_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


def metrics_text(m: dict) -> str:
    parts = [f"{name} {m[k]:.3f}" for k, name in (("pixel_auroc", "pixel AUROC"), ("pro", "PRO"), ("ap", "AP"))
             if isinstance(m.get(k), (int, float))]
    if parts:
        return " · ".join(parts) + f"  (on {m.get('eval_images', '?')} held-out images)"
    return m.get("note", "no reference masks among the held-out images: no metrics")


class LossCurve(QWidget):
    """The smoothed training loss, drawn as a polyline (log scale), newest value written in the corner."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.values: list[float] = []
        self.setMinimumHeight(90)

    def set_values(self, values: list[float]) -> None:
        self.values = values
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 32, 36))
        v = [x for x in self.values if x is not None and x > 0 and math.isfinite(x)]
        p.setPen(QColor(150, 150, 150))
        if len(v) < 2:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "loss curve")
            return
        lv = np.log10(np.asarray(v))
        lo, hi = float(lv.min()), float(lv.max())
        span = max(hi - lo, 1e-6)
        w, h = self.width() - 8, self.height() - 20
        n = len(lv)
        step = max(1, n // max(w, 1))
        pts = [QPointF(4 + w * i / (n - 1), 14 + h * (1 - (lv[i] - lo) / span)) for i in range(0, n, step)]
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(QColor(90, 200, 255), 1.5))
        p.drawPolyline(QPolygonF(pts))
        p.setPen(QColor(220, 220, 220))
        p.drawText(4, 12, f"loss {v[-1]:.4g}  (log scale, {n} steps)")


class TrainPanel(QWidget):
    """Train / runs / inference view / proposals. ``window`` is the main window (session, canvas,
    image list, actions)."""

    run_finished = Signal(int)  # run id, after its row and scores are stored

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self.session = window.session
        self.canvas = window.canvas
        self.store = self.session.store
        self.training = TrainingController(self)
        self.inference = InferenceController(self)
        self.inference.worker.map_ready.connect(self._on_map)
        self.inference.worker.failed.connect(self._on_inference_failed)
        self.maps: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()  # (run, image) -> map
        self.live: tuple[int, np.ndarray, int] | None = None  # image id, map, step of the live model
        self.live_updates = 0
        self.losses: list[float] = []
        self.run_id: int | None = None  # the run whose maps the inference view shows
        self.proposals: list[tuple[object, QGraphicsPolygonItem]] = []
        self.overrides: list[str] = []  # extra config overrides (tests: a tiny model)
        self.live_every = 10
        self.live_min_interval_s = 1.0
        self._latest_event = None
        self._last_choices: dict | None = None
        self.busy = False  # from Start until the run's end has been shown (finished / failed handled)
        self._build()
        self._ui_timer = QTimer(self)
        self._ui_timer.setInterval(100)
        self._ui_timer.timeout.connect(self._refresh_progress)
        self.refresh_setting()
        self._load_runs()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.setting_label = QLabel()
        self.setting_label.setWordWrap(True)
        self.setting_label.setObjectName("setting_label")
        form.addRow("Setting", self.setting_label)
        self.preset = QComboBox()
        self.preset.addItems(["fast", "paper"])
        form.addRow("Preset", self.preset)
        self.device = QComboBox()
        self.device.addItems(device_choices())
        form.addRow("Device", self.device)
        self.steps = QSpinBox()
        self.steps.setRange(0, 100000)
        self.steps.setSpecialValueText("preset")
        self.steps.setToolTip("Training steps of the last stage; 'preset' uses the preset's (semi: 3/8 of it after an un stage of the full length)")
        form.addRow("Steps", self.steps)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start (Ctrl+T)")
        self.cancel_button = QPushButton("Cancel")
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setToolTip("A new run with the current labels and the last run's preset, device and steps")
        for b in (self.start_button, self.cancel_button, self.retrain_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # single-letter shortcuts stay with the window
            buttons.addWidget(b)
        form.addRow(buttons)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        form.addRow(self.progress)
        self.status = QLabel("No training yet.")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self.loss_curve = LossCurve()
        form.addRow(self.loss_curve)
        self.live_label = QLabel("")
        form.addRow(self.live_label)
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setObjectName("metrics_label")
        form.addRow("Metrics", self.metrics_label)
        lay.addWidget(box)

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
        self.propose_button = QPushButton("Propose boxes (P)")
        self.proposal_list = QListWidget()
        self.proposal_list.setMaximumHeight(110)
        self.accept_button = QPushButton("Accept checked")
        self.reject_button = QPushButton("Reject all")
        for b in (self.propose_button, self.accept_button, self.reject_button, self.proposal_list):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        vf.addRow(self.propose_button)
        vf.addRow(self.proposal_list)
        pb = QHBoxLayout()
        pb.addWidget(self.accept_button)
        pb.addWidget(self.reject_button)
        vf.addRow(pb)
        lay.addWidget(view)
        lay.addStretch(1)

        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.retrain_button.clicked.connect(lambda: self.retrain())
        self.runs.currentIndexChanged.connect(self._run_chosen)
        self.show_heatmap.toggled.connect(lambda _on: self.update_heatmap())
        self.opacity.valueChanged.connect(lambda _v: self.update_heatmap())
        self.threshold.valueChanged.connect(lambda _v: self.update_heatmap())
        self.propose_button.clicked.connect(self.propose)
        self.accept_button.clicked.connect(self.accept_proposals)
        self.reject_button.clicked.connect(self.reject_proposals)
        self._set_running(False)

    # -- setting --------------------------------------------------------------------------------
    def refresh_setting(self) -> None:
        """The setting the current labels give (the same rule the run applies)."""
        n_mask = n_box = 0
        for s in self.session.summaries.values():
            if s.pixel_count or s.block8 or s.block16:
                n_mask += 1
            if s.boxes:
                n_box += 1
        setting, why = choose_setting(n_mask, n_box)
        self.setting_label.setText(f"<b>{setting}</b>: {why}")
        self.current_setting = setting

    def choices(self) -> dict:
        return {"preset": self.preset.currentText(), "device": self.device.currentText(), "steps": self.steps.value()}

    # -- training -------------------------------------------------------------------------------
    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and not self.store.read_only)
        self.retrain_button.setEnabled(not running and not self.store.read_only and self._last_choices is not None)
        self.cancel_button.setEnabled(running)
        for w in (self.preset, self.device, self.steps):
            w.setEnabled(not running)

    def start(self, choices: dict | None = None) -> TrainingWorker | None:
        """Start a run with the panel's choices (Ctrl+T), or with ``choices`` (Retrain)."""
        if self.busy or self.training.running:
            self.window.statusBar().showMessage("A training run is already in progress.", 5000)
            return None
        if self.store.read_only:
            QMessageBox.warning(self, "Cannot train", "The project is open read-only; runs cannot be stored.")
            return None
        if self.session.has_unsaved and not self.session.retry_saves():
            self.window.statusBar().showMessage("Some edits are not saved yet; training uses the saved labels.", 6000)
        choices = dict(choices or self.choices())
        overrides = list(self.overrides)
        if choices.get("steps"):
            overrides.append(f"train.steps={int(choices['steps'])}")
        worker = TrainingWorker(self.store.path, choices["preset"], choices["device"], overrides,
                                self.live_every, self.live_min_interval_s, choices)
        worker.plan_ready.connect(self._on_plan)
        worker.progress.connect(self._on_progress)
        worker.heatmap.connect(self._on_live_heatmap)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._follow_current_image(worker)
        self._last_choices = choices
        self.losses = []
        self.live = None
        self.live_updates = 0
        self.loss_curve.set_values([])
        self.progress.setRange(0, 0)
        self.status.setText("Starting…")
        self.metrics_label.setText("")
        self.live_label.setText("")
        self._set_running(True)
        self._ui_timer.start()
        self.busy = True
        return self.training.start(worker)

    def retrain(self) -> TrainingWorker | None:
        if self._last_choices is None:
            return None
        return self.start(self._last_choices)

    def cancel(self) -> None:
        if self.training.running:
            self.training.cancel()
            self.status.setText("Cancelling…")

    def _follow_current_image(self, worker: TrainingWorker | None = None) -> None:
        worker = worker or self.training.worker
        rec = self.session.record
        if worker is not None:
            worker.set_live_target(rec.id if rec else None, self.store.image_path(rec) if rec else None)

    @Slot(int, str, str)
    def _on_plan(self, run_id: int, setting: str, explanation: str) -> None:
        self.status.setText(f"Run #{run_id}: {setting}. {explanation}")
        self.training_run_id = run_id

    @Slot(object)
    def _on_progress(self, ev) -> None:
        if ev.stage.startswith("train") and "loss" in ev.info:
            self.losses.append(float(ev.info["loss"]))
        self._latest_event = ev

    def _refresh_progress(self) -> None:
        ev = self._latest_event
        if ev is None:
            return
        self._latest_event = None
        if ev.total > 0:
            self.progress.setRange(0, ev.total)
            self.progress.setValue(ev.done)
            self.progress.setFormat(f"{ev.stage}: {ev.done}/{ev.total}")
        text = f"{ev.stage} {ev.done}/{ev.total}"
        if ev.stage.startswith("train"):
            stage_note = " (stage 1 of 2: unsupervised start)" if ev.stage == "train un" else ""
            eta = format_eta(ev.info.get("eta_s"))
            text = f"Training{stage_note}: step {ev.done} of {ev.total}" + (f", ETA {eta}" if eta else "")
            if ev.stage == "train un":
                text += " + the semi stage"
            self.loss_curve.set_values(self.losses)
        self.status.setText(text)

    @Slot(object)
    def _on_live_heatmap(self, live) -> None:
        self.live = (live.image_id, live.heatmap, live.step)
        self.live_updates += 1
        self.live_label.setText(f"live heatmap: EMA model at step {live.step} ({live.stage})")
        self.update_heatmap()

    @Slot(object)
    def _on_finished(self, payload) -> None:
        self.training.wait(10000)  # the worker has returned; its thread ends at once
        self._ui_timer.stop()
        self._refresh_progress()
        res, run_id = payload["result"], payload["run_id"]
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if res.state == "finished" else 0)
        self.progress.setFormat(res.state)
        self.status.setText(f"Run #{run_id} {res.state} in {res.duration_s:.1f} s." + (f" {res.message}" if res.message else ""))
        self.metrics_label.setText(metrics_text(res.metrics) if res.state == "finished" else "—")
        self.live = None
        self.live_label.setText(f"{self.live_updates} live heatmaps during the run" if self.live_updates else "")
        self._load_runs(select=run_id if res.checkpoint else None)
        self.busy = False
        self.run_finished.emit(run_id)

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        self.training.wait(10000)
        self._ui_timer.stop()
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("failed")
        first = text.splitlines()[0] if text else "unknown error"
        self.status.setText(f"Training failed: {first}")
        self.live = None
        self._load_runs()
        self.busy = False
        self.last_error = text
        box = QMessageBox(QMessageBox.Icon.Warning, "Training failed", first, parent=self)
        box.setDetailedText(text)
        box.setModal(False)
        box.show()  # not exec(): a failure never blocks the window (or a test)
        self._error_box = box

    # -- runs -----------------------------------------------------------------------------------
    def _load_runs(self, select: int | None = None) -> None:
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
        if rows:
            snap = rows[-1].label_snapshot
            self._last_choices = snap.get("choices") or {"preset": rows[-1].preset, "device": rows[-1].config.get("device", "auto"),
                                                         "steps": 0}
        self._set_running(self.training.running)
        self._run_chosen()

    def _run_chosen(self, *_args) -> None:
        self.run_id = self.runs.currentData()
        scores = {}
        if self.run_id is not None:
            rec = self.store.run(self.run_id)
            scores = self.store.run_scores(self.run_id)
            if rec.state == "finished":
                self.metrics_label.setText(metrics_text(rec.metrics))
        self.window.image_list.set_scores(scores)
        self.update_heatmap()

    def checkpoint(self, run_id: int) -> Path | None:
        return self.store.run_checkpoint_path(self.store.run(run_id))

    # -- inference view -------------------------------------------------------------------------
    def image_changed(self) -> None:
        self.clear_proposals()
        if self.training.running:
            self._follow_current_image()
        self.update_heatmap()

    def current_map(self) -> np.ndarray | None:
        rec = self.session.record
        if rec is None:
            return None
        if self.live is not None and self.live[0] == rec.id:
            return self.live[1]
        if self.run_id is not None:
            return self.maps.get((self.run_id, rec.id))
        return None

    def update_heatmap(self) -> None:
        rec = self.session.record
        self.threshold_label.setText(f"{self.threshold.value() / 100:.2f} (scores are probabilities, 0..1)")
        if rec is None or not self.show_heatmap.isChecked() or self.canvas.document is None:
            self.canvas.set_heatmap(None)
            return
        m = self.current_map()
        if m is None and not self.training.running and self.run_id is not None:
            ckpt = self.checkpoint(self.run_id)
            if ckpt is not None and ckpt.is_file():
                self.inference.worker.request(self.run_id, ckpt, rec.id, self.store.image_path(rec))
        if m is None or m.shape != tuple(self.canvas.document.hw):
            self.canvas.set_heatmap(None)
            return
        self.canvas.set_heatmap(heatmap_argb(m, self.opacity.value() / 100, self.threshold.value() / 100))

    @Slot(int, int, object)
    def _on_map(self, run_id: int, image_id: int, m) -> None:
        self.maps[(run_id, image_id)] = m
        while len(self.maps) > 16:
            self.maps.popitem(last=False)
        rec = self.session.record
        if rec is not None and rec.id == image_id and run_id == self.run_id:
            self.update_heatmap()

    @Slot(str)
    def _on_inference_failed(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 8000)

    def toggle_heatmap(self) -> None:
        self.show_heatmap.setChecked(not self.show_heatmap.isChecked())

    # -- proposals ------------------------------------------------------------------------------
    def propose(self) -> int:
        """Rotated-box suggestions from the thresholded map of the current image; returns how many."""
        from semirest.core.project.proposals import propose_boxes

        self.clear_proposals()
        m = self.current_map()
        if m is None:
            self.window.statusBar().showMessage("No heatmap for this image yet: train a model or choose a run.", 6000)
            return 0
        # reviewing suggestions is box labeling: the time counts as box time of this image
        self.window.actions_["box"].trigger()
        boxes = propose_boxes(m, self.threshold.value() / 100)
        pen = QPen(PROPOSAL_COLOR, 2)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        for i, b in enumerate(boxes):
            item = QGraphicsPolygonItem(QPolygonF([QPointF(float(x), float(y)) for x, y in b.corners()]))
            item.setPen(pen)
            item.setZValue(45)
            self.canvas.scene().addItem(item)
            self.proposals.append((b, item))
            li = QListWidgetItem(f"{i + 1}: {b.width:.0f}×{b.height:.0f} at ({b.cx:.0f}, {b.cy:.0f}), {b.angle:.0f}°")
            li.setFlags(li.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            li.setCheckState(Qt.CheckState.Checked)
            self.proposal_list.addItem(li)
        self.window.statusBar().showMessage(f"{len(boxes)} box suggestion(s) at threshold {self.threshold.value() / 100:.2f}: "
                                            "untick the wrong ones, then Accept checked.", 8000)
        return len(boxes)

    def accept_proposals(self) -> int:
        """Checked suggestions become ordinary box labels (undoable, saved like a drawn box)."""
        from semirest.app.undo import BoxAddCommand

        doc = self.session.document
        n = 0
        if doc is not None and self.canvas.can_edit():
            for i, (b, _item) in enumerate(self.proposals):
                if self.proposal_list.item(i).checkState() == Qt.CheckState.Checked:
                    local = doc.add_box(b)
                    self.session.push(BoxAddCommand(local, b))
                    n += 1
        self.clear_proposals()
        self.refresh_setting()
        if n:
            self.window.statusBar().showMessage(f"{n} suggested box(es) accepted as labels.", 5000)
        return n

    def reject_proposals(self) -> None:
        self.clear_proposals()

    def clear_proposals(self) -> None:
        for _b, item in self.proposals:
            if item.scene() is not None:
                item.scene().removeItem(item)
        self.proposals = []
        self.proposal_list.clear()

    # -- shutdown -------------------------------------------------------------------------------
    def shutdown(self, wait_ms: int = 30000) -> None:
        if self.training.running:
            self.training.cancel()
            self.training.wait(wait_ms)
        self.inference.stop()
