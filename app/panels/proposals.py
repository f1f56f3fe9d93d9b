"""Box proposals: rotated-box suggestions from the thresholded map of the image on screen, drawn
numbered in the canvas's proposal layer, and reviewed by the inspector: each one accepted (it
becomes an ordinary box label, undoable, saved like a drawn box) or rejected, one by one or all
at once. The boxes come from :func:`semirest.core.project.proposals.propose_boxes`: the few most
anomalous regions (5 by default), none pre-ticked, so nothing becomes a label unseen."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QGridLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from semirest.app.canvas.layers import ProposalLayer
from semirest.app.session import LabelingSession
from semirest.core.project.proposals import DEFAULT_MAX_BOXES, Proposal, propose_boxes


class ProposalsPanel(QWidget):
    propose_requested = Signal()  # the Propose button: the owner passes the map and threshold in
    review_started = Signal()  # suggestions are shown: reviewing them is box labeling (box tool, box time)
    message = Signal(str)  # for the status bar

    def __init__(self, session: LabelingSession, layer: ProposalLayer, parent=None):
        super().__init__(parent)
        self.session = session
        self.layer = layer
        self.proposals: list[Proposal] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox("Box proposals")
        inner = QVBoxLayout(box)
        top = QHBoxLayout()
        self.propose_button = QPushButton("Propose boxes (P)")
        self.max_boxes = QSpinBox()
        self.max_boxes.setRange(1, 50)
        self.max_boxes.setValue(DEFAULT_MAX_BOXES)
        self.max_boxes.setPrefix("best ")
        self.max_boxes.setToolTip("How many suggestions, most anomalous regions first")
        top.addWidget(self.propose_button, 1)
        top.addWidget(self.max_boxes)
        self.proposal_list = QListWidget()
        self.proposal_list.setMaximumHeight(110)
        self.accept_button = QPushButton("Accept checked")
        self.accept_one_button = QPushButton("Accept selected")
        self.reject_one_button = QPushButton("Reject selected")
        self.accept_all_button = QPushButton("Accept all")
        self.reject_button = QPushButton("Reject all")
        for b in (self.propose_button, self.accept_button, self.accept_one_button, self.reject_one_button,
                  self.accept_all_button, self.reject_button, self.proposal_list):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # single-letter shortcuts stay with the window
        self.max_boxes.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        inner.addLayout(top)
        inner.addWidget(self.proposal_list)
        grid = QGridLayout()
        grid.addWidget(self.accept_one_button, 0, 0)
        grid.addWidget(self.reject_one_button, 0, 1)
        grid.addWidget(self.accept_button, 1, 0)
        grid.addWidget(self.accept_all_button, 1, 1)
        grid.addWidget(self.reject_button, 2, 1)
        inner.addLayout(grid)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        inner.addWidget(self.hint)
        lay.addWidget(box)
        self.propose_button.clicked.connect(self.propose_requested)
        self.accept_button.clicked.connect(self.accept_proposals)
        self.accept_one_button.clicked.connect(self.accept_selected)
        self.reject_one_button.clicked.connect(self.reject_selected)
        self.accept_all_button.clicked.connect(self.accept_all)
        self.reject_button.clicked.connect(self.reject_proposals)
        self.proposal_list.currentRowChanged.connect(self._row_changed)
        session.image_changed.connect(lambda _index: self.clear_proposals())
        self._update_buttons()

    def propose(self, score_map: np.ndarray | None, threshold: float) -> int:
        """The best few rotated-box suggestions from ``score_map > threshold``; returns how many."""
        self.clear_proposals()
        if score_map is None:
            self.message.emit("No heatmap for this image yet: train a model or choose a run.")
            return 0
        self.review_started.emit()
        self.proposals = propose_boxes(score_map, threshold, max_boxes=self.max_boxes.value())
        self._show()
        if self.proposals:
            self.message.emit(f"{len(self.proposals)} box suggestion(s), most anomalous first (raw threshold "
                              f"{threshold:.3f}): tick the right ones and Accept checked, or accept/reject one by one.")
        else:
            self.message.emit(f"No region above the raw threshold {threshold:.3f}: lower the threshold and propose again.")
        return len(self.proposals)

    def _show(self) -> None:
        self.layer.set_boxes([p.box for p in self.proposals])
        self.proposal_list.blockSignals(True)
        self.proposal_list.clear()
        for i, p in enumerate(self.proposals):
            b = p.box
            li = QListWidgetItem(f"{i + 1}: score {p.score:.2f}, {b.width:.0f}×{b.height:.0f} at ({b.cx:.0f}, {b.cy:.0f}), {b.angle:.0f}°")
            li.setFlags(li.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            li.setCheckState(Qt.CheckState.Unchecked)
            self.proposal_list.addItem(li)
        self.proposal_list.blockSignals(False)
        if self.proposals:
            self.proposal_list.setCurrentRow(0)
        self._update_buttons()

    def _row_changed(self, row: int) -> None:
        self.layer.select(row if row >= 0 else None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        have = bool(self.proposals)
        selected = have and self.proposal_list.currentRow() >= 0
        for b in (self.accept_button, self.accept_all_button, self.reject_button):
            b.setEnabled(have)
        for b in (self.accept_one_button, self.reject_one_button):
            b.setEnabled(selected)
        self.hint.setText("" if not have else
                          f"{len(self.proposals)} suggestion(s), numbered on the image; the selected one is drawn solid.")

    def _accept(self, rows: list[int]) -> int:
        """Suggestions ``rows`` become ordinary box labels (each its own undo step); the others stay for review."""
        boxes = [self.proposals[r].box for r in rows]
        n = self.session.add_boxes(boxes) if boxes else 0
        if n:  # else refused (read-only project, no image; the status bar says why): they stay for review
            self._remove(rows)
            self.message.emit(f"{n} suggested box(es) accepted as labels.")
        return n

    def _remove(self, rows: list[int]) -> None:
        gone = set(rows)
        self.proposals = [p for i, p in enumerate(self.proposals) if i not in gone]
        self._show()

    def accept_proposals(self) -> int:
        """The ticked suggestions become labels; the unticked ones are rejected."""
        rows = [i for i in range(len(self.proposals)) if self.proposal_list.item(i).checkState() == Qt.CheckState.Checked]
        n = self._accept(rows)
        self.clear_proposals()
        return n

    def accept_selected(self) -> int:
        row = self.proposal_list.currentRow()
        return self._accept([row]) if 0 <= row < len(self.proposals) else 0

    def reject_selected(self) -> None:
        row = self.proposal_list.currentRow()
        if 0 <= row < len(self.proposals):
            self._remove([row])

    def accept_all(self) -> int:
        n = self._accept(list(range(len(self.proposals))))
        self.clear_proposals()
        return n

    def reject_proposals(self) -> None:
        self.clear_proposals()

    def clear_proposals(self) -> None:
        self.proposals = []
        self.layer.set_boxes([])
        self.proposal_list.clear()
        self._update_buttons()
