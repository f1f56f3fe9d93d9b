"""The training panel: the setting the labels give, preset, device, steps, Start / Cancel / Retrain,
progress, ETA, the loss curve and the metrics of the run.

Views and wiring only: the setting rule, training and evaluation are in ``semirest.core``; the run
goes on in the training lane (:mod:`semirest.app.workers.training`). Every signal from the job
arrives here as a queued call in the GUI thread; the slots only copy small results into widgets,
and progress is drawn at most every 100 ms. Live heatmaps are passed on (``live_map``) to the inference view.
"""
from __future__ import annotations

import math

import numpy as np
import torch  # the desktop package has no torch: the window then shows NoTrainingPanel
from PySide6.QtCore import QPointF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget

from semirest.app.session import LabelingSession
from semirest.app.workers.training import TrainingController, TrainingJob
from semirest.core.project.plan import choose_setting
from semirest.core.project.preparation_cache import clear_project_cache, project_cache_size


def format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def device_choices() -> list[str]:
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
        self.marks: list[int] = []
        self.setMinimumHeight(90)

    def set_values(self, values: list[float], marks: list[int] | None = None) -> None:
        """``marks``: indices into ``values`` where a new training stage starts (semi after un),
        drawn as vertical lines."""
        self.values = values
        self.marks = list(marks or [])
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
        for i in self.marks:  # the semi stage begins: its loss is on another scale (ResMixMatch)
            if 0 < i < n:
                x = 4 + w * i / (n - 1)
                p.setPen(QPen(QColor(255, 200, 80), 1, Qt.PenStyle.DashLine))
                p.drawLine(QPointF(x, 14), QPointF(x, 14 + h))
                p.drawText(QPointF(x + 3, 14 + h), "semi")
        p.setPen(QColor(220, 220, 220))
        p.drawText(4, 12, f"loss {v[-1]:.4g}  (log scale, {n} steps)")


class TrainingPanel(QWidget):
    """Starts, follows and ends training runs on the session's project."""

    running_changed = Signal(bool)  # True from Start until the run's end has been shown
    live_map = Signal(int, object)  # image id, (H, W) map of the live EMA model
    run_ended = Signal(object)  # after the run's row is stored: the run whose maps to show, or None
    image_scored = Signal(int, float)  # one image's score of the run being scored, as it arrives
    scores_streamed = Signal(int, object)  # run id, {image id: score} so far (at most every 100 ms)
    scoring_done = Signal(int)  # the run's scores and held-out metrics are stored
    message = Signal(str)  # for the status bar

    def __init__(self, session: LabelingSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.store = session.store
        self.training = TrainingController(self)
        self.live_updates = 0
        self.losses: list[float] = []
        self.stage_marks: list[int] = []  # loss indices where a new training stage began
        self._loss_stage = ""
        self.streamed: dict[int, float] = {}  # scores of the run being scored, as they came
        self._streamed_new = False
        self.scoring_run: int | None = None
        self.overrides: list[str] = []  # extra config overrides (tests: a tiny model)
        self.live_every = 10
        self.live_min_interval_s = 1.0
        self.error_box: QMessageBox | None = None
        self.last_error = ""
        self._latest_event = None
        self._last_choices: dict | None = None
        self.busy = False  # from Start until the run's end has been shown (finished / failed handled)
        self._build()
        self._ui_timer = QTimer(self)
        self._ui_timer.setInterval(100)
        self._ui_timer.timeout.connect(self._refresh_progress)
        session.summary_changed.connect(lambda _id: self.refresh_setting())
        session.image_changed.connect(lambda _index: self._follow_current_image())
        session.image_changed.connect(lambda _index: self._set_running(self.busy))  # the first images added enable Start
        self.refresh_setting()
        self._recall_last_choices()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
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
        self.cache_label = QLabel("")
        self.cache_label.setObjectName("cache_label")
        self.cache_label.setToolTip("PCFs, bank, k-NN rows and synthetic pool kept beside the project; "
                                    "Retrain and the next Start reuse what did not change (Training > Clear cache)")
        form.addRow("Cache", self.cache_label)
        lay.addWidget(box)
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.retrain_button.clicked.connect(lambda: self.retrain())
        self._set_running(False)
        self.refresh_cache_size()

    # -- preparation cache ------------------------------------------------------------------------
    def refresh_cache_size(self) -> None:
        n = project_cache_size(self.store.path)
        self.cache_label.setText(f"{format_bytes(n)} (preparation reused by the next run)" if n else "empty")

    def clear_cache(self) -> None:
        """Training > Clear cache: the next run recomputes PCFs, bank, k-NN rows and synthetic pool."""
        if self.training.running:
            self.message.emit("The cache is in use by a run; clear it when the run has ended.")
            return
        freed = clear_project_cache(self.store.path)
        self.refresh_cache_size()
        self.message.emit(f"Preparation cache cleared ({format_bytes(freed)} freed).")

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

    def show_metrics(self, metrics: dict) -> None:
        """The metrics of a finished run (this panel's, or the one the inference view shows)."""
        self.metrics_label.setText(metrics_text(metrics))

    def _recall_last_choices(self) -> None:
        """Retrain repeats the last stored run's choices."""
        rows = self.store.runs()
        if rows:
            last = rows[-1]
            self._last_choices = last.label_snapshot.get("choices") or {
                "preset": last.preset, "device": last.config.get("device", "auto"), "steps": 0}
        self._set_running(self.training.running)

    # -- training -------------------------------------------------------------------------------
    def _set_running(self, running: bool) -> None:
        why_not = self._why_no_start()
        self.start_button.setEnabled(not running and not why_not)
        self.start_button.setToolTip(why_not)
        self.retrain_button.setEnabled(not running and not self.store.read_only and self._last_choices is not None)
        self.cancel_button.setEnabled(running or self.training.scoring)
        for w in (self.preset, self.device, self.steps):
            w.setEnabled(not running)

    def _why_no_start(self) -> str:
        """Why Start is off ("" when a run can start): a run needs images and a writable project."""
        if self.store.read_only:
            return "The project is open read-only: runs cannot be stored."
        if not self.session.records:
            return "The project has no images to train on: add some with File ▸ Add image folder…"
        return ""

    def start(self, choices: dict | None = None) -> TrainingJob | None:
        """Start a run with the panel's choices (Ctrl+T), or with ``choices`` (Retrain)."""
        if self.busy or (self.training.running and not self.training.scoring):
            self.message.emit("A training run is already in progress.")
            return None
        if not self.session.records:
            self.message.emit(self._why_no_start())
            return None
        if self.store.read_only:
            QMessageBox.warning(self, "Cannot train", "The project is open read-only; runs cannot be stored.")
            return None
        if self.session.has_unsaved and not self.session.retry_saves():
            self.message.emit("Some edits are not saved yet; training uses the saved labels.")
        choices = dict(choices or self.choices())
        overrides = list(self.overrides)
        if choices.get("steps"):
            overrides.append(f"train.steps={int(choices['steps'])}")
        job = TrainingJob(self.store.path, choices["preset"], choices["device"], overrides,
                          self.live_every, self.live_min_interval_s, choices)
        job.signals.plan_ready.connect(self._on_plan)
        job.signals.progress.connect(self._on_progress)
        job.signals.heatmap.connect(self._on_live_heatmap)
        job.signals.trained.connect(self._on_trained)
        job.signals.returned.connect(self._on_finished)
        job.signals.errored.connect(self._on_failed)
        self._follow_current_image(job)
        self._last_choices = choices
        self.losses = []
        self.stage_marks, self._loss_stage = [], ""
        self.live_updates = 0
        self.loss_curve.set_values([])
        self.progress.setRange(0, 0)
        self.status.setText("Starting…")
        self.metrics_label.setText("")
        self.live_label.setText("")
        self._set_running(True)
        self._ui_timer.start()
        self.busy = True
        self.running_changed.emit(True)
        return self.training.start(job)

    def retrain(self) -> TrainingJob | None:
        if self._last_choices is None:
            return None
        return self.start(self._last_choices)

    def cancel(self) -> None:
        if self.training.scoring:
            self.training.cancel()
            self.status.setText("Cancelling the scoring (the scores so far are kept)…")
        elif self.training.running:
            self.training.cancel()
            self.status.setText("Cancelling…")

    def _follow_current_image(self, job: TrainingJob | None = None) -> None:
        """The live heatmap maps the image on screen."""
        job = job or (self.training.job if self.training.running else None)
        if job is None:
            return
        rec = self.session.record
        job.set_live_target(rec.id if rec else None, self.store.image_path(rec) if rec else None)

    @Slot(int, str, str)
    def _on_plan(self, run_id: int, setting: str, explanation: str) -> None:
        self.status.setText(f"Run #{run_id}: {setting}. {explanation}")

    @Slot(object)
    def _on_progress(self, ev) -> None:
        if ev.stage.startswith("train") and "loss" in ev.info:
            if ev.stage != self._loss_stage:
                if self._loss_stage:
                    self.stage_marks.append(len(self.losses))
                self._loss_stage = ev.stage
            self.losses.append(float(ev.info["loss"]))
        if ev.stage == "score" and "image_id" in ev.info:
            self.streamed[int(ev.info["image_id"])] = float(ev.info["score"])
            self._streamed_new = True
            self.image_scored.emit(int(ev.info["image_id"]), float(ev.info["score"]))
        self._latest_event = ev

    def _refresh_progress(self) -> None:
        if self._streamed_new and self.scoring_run is not None:
            self._streamed_new = False
            self.scores_streamed.emit(self.scoring_run, dict(self.streamed))
        ev = self._latest_event
        if ev is None:
            return
        self._latest_event = None
        if ev.total > 0:
            self.progress.setRange(0, ev.total)
            self.progress.setValue(ev.done)
            self.progress.setFormat(f"{ev.stage}: {ev.done}/{ev.total}")
        eta = format_eta(ev.info.get("eta_s"))
        text = f"{ev.stage} {ev.done}/{ev.total}" + (f", ETA {eta}" if eta else "")
        if ev.stage == "score":
            text = f"Run #{self.scoring_run} finished; scoring the review queue: {ev.done} of {ev.total} images" + (
                f", ETA {eta}" if eta else "")
        elif ev.stage.startswith("train"):
            stage_note = " (stage 1 of 2: unsupervised start)" if ev.stage == "train un" else ""
            eta = format_eta(ev.info.get("eta_s"))
            text = f"Training{stage_note}: step {ev.done} of {ev.total}" + (f", ETA {eta}" if eta else "")
            if ev.stage == "train un":
                text += " + the semi stage"
            self.loss_curve.set_values(self.losses, self.stage_marks)
        self.status.setText(text)

    @Slot(object)
    def _on_live_heatmap(self, live) -> None:
        self.live_updates += 1
        self.live_label.setText(f"live heatmap: EMA model at step {live.step} ({live.stage})")
        self.live_map.emit(live.image_id, live.heatmap)

    def _ended(self, show_run: int | None) -> None:
        self._ui_timer.stop()
        self._set_running(False)
        self.busy = False
        self.running_changed.emit(False)
        self.run_ended.emit(show_run)

    @Slot(object)
    def _on_trained(self, payload) -> None:
        """Training ended: the run is finished and its model usable; scores stream in meanwhile."""
        self._refresh_progress()
        res, run_id = payload["result"], payload["run_id"]
        self.scoring_run = run_id
        self.streamed, self._streamed_new = {}, False
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("finished; scoring")
        self.status.setText(f"Run #{run_id} finished in {res.duration_s:.1f} s; scoring in the background.")
        self.live_label.setText(f"{self.live_updates} live heatmaps during the run" if self.live_updates else "")
        self.loss_curve.set_values(self.losses, self.stage_marks)
        self._recall_last_choices()
        self.refresh_cache_size()
        self.busy = False
        self._set_running(False)
        self.running_changed.emit(False)
        self.run_ended.emit(run_id)  # the inference view shows the run (and its metrics so far)
        self.metrics_label.setText("after scoring…")

    @Slot(object)
    def _on_finished(self, payload) -> None:
        self.training.wait(10000)  # the job has returned; its worker ends at once
        res, run_id = payload["result"], payload["run_id"]
        if run_id == self.scoring_run:  # the second phase ended: scores and metrics are stored
            self._streamed_new = bool(self.streamed)
            self._refresh_progress()
            self.scoring_run = None
            if not self.busy:  # a new run started meanwhile keeps its progress display
                self._ui_timer.stop()
                self._set_running(False)
            done = res.scoring == "done"
            self.progress.setFormat("finished" if done else f"finished; scoring {res.scoring}")
            self.status.setText(f"Run #{run_id} finished in {res.duration_s:.1f} s; {len(res.scores)} images scored."
                                + (f" {res.message}" if res.message else ""))
            self.metrics_label.setText(metrics_text(res.metrics) if done else "— (scoring did not finish)")
            self.scoring_done.emit(run_id)
            return
        self._refresh_progress()
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if res.state == "finished" else 0)
        self.progress.setFormat(res.state)
        self.status.setText(f"Run #{run_id} {res.state} in {res.duration_s:.1f} s." + (f" {res.message}" if res.message else ""))
        self.metrics_label.setText(metrics_text(res.metrics) if res.state == "finished" else "—")
        self.live_label.setText(f"{self.live_updates} live heatmaps during the run" if self.live_updates else "")
        self._recall_last_choices()
        self.refresh_cache_size()
        # only a finished run is shown by itself: a cancelled run's model is half-trained
        self._ended(run_id if res.checkpoint and res.state == "finished" else None)

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        self.training.wait(10000)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("failed")
        first = text.splitlines()[0] if text else "unknown error"
        self.status.setText(f"Training failed: {first}")
        self.last_error = text
        self._recall_last_choices()
        self._ended(None)
        box = QMessageBox(QMessageBox.Icon.Warning, "Training failed", first, parent=self)
        box.setDetailedText(text)
        box.setModal(False)
        box.show()  # not exec(): a failure never blocks the window (or a test)
        self.error_box = box

    def shutdown(self, wait_ms: int = 30000) -> None:
        if self.training.running:
            self.training.cancel()
            self.training.wait(wait_ms)
