"""The Train dock: the training panel, the inference view and box proposals, one above the other,
wired to each other by signals. The window reaches the dock through the slots it shares with
:class:`~semirest.app.panels.no_training.NoTrainingPanel` (start, retrain, cancel, clear_cache,
toggle_heatmap, propose, image_changed, shutdown) and its three outgoing signals."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from semirest.app.canvas.view import CanvasView
from semirest.app.panels.inference_view import InferenceView
from semirest.app.panels.proposals import ProposalsPanel
from semirest.app.panels.training import TrainingPanel
from semirest.app.session import LabelingSession


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

    def image_changed(self) -> None:
        """The image on screen changed: its map (the proposals and the live target follow by
        themselves, from the session's ``image_changed``)."""
        rec, doc = self.session.record, self.canvas.document
        self.inference.show_image(rec.id if rec else None, self.session.store.image_path(rec) if rec else None,
                                  doc.hw if doc is not None else None)

    def shutdown(self) -> None:
        self.training.shutdown()
        self.inference.shutdown()
