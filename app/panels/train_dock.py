"""The Train dock: the training panel, the inference view and box proposals, one above the other,
wired to each other by signals. The window reaches the dock through the slots it shares with
:class:`~semirest.app.panels.no_training.NoTrainingPanel` (start, retrain, cancel, clear_cache,
toggle_heatmap, propose, score_threshold, image_changed, shutdown) and its three outgoing signals."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from semirest.app.canvas.view import CanvasView
from semirest.app.panels.inference_view import InferenceView
from semirest.app.panels.proposals import ProposalsPanel
from semirest.app.panels.training import TrainingPanel
from semirest.app.session import LabelingSession
from semirest.app.workers import Lane, Worker


class TrainDock(QWidget):
    message = Signal(str)  # for the status bar
    scores_changed = Signal(object)  # {image id: score} of the run the inference view shows
    image_scored = Signal(int, float)  # one image's score as the finished run's scoring makes it
    box_review_started = Signal()  # box suggestions are on screen: the window switches to the box tool

    def __init__(self, session: LabelingSession, canvas: CanvasView, parent=None):
        super().__init__(parent)
        self.session = session
        self.canvas = canvas
        self.training = TrainingPanel(session)
        self.inference = InferenceView(session.store)
        self.proposals = ProposalsPanel(session, canvas.proposal_layer)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        for panel in (self.training, self.inference, self.proposals):
            lay.addWidget(panel)
            panel.message.connect(self.message)
        lay.addStretch(1)
        t, v, p = self.training, self.inference, self.proposals
        t.running_changed.connect(v.set_training)
        t.live_map.connect(v.set_live)
        t.run_ended.connect(v.run_ended)
        v.metrics_changed.connect(t.show_metrics)
        v.scores_changed.connect(self.scores_changed)
        t.image_scored.connect(self.image_scored)
        t.scores_streamed.connect(self._scores_streamed)
        t.scoring_done.connect(self._scoring_done)
        v.heatmap_changed.connect(canvas.set_heatmap)
        p.propose_requested.connect(self.propose)
        p.review_started.connect(self.box_review_started)
        v.load_runs()
        self.export_lane = Lane("detector export", self)
        self.export_job: Worker | None = None

    def _scores_streamed(self, run_id: int, scores: dict) -> None:
        """Scores of the run being scored reach the image list as they come (the shown run only)."""
        if self.inference.run_id == run_id:
            self.scores_changed.emit(scores)

    def _scoring_done(self, run_id: int) -> None:
        """All scores and the held-out metrics are stored: the view reads the run again."""
        if self.inference.run_id == run_id:
            self.inference.load_runs(select=run_id)

    # -- the window's slots ---------------------------------------------------------------------
    def start(self):
        return self.training.start()

    def retrain(self):
        return self.training.retrain()

    def cancel(self) -> None:
        self.training.cancel()

    def clear_cache(self) -> None:
        self.training.clear_cache()

    def toggle_heatmap(self) -> None:
        self.inference.toggle_heatmap()

    def propose(self) -> int:
        return self.proposals.propose(self.inference.current_map(), self.inference.threshold_value)

    def export_detector(self, out: str | Path | None = None) -> Worker | None:
        """Training > Export detector: the run chosen in the inference view, if it finished, as one
        ONNX file (``semirest export-model``), written off the GUI thread. ``out`` None asks for the
        file (the dialog confirms an overwrite)."""
        store = self.session.store
        run_id = self.inference.run_id
        rec = store.run(run_id) if run_id is not None else None
        ckpt = store.run_checkpoint_path(rec) if rec is not None else None
        if rec is None or rec.state != "finished" or ckpt is None or not ckpt.is_file():
            self.message.emit("Export detector: choose a finished run in the Inference view first.")
            return None
        if self.export_job is not None and not self.export_job.ended():
            self.message.emit("A detector is being exported already.")
            return None
        if out is None:
            default = store.path.with_name(f"{store.path.stem}-run{rec.id:03d}.onnx")
            out, _ = QFileDialog.getSaveFileName(self, "Export detector", str(default), "ONNX detector (*.onnx)")
            if not out:
                return None
        out = Path(out)
        if out.suffix.lower() != ".onnx":
            out = out.with_name(out.name + ".onnx")
        from semirest.core.train.export import export_checkpoint

        job = Worker(export_checkpoint, ckpt, out)
        job.signals.returned.connect(lambda res: self.message.emit(
            f"Detector of run #{rec.id} written: {res[0]} ({res[0].stat().st_size / 1e6:.1f} MB); "
            f"semirest inspect --model {res[0].name} runs it without torch."))
        job.signals.errored.connect(lambda text: self.message.emit(f"Export detector failed: {text.splitlines()[0]}"))
        self.message.emit(f"Exporting the detector of run #{rec.id} to {out} …")
        self.export_job = self.export_lane.start_worker(job)
        return job

    def score_threshold(self) -> float | None:
        """The Inference view's threshold in score units (S: next image above it), None without a run."""
        return self.inference.threshold_value if self.inference.run_id is not None else None

    def image_changed(self) -> None:
        """The image on screen changed: its map (the proposals and the live target follow by
        themselves, from the session's ``image_changed``)."""
        rec, doc = self.session.record, self.canvas.document
        self.inference.show_image(rec.id if rec else None, self.session.store.image_path(rec) if rec else None,
                                  doc.hw if doc is not None else None)

    def shutdown(self) -> None:
        self.training.shutdown()
        self.inference.shutdown()
        self.export_lane.stop(120000)  # an export half-written is never left: it writes atomically
