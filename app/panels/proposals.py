"""Box proposals: rotated-box suggestions from the thresholded map of the image on screen, drawn in
the canvas's proposal layer, ticked or unticked by the inspector, and accepted as ordinary box
labels (undoable, saved like a drawn box). The boxes come from
:func:`semirest.core.project.proposals.propose_boxes`."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from semirest.app.canvas.layers import ProposalLayer
from semirest.app.session import LabelingSession
from semirest.core.labels.boxes import RotatedBox
from semirest.core.project.proposals import propose_boxes


class ProposalsPanel(QWidget):
    propose_requested = Signal()  # the Propose button: the owner passes the map and threshold in
    review_started = Signal()  # suggestions are shown: reviewing them is box labeling (box tool, box time)
    message = Signal(str)  # for the status bar

    def __init__(self, session: LabelingSession, layer: ProposalLayer, parent=None):
        super().__init__(parent)
        self.session = session
        self.layer = layer
        self.proposals: list[RotatedBox] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox("Box proposals")
        inner = QVBoxLayout(box)
        self.propose_button = QPushButton("Propose boxes (P)")
        self.proposal_list = QListWidget()
        self.proposal_list.setMaximumHeight(110)
        self.accept_button = QPushButton("Accept checked")
        self.reject_button = QPushButton("Reject all")
        for b in (self.propose_button, self.accept_button, self.reject_button, self.proposal_list):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # single-letter shortcuts stay with the window
        inner.addWidget(self.propose_button)
        inner.addWidget(self.proposal_list)
        row = QHBoxLayout()
        row.addWidget(self.accept_button)
        row.addWidget(self.reject_button)
        inner.addLayout(row)
        lay.addWidget(box)
        self.propose_button.clicked.connect(self.propose_requested)
        self.accept_button.clicked.connect(self.accept_proposals)
        self.reject_button.clicked.connect(self.reject_proposals)
        session.image_changed.connect(lambda _index: self.clear_proposals())

    def propose(self, score_map: np.ndarray | None, threshold: float) -> int:
        """Rotated-box suggestions from ``score_map > threshold``; returns how many."""
        self.clear_proposals()
        if score_map is None:
            self.message.emit("No heatmap for this image yet: train a model or choose a run.")
            return 0
        self.review_started.emit()
        self.proposals = propose_boxes(score_map, threshold)
        self.layer.set_boxes(self.proposals)
        for i, b in enumerate(self.proposals):
            li = QListWidgetItem(f"{i + 1}: {b.width:.0f}×{b.height:.0f} at ({b.cx:.0f}, {b.cy:.0f}), {b.angle:.0f}°")
            li.setFlags(li.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            li.setCheckState(Qt.CheckState.Checked)
            self.proposal_list.addItem(li)
        self.message.emit(f"{len(self.proposals)} box suggestion(s) at threshold {threshold:.2f}: "
                          "untick the wrong ones, then Accept checked.")
        return len(self.proposals)

    def accept_proposals(self) -> int:
        """Checked suggestions become ordinary box labels (undoable, saved like a drawn box)."""
        checked = [b for i, b in enumerate(self.proposals) if self.proposal_list.item(i).checkState() == Qt.CheckState.Checked]
        n = self.session.add_boxes(checked) if checked else 0
        self.clear_proposals()
        if n:
            self.message.emit(f"{n} suggested box(es) accepted as labels.")
        return n

    def reject_proposals(self) -> None:
        self.clear_proposals()

    def clear_proposals(self) -> None:
        self.proposals = []
        self.layer.set_boxes([])
        self.proposal_list.clear()
