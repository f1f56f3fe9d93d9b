"""The image list: every image of the project with its label status, time and score, a filter
bar above it, sortable columns.

Built for projects of 50,000 images: which rows are shown and in which order is a few numpy
argsorts over per-image arrays (:class:`ImageListOrder`), not a ``data()`` call per row as in a
QSortFilterProxyModel; the table asks only for the rows on screen, and their text is cached per
row, so a repaint formats nothing. Nothing is emitted on a timer for the whole model: the clock
updates one Time cell, new scores reorder the list at most every :data:`SCORE_BATCH_MS`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QItemSelectionModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QDoubleValidator, QIcon, QIntValidator, QPainter, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGridLayout, QHeaderView, QLabel, QLineEdit, QTableView,
                               QVBoxLayout, QWidget)

from semirest.core.labels.image_labels import LABEL_TYPES
from semirest.core.project.store import LabelSummary, ProjectError

LABELLED = QColor(70, 200, 110)
UNLABELLED = QColor(120, 120, 120)
SCORE_BATCH_MS = 500  # scores stream in every 100 ms while a run scores; the list reorders at most this often
FILTER_TYPING_MS = 150  # the name filter applies this long after the last key
NAME, LABELS, TIME, SCORE = range(4)
TYPE_NAMES = {"pixel": "pixels", "block8": "8×8 cells", "block16": "16×16 cells", "box": "boxes"}
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
CHIP_W, CHIP_H, CHIP_GAP, MAX_CHIPS = 8, 14, 2, 5  # a row's class chips (the name column's icon)


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


@dataclass(frozen=True)
class ImageFilter:
    """Which images the list shows; None or "" means no condition."""

    name: str = ""  # a substring of the key, any case
    labelled: bool | None = None  # True: labelled only, False: unlabelled only
    label_type: str | None = None  # one of LABEL_TYPES: images with labels of that type
    class_id: int | None = None  # images with cells or boxes of that class
    score_min: float | None = None  # scored images only, score >= this
    score_max: float | None = None


class ImageListOrder:
    """The shown rows (indices into the session's records) in display order, from per-image arrays.

    Sorting or filtering 50,000 images takes a few tens of ms; unscored images come last in either
    direction of the Score sort."""

    def __init__(self, keys: list[str], ids: list[int]):
        n = len(ids)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.row_of = {int(i): r for r, i in enumerate(ids)}
        names = np.array(keys, dtype=str)
        self.keys_lower = np.char.lower(names) if n else names
        self.name_rank = np.empty(n, np.int64)
        self.name_rank[np.argsort(names, kind="stable")] = np.arange(n)
        self.scores = np.full(n, np.nan)
        self.counts = np.zeros((n, len(LABEL_TYPES)), np.int64)  # pixels, 8x8 cells, 16x16 cells, boxes
        self.classes: dict[int, np.ndarray] = {}  # class id -> bool per row
        self.seconds = np.zeros(n)  # the Time sort's key, filled when that sort is asked for
        self.column: int | None = None  # the sort column; None: the project's order
        self.descending = False
        self.filter = ImageFilter()
        self.rows = np.arange(n)
        self.positions = np.arange(n)  # row -> position in the list, -1 when filtered out

    def __len__(self) -> int:
        return len(self.rows)

    def set_summary(self, row: int, s: LabelSummary, class_ids=()) -> None:
        self.counts[row] = (s.pixel_count, s.block8, s.block16, s.boxes)
        for k, flags in self.classes.items():
            flags[row] = k in class_ids
        for k in set(class_ids) - set(self.classes):
            self.classes[k] = np.zeros(len(self.ids), bool)
            self.classes[k][row] = True

    def set_scores(self, scores: dict[int, float]) -> bool:
        """The chosen run's scores by image id; True if any changed."""
        new = np.full(len(self.ids), np.nan)
        if scores:
            rows = np.fromiter((self.row_of.get(int(i), -1) for i in scores), np.int64, len(scores))
            vals = np.fromiter(scores.values(), np.float64, len(scores))
            known = rows >= 0
            new[rows[known]] = vals[known]
        if np.array_equal(new, self.scores, equal_nan=True):
            return False
        self.scores = new
        return True

    @property
    def labelled(self) -> np.ndarray:
        return self.counts.any(axis=1)

    def _mask(self) -> np.ndarray:
        f, n = self.filter, len(self.ids)
        m = np.ones(n, bool)
        if f.name:
            m &= np.char.find(self.keys_lower, f.name.lower()) >= 0
        if f.labelled is not None:
            m &= self.labelled == f.labelled
        if f.label_type is not None:
            m &= self.counts[:, LABEL_TYPES.index(f.label_type)] > 0
        if f.class_id is not None:
            m &= self.classes.get(f.class_id, np.zeros(n, bool))
        if f.score_min is not None:
            m &= self.scores >= f.score_min  # NaN (unscored) compares False
        if f.score_max is not None:
            m &= self.scores <= f.score_max
        return m

    def _sort_key(self) -> np.ndarray:
        if self.column == NAME:
            return self.name_rank
        if self.column == LABELS:
            return self.counts.sum(axis=1)
        if self.column == TIME:
            return self.seconds
        return self.scores

    def apply(self) -> None:
        """Recompute the shown rows from the filter and the sort."""
        n = len(self.ids)
        if self.column is None:
            order = np.arange(n)
        else:
            key = self._sort_key().astype(np.float64)
            order = np.argsort(-key if self.descending else key, kind="stable")  # NaN sorts last either way
        self.rows = order[self._mask()[order]]
        self.positions = np.full(n, -1, np.int64)
        self.positions[self.rows] = np.arange(len(self.rows))

    def position(self, row: int) -> int:
        return int(self.positions[row]) if 0 <= row < len(self.positions) else -1

    def step(self, row: int, delta: int) -> int | None:
        """The row ``delta`` places from ``row`` in the shown order (clamped to the ends); from a
        row that is filtered out, the first (forward) or last shown row."""
        if not len(self.rows):
            return None
        p = self.position(row)
        if p < 0:
            return int(self.rows[0] if delta > 0 else self.rows[-1])
        return int(self.rows[min(max(p + delta, 0), len(self.rows) - 1)])

    def next_where(self, row: int, wanted: np.ndarray) -> int | None:
        """The first shown row after ``row`` (wrapping round) where ``wanted`` (per row) holds."""
        hits = np.flatnonzero(wanted[self.rows])
        if not len(hits):
            return None
        after = hits[hits > self.position(row)]
        return int(self.rows[after[0] if len(after) else hits[0]])


def document_classes(doc) -> set[int]:
    """Class ids of an open document's brush pixels, cells and boxes (what :class:`ImageFilter`
    filters by and the list's chips show). The project indexes only cells' and boxes' classes
    (brush pixels keep theirs inside PNG tiles), so pixel classes are known for images opened
    since the list was built."""
    from semirest.app.canvas.overlay import label_bounds

    labels = doc.labels
    out = {labels.block_class(g, cell) for g in (8, 16) for cell in labels.blocks[g]}
    bounds = label_bounds(doc.pixels, {})
    if bounds is not None:
        x0, y0, x1, y1 = bounds
        present = np.flatnonzero(np.bincount(doc.pixels[y0:y1, x0:x1].ravel()))
        out |= {int(k) for k in present if k}
    return out | {doc.box_classes.get(local) for local in doc.boxes}


CHIPS_SIZE = QSize(MAX_CHIPS * (CHIP_W + CHIP_GAP), CHIP_H)  # the list's icon size


def class_chips(colours: tuple[str, ...]) -> QIcon:
    """One small colour chip per class (at most :data:`MAX_CHIPS`; a last, grey chip stands for
    the rest), for a row's icon; a selected row shows the same colours (Qt's generated selected
    icon tinted them with the highlight)."""
    shown = colours[:MAX_CHIPS] if len(colours) <= MAX_CHIPS else (*colours[: MAX_CHIPS - 1], "#9a9a9a")
    pm = QPixmap(len(shown) * (CHIP_W + CHIP_GAP), CHIP_H)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setPen(QColor(0, 0, 0, 150))
    for i, c in enumerate(shown):
        p.setBrush(QColor(c))
        p.drawRect(i * (CHIP_W + CHIP_GAP), 0, CHIP_W - 1, CHIP_H - 1)
    p.end()
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pm, mode)
    return icon


class ImageListModel(QAbstractTableModel):
    """One row per shown image, in :attr:`order`'s order."""

    HEADERS = ("Image", "Labels", "Time", "Score")

    def __init__(self, session):
        super().__init__()
        self.session = session
        self._text: dict[int, tuple[str, str, str, str]] = {}  # row -> the four cells' text
        self._chips: dict[int, QIcon] = {}  # row -> its icon: class chips, or labelled / not
        self._chip_icons: dict[tuple[str, ...], QIcon] = {}  # one icon per set of class colours
        self._classes: list = self._read_classes()  # the project's LabelClass list, in list order
        self._scores: dict[int, float] = {}
        self._pending_scores: dict[int, float] | None = None
        self._score_timer = QTimer(self)
        self._score_timer.setSingleShot(True)
        self._score_timer.setInterval(SCORE_BATCH_MS)
        self._score_timer.timeout.connect(self.apply_pending_scores)
        self.order = self._new_order()

    def _new_order(self, before: ImageListOrder | None = None) -> ImageListOrder:
        s = self.session
        order = ImageListOrder([r.key for r in s.records], [r.id for r in s.records])
        try:
            classes = s.store.classes_by_image()
        except ProjectError:
            classes = {}
        for image_id, doc in s.docs.items():  # their brush pixels' classes too (see document_classes)
            classes[image_id] = document_classes(doc)
        for image_id, summary in s.summaries.items():
            row = order.row_of.get(image_id)
            if row is not None:
                order.set_summary(row, summary, classes.get(image_id, ()))
        order.set_scores(self._scores)
        if before is not None:
            order.column, order.descending, order.filter = before.column, before.descending, before.filter
        self._fill_seconds(order)
        order.apply()
        return order

    def _fill_seconds(self, order: ImageListOrder) -> None:
        if order.column == TIME:
            order.seconds = np.fromiter((self.session.seconds(int(i)) for i in order.ids), np.float64, len(order.ids))

    def _read_classes(self) -> list:
        try:
            return self.session.store.classes()
        except ProjectError:
            return []

    def set_classes(self, classes: list) -> None:
        """The project's classes changed (added, renamed, recoloured): the chips draw again."""
        self._classes = list(classes)
        self._chips.clear()
        self._chip_icons.clear()
        if len(self.order):
            self.dataChanged.emit(self.index(0, NAME), self.index(len(self.order) - 1, NAME), [Qt.ItemDataRole.DecorationRole])

    def row_classes(self, row: int) -> list:
        """The classes of record ``row``'s labels, in the class list's order."""
        return [k for k in self._classes if k.id in self.order.classes and self.order.classes[k.id][row]]

    def chips(self, row: int) -> QIcon:
        """Record ``row``'s icon, cached: its classes' colour chips, or one labelled (green) or
        unlabelled (grey) chip where no class is known."""
        icon = self._chips.get(row)
        if icon is None:
            colours = tuple(k.colour for k in self.row_classes(row))
            if not colours:
                colours = (LABELLED.name() if self.order.counts[row].any() else UNLABELLED.name(),)
            icon = self._chip_icons.get(colours)
            if icon is None:
                icon = self._chip_icons[colours] = class_chips(colours)
            self._chips[row] = icon
        return icon

    def records_reloaded(self) -> None:
        """The session read its image records again (images were added)."""
        self.beginResetModel()
        self._text.clear()
        self._chips.clear()
        self.order = self._new_order(self.order)
        self.endResetModel()

    # -- Qt's model interface -------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else 4

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def row_at(self, position: int) -> int:
        """The session's record index shown at list position ``position``."""
        return int(self.order.rows[position])

    def texts(self, row: int) -> tuple[str, str, str, str]:
        t = self._text.get(row)
        if t is None:
            rec = self.session.records[row]
            s = self.session.summaries.get(rec.id, LabelSummary())
            score = self.order.scores[row]
            t = (rec.key, describe(s), format_seconds(self.session.seconds(rec.id)), "" if np.isnan(score) else f"{score:.3f}")
            self._text[row] = t
        return t

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.texts(self.row_at(index.row()))[col]
        if role == Qt.ItemDataRole.DecorationRole and col == NAME:
            return self.chips(self.row_at(index.row()))
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= TIME:
            return RIGHT
        if role == Qt.ItemDataRole.ToolTipRole:
            rec = self.session.records[self.row_at(index.row())]
            by_type = self.session.seconds_by_type(rec.id)
            times = ", ".join(f"{t} {v:.1f} s" for t, v in by_type.items()) or "no time yet"
            names = [k.name for k in self.row_classes(self.row_at(index.row()))]
            kinds = f" ({', '.join(names)})" if names else ""
            return f"{rec.key}\n{rec.path}\n{describe(self.session.summaries.get(rec.id, LabelSummary()))}{kinds}\n{times}"
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """A header click: the one place (with :meth:`set_scores`) where the list is reordered."""
        self.apply_pending_scores(relayout=False)
        self.order.column = column if 0 <= column < 4 else None
        self.order.descending = order == Qt.SortOrder.DescendingOrder
        self._fill_seconds(self.order)
        self._relayout()

    # -- changes --------------------------------------------------------------------------------
    def _relayout(self) -> None:
        """Reorder the rows, moving the view's selection and current row with their images."""
        old = self.order.rows
        self.layoutAboutToBeChanged.emit()
        self.order.apply()
        if len(self.order.rows) != len(old):  # a score filter let rows in or out
            self.layoutChanged.emit()
            self.beginResetModel()
            self.endResetModel()
            return
        persistent = self.persistentIndexList()
        moved = []
        for idx in persistent:
            p = self.order.position(int(old[idx.row()]))
            moved.append(self.index(p, idx.column()) if p >= 0 else QModelIndex())
        self.changePersistentIndexList(persistent, moved)
        self.layoutChanged.emit()

    def set_filter(self, f: ImageFilter) -> None:
        if f == self.order.filter:
            return
        self.beginResetModel()
        self.order.filter = f
        self.order.apply()
        self.endResetModel()

    def set_scores(self, scores: dict[int, float]) -> None:
        """New scores of the chosen run; applied at most every :data:`SCORE_BATCH_MS` (they stream
        in while a run scores), or at once by a sort."""
        self._pending_scores = scores
        if not self._score_timer.isActive():
            self._score_timer.start()

    def apply_pending_scores(self, relayout: bool = True) -> None:
        scores, self._pending_scores = self._pending_scores, None
        self._score_timer.stop()
        if scores is None:
            return
        self._scores = dict(scores)
        if not self.order.set_scores(self._scores):
            return
        self._text.clear()  # the rows on screen format again when painted
        f = self.order.filter
        if relayout and (self.order.column == SCORE or f.score_min is not None or f.score_max is not None):
            self._relayout()
        elif len(self.order):
            self.dataChanged.emit(self.index(0, SCORE), self.index(len(self.order) - 1, SCORE))

    def refresh(self, image_id: int) -> None:
        """The labels of ``image_id`` changed."""
        row = self.order.row_of.get(image_id)
        if row is None:
            return
        doc = self.session.docs.get(image_id)
        if doc is not None:
            classes = document_classes(doc)
        else:
            classes = {k for k, flags in self.order.classes.items() if flags[row]}
        self.order.set_summary(row, self.session.summaries.get(image_id, LabelSummary()), classes)
        self._text.pop(row, None)
        self._chips.pop(row, None)
        p = self.order.position(row)
        if p >= 0:
            self.dataChanged.emit(self.index(p, 0), self.index(p, 3))

    def refresh_time(self, image_id: int) -> None:
        """The clock ticked on ``image_id``: its Time cell, if its text changed."""
        row = self.order.row_of.get(image_id)
        if row is None:
            return
        old = self.texts(row)
        text = format_seconds(self.session.seconds(image_id))
        if text == old[TIME]:
            return
        self._text[row] = (old[0], old[1], text, old[3])
        p = self.order.position(row)
        if p >= 0:
            self.dataChanged.emit(self.index(p, TIME), self.index(p, TIME))


class _ClassCombo(QComboBox):
    """The class filter; its entries are read from the project when it opens (classes can be
    renamed or added while the studio runs)."""

    def __init__(self, store):
        super().__init__()
        self.store = store
        self.reload()

    def reload(self) -> None:
        chosen = self.currentData()
        self.blockSignals(True)
        self.clear()
        self.addItem("any class", None)
        try:
            for k in self.store.classes():
                self.addItem(k.name, k.id)
        except ProjectError:
            pass
        self.setCurrentIndex(max(0, self.findData(chosen)))
        self.blockSignals(False)

    def showPopup(self) -> None:
        self.reload()
        super().showPopup()


class FilterBar(QWidget):
    """Name substring, labelled or not, label type, class and score range; Ctrl+F focuses the
    name box, Ctrl+G the go-to box."""

    changed = Signal(object)  # ImageFilter
    go_to = Signal(int)  # a record index (the "image N/M" of the status bar, minus one)

    def __init__(self, store, parent=None):
        super().__init__(parent)
        self.name = QLineEdit()
        self.name.setPlaceholderText("filter by name (Ctrl+F)")
        self.name.setClearButtonEnabled(True)
        self.labelled = QComboBox()
        for text, value in (("all images", None), ("labelled", True), ("unlabelled", False)):
            self.labelled.addItem(text, value)
        self.label_type = QComboBox()
        self.label_type.addItem("any type", None)
        for t in LABEL_TYPES:
            self.label_type.addItem(TYPE_NAMES.get(t, t), t)
        self.label_class = _ClassCombo(store)
        self.score_min = QLineEdit()
        self.score_max = QLineEdit()
        for w, text in ((self.score_min, "score ≥"), (self.score_max, "score ≤")):
            w.setPlaceholderText(text)
            w.setValidator(QDoubleValidator())
        self.go_to_box = QLineEdit()
        self.go_to_box.setPlaceholderText("go to # (Ctrl+G)")
        self.go_to_box.setValidator(QIntValidator(1, 10**9))
        for w in (self.labelled, self.label_type, self.label_class):
            w.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # Tab from the name box goes on to the list
            # shrink with the dock: three full-width combos kept the list dock so wide that at
            # 1024 px the canvas got 400 px
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(3)
        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(3)
        lay.addWidget(self.name, 0, 0, 1, 3)
        lay.addWidget(self.labelled, 1, 0)
        lay.addWidget(self.label_type, 1, 1)
        lay.addWidget(self.label_class, 1, 2)
        lay.addWidget(self.score_min, 2, 0)
        lay.addWidget(self.score_max, 2, 1)
        lay.addWidget(self.go_to_box, 2, 2)
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(FILTER_TYPING_MS)
        self._typing.timeout.connect(self.emit_filter)
        for w in (self.name, self.score_min, self.score_max):
            w.textChanged.connect(self._typed)
            w.returnPressed.connect(self.emit_filter)
        for w in (self.labelled, self.label_type, self.label_class):
            w.currentIndexChanged.connect(self._chose)
        self.go_to_box.returnPressed.connect(self._go)

    def _typed(self, _text: str) -> None:
        self._typing.start()

    def _chose(self, _index: int) -> None:
        self.emit_filter()

    @staticmethod
    def _number(box: QLineEdit) -> float | None:
        try:
            return float(box.text().replace(",", "."))
        except ValueError:
            return None

    def current(self) -> ImageFilter:
        return ImageFilter(self.name.text().strip(), self.labelled.currentData(), self.label_type.currentData(),
                           self.label_class.currentData(), self._number(self.score_min), self._number(self.score_max))

    def emit_filter(self) -> None:
        self._typing.stop()
        self.changed.emit(self.current())

    def _go(self) -> None:
        text = self.go_to_box.text()
        if text.isdigit():
            self.go_to.emit(int(text) - 1)
        self.go_to_box.clear()


class ImageListPanel(QWidget):
    """The filter bar and the list; clicking a row or moving the current row with the arrow
    keys opens that image."""

    image_chosen = Signal(int)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = ImageListModel(session)
        self.filter_bar = FilterBar(session.store)
        self.view = QTableView()
        self.view.setModel(self.model)
        h = self.view.horizontalHeader()
        h.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # the project's order until a header is clicked
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # arrow keys move the current image; letters are the window's shortcuts (Qt delivers a
        # shortcut before the view's type-to-search)
        self.view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setShowGrid(False)
        self.view.setWordWrap(False)  # else long keys wrap at '/' and show as 'test/...'
        # keys share their start (test/...) and end with what tells them apart (the defect type
        # and number), so the start is what gives way
        self.view.setTextElideMode(Qt.TextElideMode.ElideLeft)
        self.view.setAlternatingRowColors(True)
        self.view.setIconSize(CHIPS_SIZE)  # room for a row's class chips (smaller icons are not stretched)
        # fixed widths: ResizeToContents measures up to 1,000 rows (data() calls) on every reorder
        fm = self.view.fontMetrics()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, sample in ((LABELS, "px 12.3k · 8: 12"), (TIME, "12:34"), (SCORE, "Score ▼")):
            h.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            h.resizeSection(col, fm.horizontalAdvance(sample) + 16)
        self._choosing = False  # the selection is being set to the session's image (no signal back)
        self.view.selectionModel().currentRowChanged.connect(self._current_row_changed)
        self._indicator = self._indicator_before = -1
        h.sortIndicatorChanged.connect(self._remember_sort_section)
        h.sectionClicked.connect(self._scores_sort_high_first)
        self.filter_bar.changed.connect(self.set_filter)
        self.filter_bar.go_to.connect(self._go_to)
        self.model.modelReset.connect(self._show_current)
        self.progress = QLabel()
        self.shown_label = QLabel()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.filter_bar)
        lay.addWidget(self.progress)
        lay.addWidget(self.view)
        lay.addWidget(self.shown_label)
        self.update_progress()

    def _remember_sort_section(self, section: int, _order) -> None:
        self._indicator_before, self._indicator = self._indicator, section

    def _scores_sort_high_first(self, section: int) -> None:
        """A click on Score that starts sorting by it shows the most anomalous images first (Qt's
        first click sorts ascending, which put the least anomalous on top); further clicks toggle.
        Sorting asked for in code (``sort_by_score``) is left as asked."""
        h = self.view.horizontalHeader()
        if section == SCORE and self._indicator_before != SCORE and h.sortIndicatorOrder() == Qt.SortOrder.AscendingOrder:
            self.view.sortByColumn(SCORE, Qt.SortOrder.DescendingOrder)

    def _current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._choosing or not current.isValid():
            return
        row = self.model.row_at(current.row())
        if row != self.session.index:
            self.image_chosen.emit(row)

    def _go_to(self, row: int) -> None:
        if 0 <= row < len(self.session.records):
            self.image_chosen.emit(row)

    def _show_current(self) -> None:
        self.select_row(self.session.index)

    def select_row(self, row: int) -> None:
        """Show the session's image ``row`` as the list's current row (nothing where it is filtered out)."""
        p = self.model.order.position(row)
        self._choosing = True
        try:
            sm = self.view.selectionModel()
            if p < 0:
                sm.clearSelection()
                sm.setCurrentIndex(QModelIndex(), QItemSelectionModel.SelectionFlag.NoUpdate)
            else:
                idx = self.model.index(p, 0)
                sm.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
                self.view.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)
        finally:
            self._choosing = False
        self.update_shown()

    def set_scores(self, scores: dict[int, float]) -> None:
        self.model.set_scores(scores)

    def set_filter(self, f: ImageFilter) -> None:
        self.model.set_filter(f)

    def sort_by_score(self, most_anomalous_first: bool = True) -> None:
        self.view.sortByColumn(SCORE, Qt.SortOrder.DescendingOrder if most_anomalous_first else Qt.SortOrder.AscendingOrder)

    def visible_order(self) -> list[int]:
        """Session record indices in the order shown."""
        self.model.apply_pending_scores()
        return [int(r) for r in self.model.order.rows]

    # -- navigation (the window's A / D, U, S) --------------------------------------------------
    def step(self, delta: int) -> int | None:
        """The image ``delta`` places from the open one in the list's order and filter."""
        return self.model.order.step(self.session.index, delta)

    def next_unlabelled(self) -> int | None:
        order = self.model.order
        return order.next_where(self.session.index, ~order.labelled)

    def next_scored_above(self, threshold: float) -> int | None:
        self.model.apply_pending_scores()
        order = self.model.order
        return order.next_where(self.session.index, order.scores > threshold)

    def focus_filter(self) -> None:
        self.filter_bar.name.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_bar.name.selectAll()

    def focus_go_to(self) -> None:
        self.filter_bar.go_to_box.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def clear_filter(self) -> None:
        bar = self.filter_bar
        for w in (bar.name, bar.score_min, bar.score_max):
            w.clear()
        for w in (bar.labelled, bar.label_type, bar.label_class):
            w.setCurrentIndex(0)
        bar.emit_filter()

    def update_progress(self) -> None:
        done = int(self.model.order.labelled.sum())
        self.progress.setText(f"{done} of {len(self.session.records)} images labelled")
        self.update_shown()

    def update_shown(self) -> None:
        n, shown = len(self.session.records), len(self.model.order)
        self.shown_label.setText("" if n == shown else f"{shown} of {n} images shown (filter)")
        self.shown_label.setVisible(n != shown)

