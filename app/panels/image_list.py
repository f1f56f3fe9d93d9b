"""The image list: every image of the project with its label status and the time spent on it.

A table model over the session's records, so a project of tens of thousands of images costs
one row object per visible row, not one widget per image."""
from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QVBoxLayout, QWidget, QLabel

from semirest.core.project.store import LabelSummary

LABELLED = QColor(70, 200, 110)
UNLABELLED = QColor(120, 120, 120)


def _count(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def describe(s: LabelSummary) -> str:
    """Short label status, e.g. 'px 2.4k · 8: 12 · box 2'."""
    parts = []
    if s.pixel_count:
        parts.append(f"px {_count(s.pixel_count)}")
    if s.block8:
        parts.append(f"8: {s.block8}")
    if s.block16:
        parts.append(f"16: {s.block16}")
    if s.boxes:
        parts.append(f"box {s.boxes}")
    return " · ".join(parts) if parts else "—"


def format_seconds(s: float) -> str:
    if s <= 0:
        return ""
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)}:{int(s % 60):02d}"


class ImageListModel(QAbstractTableModel):
    HEADERS = ("Image", "Labels", "Time", "Score")
    SORT_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, session):
        super().__init__()
        self.session = session
        self._row_of = {r.id: i for i, r in enumerate(session.records)}
        self.scores: dict[int, float] = {}  # image id -> score of the chosen run (map maximum)

    def records_reloaded(self) -> None:
        """The session read its image records again (images were added)."""
        self.beginResetModel()
        self._row_of = {r.id: i for i, r in enumerate(self.session.records)}
        self.endResetModel()

    def set_scores(self, scores: dict[int, float]) -> None:
        self.scores = dict(scores)
        if self.session.records:
            self.dataChanged.emit(self.index(0, 3), self.index(len(self.session.records) - 1, 3))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.session.records)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 4

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        rec = self.session.records[index.row()]
        s = self.session.summaries.get(rec.id, LabelSummary())
        col = index.column()
        if role == self.SORT_ROLE:
            if col == 3:
                return self.scores.get(rec.id, -1.0)  # unscored images sort below every score
            if col == 2:
                return self.session.seconds(rec.id)
            if col == 1:
                return s.pixel_count + s.block8 + s.block16 + s.boxes
            return index.row()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return rec.key
            if col == 1:
                return describe(s)
            if col == 3:
                v = self.scores.get(rec.id)
                return "" if v is None else f"{v:.3f}"
            return format_seconds(self.session.seconds(rec.id))
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return LABELLED if s.is_labelled else UNLABELLED
        if role == Qt.ItemDataRole.ToolTipRole:
            by_type = self.session.seconds_by_type(rec.id)
            times = ", ".join(f"{t} {v:.1f} s" for t, v in by_type.items()) or "no time yet"
            return f"{rec.path}\n{describe(s)}\n{times}"
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def refresh(self, image_id: int) -> None:
        row = self._row_of.get(image_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, 3))


class ImageListPanel(QWidget):
    """The list; clicking a row opens that image."""

    image_chosen = Signal(int)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.model = ImageListModel(session)
        # sorting (e.g. by score, most anomalous first) happens in a proxy: the model's rows stay
        # the session's order, which navigation (A / D) follows
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(ImageListModel.SORT_ROLE)
        self.proxy.setDynamicSortFilter(False)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # single-letter shortcuts stay with the window
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setShowGrid(False)
        self.view.setWordWrap(False)  # else long keys wrap at '/' and show as 'test/...'
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keys share their start (test/...)
        self.view.setAlternatingRowColors(True)
        h = self.view.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.view.clicked.connect(lambda idx: self.image_chosen.emit(self.proxy.mapToSource(idx).row()))
        self._indicator = self._indicator_before = -1
        h.sortIndicatorChanged.connect(self._remember_sort_section)
        h.sectionClicked.connect(self._scores_sort_high_first)
        self.progress = QLabel()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.progress)
        lay.addWidget(self.view)
        self.update_progress()

    def _remember_sort_section(self, section: int, _order) -> None:
        self._indicator_before, self._indicator = self._indicator, section

    def _scores_sort_high_first(self, section: int) -> None:
        """A click on Score that starts sorting by it shows the most anomalous images first (Qt's
        first click sorts ascending, which put the least anomalous on top); further clicks toggle.
        Sorting asked for in code (``sort_by_score``) is left as asked."""
        h = self.view.horizontalHeader()
        if section == 3 and self._indicator_before != 3 and h.sortIndicatorOrder() == Qt.SortOrder.AscendingOrder:
            self.view.sortByColumn(3, Qt.SortOrder.DescendingOrder)

    def select_row(self, row: int) -> None:
        idx = self.proxy.mapFromSource(self.model.index(row, 0))
        self.view.selectRow(idx.row())
        self.view.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)

    def set_scores(self, scores: dict[int, float]) -> None:
        self.model.set_scores(scores)

    def sort_by_score(self, most_anomalous_first: bool = True) -> None:
        self.view.sortByColumn(3, Qt.SortOrder.DescendingOrder if most_anomalous_first else Qt.SortOrder.AscendingOrder)

    def visible_order(self) -> list[int]:
        """Source rows in the order shown."""
        return [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(self.proxy.rowCount())]

    def update_progress(self) -> None:
        s = self.model.session
        done = sum(1 for v in s.summaries.values() if v.is_labelled)
        self.progress.setText(f"{done} of {len(s.records)} images labelled")
