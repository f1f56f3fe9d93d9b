"""The canvas: a QGraphicsView with zoom, pan and ordered layers, that hands mouse input to the
current tool. It knows the current :class:`ImageDocument` only through its change callbacks.

Zoom: an image is shown fitted to the view; it stays fitted (a window resize fits it again) until
the user zooms. With ``keep_zoom`` a zoomed view keeps its zoom and centre across image switches.

Input made while the full image is still decoding (a preview on screen) is queued with its tool
and replayed when the full image arrives (or when the user leaves the image first), so no stroke
is refused; a dashed trail shows it meanwhile. Keyboard edits made meanwhile (undo, redo, rotate,
delete, accepted suggestions, Escape) join the same queue, so they act on the strokes before them
in the order they were made."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainterPath, QPen, QTransform, QWheelEvent
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene, QGraphicsSimpleTextItem, QGraphicsView

from semirest.app.canvas.layers import (
    BOX_COLOR,
    Z_CURSOR,
    Z_HEATMAP,
    Z_IMAGE,
    Z_LABELS,
    Z_REFERENCE,
    ArrayImageItem,
    BrushCursorItem,
    ClassTagItem,
    GridItem,
    LabelPalette,
    ProposalLayer,
    RotatedBoxItem,
)
from semirest.app.canvas.overlay import compose_labels, compose_reference, label_bounds, label_regions
from semirest.app.document import Change, ImageDocument
from semirest.core.labels.classes import PALETTE

BRUSH_SIZES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 200, 256)
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0
REGION_TAGS_MS = 250  # pixel and cell regions are tagged again this long after the last edit (not per dab)
MAX_REGION_TAGS = 100  # the largest regions of an image get a tag; thousands of specks would hide it


@dataclass(frozen=True)
class QueuedInput:
    """One mouse event made while the full image was loading, replayed through ``tool`` later."""

    tool: object
    brush_size: int
    kind: str  # "press", "move" or "release"
    pos: QPointF  # image coordinates
    button_held: bool
    modifiers: Qt.KeyboardModifier
    label_class: int  # the class picked (keys 1-9) when the event was made
    press_mark: object = None  # a press: where the time tracker noted it (``CanvasView.mark_press``)

    def buttons(self) -> Qt.MouseButton:
        return Qt.MouseButton.LeftButton if self.button_held else Qt.MouseButton.NoButton


@dataclass(frozen=True)
class QueuedEdit:
    """A keyboard or panel edit made while the full image was loading, run in order after the
    strokes made before it."""

    run: Callable[[], object]
    text: str  # what it does, for the status bar
    label_class: int


class CanvasView(QGraphicsView):
    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int)  # image pixel under the mouse
    tool_state_changed = Signal()  # brush size etc. changed: refresh the status bar
    command_done = Signal(object)  # a tool finished an edit (an undo Command): the session records it
    message = Signal(str)  # why an edit was refused, for the status bar

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QColor(38, 40, 44))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setOptimizationFlags(
            QGraphicsView.OptimizationFlag.DontSavePainterState | QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing
        )
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.image_layer = ArrayImageItem(Z_IMAGE, QImage.Format.Format_RGB32)
        self.image_layer.smooth_when_small = True
        self.reference_layer = ArrayImageItem(Z_REFERENCE)
        self.label_layer = ArrayImageItem(Z_LABELS)
        # the anomaly heatmap of a trained model (live during training, or a finished run's)
        self.heatmap_layer = ArrayImageItem(Z_HEATMAP)
        self.heatmap_layer.smooth_always = True
        self.grid_item = GridItem()
        self.proposal_layer = ProposalLayer()  # the model's box suggestions (panels/proposals)
        self.brush_cursor = BrushCursorItem()
        self.placeholder = QGraphicsSimpleTextItem()
        self.placeholder.setBrush(QColor(230, 230, 230))
        f = QFont()
        f.setPointSize(13)
        self.placeholder.setFont(f)
        for it in (self.image_layer, self.reference_layer, self.label_layer, self.heatmap_layer, self.grid_item, self.proposal_layer, self.brush_cursor, self.placeholder):
            self.scene().addItem(it)
        self.box_items: dict[int, RotatedBoxItem] = {}
        self.class_colours: dict[int, QColor] = {}  # class id -> colour labels of that class are drawn in
        self.class_names: dict[int, str] = {}  # class id -> the name its tags show
        self.palette = LabelPalette()  # pixel and cell colours by class id
        self.box_tags: dict[int, ClassTagItem] = {}  # box local id -> its class tag
        self.region_tags: list[ClassTagItem] = []  # one per connected pixel or cell region
        self._region_timer = QTimer(self)
        self._region_timer.setSingleShot(True)
        self._region_timer.setInterval(REGION_TAGS_MS)
        self._region_timer.timeout.connect(self.refresh_region_tags)
        self.selected_box: int | None = None
        self.document: ImageDocument | None = None
        self.loading = False  # the full image is still being decoded (a preview is shown)
        self.tool = None
        self.brush_size = 12
        self._label_array: np.ndarray | None = None  # the current image's label overlay
        self._label_buffer: np.ndarray | None = None  # kept across images (see _clean_label_buffer)
        self._label_dirty: tuple[int, int, int, int] | None = None  # where the buffer is not zero
        self._pan_from: QPointF | None = None
        self._space_down = False
        self.fitted = True  # the image fills the view and follows its size until the user zooms
        self.keep_zoom = False  # image switches keep a zoomed view's zoom and centre
        self.queued: list[QueuedInput | QueuedEdit] = []  # input made while the full image loads
        self._queued_pressed = False
        self._replaying = False
        # the time tracker's note of the press under way, and its replay: a queued stroke's edit
        # happens when the full image has loaded, but its time begins at its own press
        self.mark_press: Callable[[], object] = lambda: None
        self.replay_press: Callable[[object], None] = lambda mark: None
        self.queue_trail = QGraphicsPathItem()
        pen = QPen(QColor(255, 235, 0), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.queue_trail.setPen(pen)
        self.queue_trail.setZValue(Z_CURSOR)
        self.scene().addItem(self.queue_trail)

    # -- document -------------------------------------------------------------------------------
    def set_document(
        self,
        doc: ImageDocument | None,
        bgra: np.ndarray | None,
        reference: np.ndarray | None,
        error: str | None = None,
        preview: np.ndarray | None = None,
        loading: bool = False,
    ) -> None:
        """Show an image with its labels (or an error text when it cannot be shown).

        With ``loading``, the full image is still being decoded: ``preview`` (a smaller BGRA
        version, or None) is stretched over the image's full size so labels, which always live
        at image resolution, stay aligned; :meth:`show_full_image` swaps the image in later.
        Input made meanwhile is queued (:meth:`show_full_image` applies it)."""
        if self.queued and doc is self.document:
            self.apply_queued_input()
        elif self.queued:
            edits = sum(isinstance(q, QueuedEdit) for q in self.queued)
            self.message.emit(f"{len(self._queued_strokes())} strokes and {edits} other edits made while the image was loading "
                              "were not applied: the image file's size differs from its preview.")
            self._drop_queue()
        keep = self.keep_zoom and not self.fitted and self.document is not None and doc is not None
        if keep:
            kept_transform = self.transform()
            kept_centre = self.mapToScene(self.viewport().rect().center())
        if self.document is not None and self._on_change in self.document.listeners:
            self.document.listeners.remove(self._on_change)
        self.select_box(None)
        for it in (*self.box_items.values(), *self.box_tags.values()):
            self.scene().removeItem(it)
        self.box_items.clear()
        self.box_tags.clear()
        self.document = doc
        self.loading = loading
        if loading and preview is not None and doc is not None:
            self._show_image(preview, doc.hw)
        else:
            self._show_image(None if loading else bgra, None)
        self.set_reference(reference)
        if doc is not None:
            h, w = doc.hw
            self._label_array = self._clean_label_buffer((h, w))
            bounds = label_bounds(doc.pixels, doc.cells)
            if bounds is not None:
                compose_labels(self._label_array, doc.pixels, doc.cells, bounds, self.palette)
                self._mark_dirty(bounds)
            self.label_layer.set_array(self._label_array)
            for local, box in doc.boxes.items():
                self._sync_box(local)
            doc.listeners.append(self._on_change)
            self.scene().setSceneRect(QRectF(0, 0, w, h))
            self.placeholder.setVisible(False)
        else:
            self._label_array = None
            self.label_layer.set_array(None)
            self.placeholder.setText(error or ("Loading…" if loading else "No image"))
            self.placeholder.setPos(0, 0)
            self.placeholder.setVisible(True)
            self.scene().setSceneRect(self.placeholder.boundingRect().adjusted(-20, -20, 20, 20))
        # the old image's region tags go now; this one's come with the timer, so that finding its
        # regions (up to ~55 ms on a 4096x4096 image labelled throughout) does not delay showing it
        self._clear_region_tags()
        if doc is not None:
            self._region_timer.start()
        self.heatmap_layer.set_array(None)
        self.grid_item.configure(self.grid_item.grid, doc.hw if doc else None)
        if keep:
            self.setTransform(kept_transform)
            self.centerOn(kept_centre)
            self._zoom_updated()
        else:
            self.fit()

    def _show_image(self, bgra: np.ndarray | None, stretch_to_hw: tuple[int, int] | None) -> None:
        """Draw ``bgra`` in the image layer, scaled to cover ``stretch_to_hw`` image pixels."""
        self.image_layer.set_array(bgra)
        t = QTransform()
        if bgra is not None and stretch_to_hw is not None:
            t.scale(stretch_to_hw[1] / bgra.shape[1], stretch_to_hw[0] / bgra.shape[0])
        self.image_layer.setTransform(t)
        self.image_layer.smooth_always = not t.isIdentity()

    def set_heatmap(self, argb: np.ndarray | None) -> None:
        """Show an ARGB32 heatmap overlay stretched over the current image (None hides it)."""
        if argb is None or self.document is None:
            self.heatmap_layer.set_array(None)
            return
        self.heatmap_layer.set_array(argb)
        h, w = self.document.hw
        self.heatmap_layer.setTransform(QTransform.fromScale(w / argb.shape[1], h / argb.shape[0]))

    def show_full_image(self, bgra: np.ndarray) -> None:
        """Replace the preview by the full image, keeping zoom, pan, labels and the tool state,
        and apply the input queued meanwhile."""
        self._show_image(bgra, None)
        self.loading = False
        self.apply_queued_input()

    def _queued_strokes(self) -> list[QueuedInput]:
        return [q for q in self.queued if isinstance(q, QueuedInput) and q.kind == "press"]

    def _drop_queue(self) -> None:
        self.queued = []
        self._queued_pressed = False
        self.queue_trail.setPath(QPainterPath())

    def _queue(self, kind: str, pos: QPointF, event) -> None:
        self.queued.append(QueuedInput(self.tool, self.brush_size, kind, pos, kind != "release", event.modifiers(),
                                       self.document.label_class, self.mark_press() if kind == "press" else None))
        path = self.queue_trail.path()
        if kind == "press":
            path.moveTo(pos)
            path.lineTo(pos + QPointF(0.01, 0.01))  # a click shows as a dot
        else:
            path.lineTo(pos)
        self.queue_trail.setPath(path)

    def edit_or_queue(self, edit: Callable[[], object], text: str) -> object:
        """Run a keyboard or panel edit now; while the full image loads (its labels on screen),
        queue it behind the strokes made so far and say so in the status bar. Returns the edit's
        result, or None when it was queued."""
        if not self._queues_input() or self._replaying:
            return edit()
        self.queued.append(QueuedEdit(edit, text, self.document.label_class))
        n = sum(isinstance(q, QueuedEdit) for q in self.queued)
        self.message.emit(f"{text}: done when the full image has loaded ({n} edit{'s' if n > 1 else ''} waiting, "
                          f"{len(self._queued_strokes())} strokes).")
        return None

    def apply_queued_input(self) -> None:
        """Replay the input queued while the full image loaded in the order it was made: each
        mouse event through the tool, brush size and class it was made with, each keyboard edit
        as it was asked for; the tool, brush size and class in use are kept."""
        if not self.queued or self.document is None:
            self._drop_queue()
            return
        queued, brush, doc = self.queued, self.brush_size, self.document
        label_class = doc.label_class
        self._drop_queue()
        self._replaying = True
        try:
            for q in queued:
                doc.label_class = q.label_class
                if isinstance(q, QueuedEdit):
                    q.run()
                    continue
                self.brush_size = q.brush_size
                if q.kind == "press":
                    self.replay_press(q.press_mark)
                getattr(q.tool, q.kind)(q.pos, q)
        finally:
            self._replaying = False
            self.brush_size = brush
            doc.label_class = label_class

    def _clean_label_buffer(self, hw: tuple[int, int]) -> np.ndarray:
        """An all-zero label overlay of size ``hw``: the previous image's, cleared only where it
        was drawn, when the size matches. A fresh 64 MB array for a 4096x4096 image costs page
        faults wherever labels are composed (80+ ms for a large labelled region on a busy machine);
        the reused one's pages are already mapped."""
        buf = self._label_buffer
        if buf is None or buf.shape != tuple(hw):
            buf = self._label_buffer = np.zeros(hw, dtype=np.uint32)
        elif self._label_dirty is not None:
            x0, y0, x1, y1 = self._label_dirty
            buf[max(0, y0) : y1, max(0, x0) : x1] = 0
        self._label_dirty = None
        return buf

    def _mark_dirty(self, rect) -> None:
        d = self._label_dirty
        self._label_dirty = tuple(rect) if d is None else (min(d[0], rect[0]), min(d[1], rect[1]), max(d[2], rect[2]), max(d[3], rect[3]))

    def set_reference(self, mask: np.ndarray | None) -> None:
        self.reference_layer.set_array(None if mask is None else compose_reference(mask))

    def _on_change(self, change: Change) -> None:
        doc = self.document
        if change.kind in ("pixels", "blocks") and self._label_array is not None:
            compose_labels(self._label_array, doc.pixels, doc.cells, change.rect, self.palette)
            self._mark_dirty(change.rect)
            x0, y0, x1, y1 = change.rect
            self.label_layer.update(QRectF(x0, y0, x1 - x0, y1 - y0))
            self._region_timer.start()
        elif change.kind == "boxes":
            self._sync_box(change.box_id)

    def _sync_box(self, local: int) -> None:
        box = self.document.boxes.get(local) if self.document else None
        item = self.box_items.get(local)
        if box is None:
            if item is not None:
                self.scene().removeItem(item)
                del self.box_items[local]
            tag = self.box_tags.pop(local, None)
            if tag is not None:
                self.scene().removeItem(tag)
            if self.selected_box == local:
                self.selected_box = None
            return
        if item is None:
            item = self.box_items[local] = RotatedBoxItem(local, box)
            item.set_handle_scale(1.0 / self.zoom)
            self.scene().addItem(item)
        else:
            item.set_box(box)
        item.set_colour(self._box_colour(local))
        self._sync_box_tag(local)

    def _box_class(self, local: int) -> int | None:
        return self.document.box_classes.get(local) if self.document is not None else None

    def _box_colour(self, local: int) -> QColor:
        return self.class_colours.get(self._box_class(local), BOX_COLOR)

    def _class_name(self, class_id: int | None) -> str:
        return self.class_names.get(class_id, f"class {class_id}")

    def _sync_box_tag(self, local: int) -> None:
        """The box's class name at its top-left corner on screen (the corner nearest the view's
        top-left), hidden while the box's short side is under ``MIN_SCREEN_PX`` on screen."""
        box = self.document.boxes[local]
        name, colour = self._class_name(self._box_class(local)), self._box_colour(local)
        tag = self.box_tags.get(local)
        if tag is None:
            tag = self.box_tags[local] = ClassTagItem(name, colour, class_id=self._box_class(local))
            self.scene().addItem(tag)
        tag.set_class(name, colour)
        corners = box.corners()
        x, y = corners[np.argmin(corners[:, 0] + corners[:, 1])]
        tag.setPos(float(x), float(y))
        tag.region_px = min(box.width, box.height)
        tag.show_at_zoom(self.zoom)

    def _clear_region_tags(self) -> None:
        for tag in self.region_tags:
            self.scene().removeItem(tag)
        self.region_tags = []

    def refresh_region_tags(self) -> None:
        """A class tag at the top-left of each connected region of brush pixels and of cells
        (the :data:`MAX_REGION_TAGS` largest), each hidden while its region is tiny on screen."""
        self._region_timer.stop()
        self._clear_region_tags()
        doc = self.document
        if doc is None:
            return
        regions = label_regions(doc.pixels, doc.cells, label_bounds(doc.pixels, {}))
        zoom = self.zoom
        for r in regions[:MAX_REGION_TAGS]:
            x0, y0, x1, y1 = r.rect
            tag = ClassTagItem(self._class_name(r.class_id), self._class_colour(r.class_id), max(x1 - x0, y1 - y0), r.class_id, r.kind)
            tag.setPos(float(x0), float(y0))
            tag.show_at_zoom(zoom)
            self.scene().addItem(tag)
            self.region_tags.append(tag)

    def _class_colour(self, class_id: int) -> QColor:
        c = self.class_colours.get(class_id)
        return c if c is not None else QColor(PALETTE[(class_id - 1) % len(PALETTE)])

    def set_class_colours(self, colours: dict[int, str], names: dict[int, str] | None = None) -> None:
        """The project's class colours ("#rrggbb" by class id) and names: every box, brush pixel
        and cell is drawn in its class's colour and tagged with its class's name."""
        self.class_colours = {int(k): QColor(c) for k, c in colours.items()}
        if names is not None:
            self.class_names = {int(k): n for k, n in names.items()}
        self.palette = LabelPalette({int(k): c for k, c in colours.items()})
        for local, item in self.box_items.items():
            item.set_colour(self._box_colour(local))
            self._sync_box_tag(local)
        doc = self.document
        if doc is not None and self._label_array is not None:
            bounds = label_bounds(doc.pixels, doc.cells)
            if bounds is not None:
                compose_labels(self._label_array, doc.pixels, doc.cells, bounds, self.palette)
                self._mark_dirty(bounds)
                self.label_layer.update()
        self.refresh_region_tags()

    def select_box(self, local: int | None) -> None:
        if self.selected_box in self.box_items:
            self.box_items[self.selected_box].set_selected(False)
        self.selected_box = local if local in self.box_items else None
        if self.selected_box is not None:
            self.box_items[self.selected_box].set_selected(True)

    # -- tools ----------------------------------------------------------------------------------
    def set_tool(self, tool) -> None:
        if self.tool is not None:
            self.tool.deactivate()
        self.tool = tool
        tool.activate()
        self.viewport().setCursor(tool.cursor)
        self.tool_state_changed.emit()

    def set_brush_size(self, size: int) -> None:
        self.brush_size = max(BRUSH_SIZES[0], min(BRUSH_SIZES[-1], int(size)))
        self.brush_cursor.set_size(self.brush_size)
        self.tool_state_changed.emit()

    def grow_brush(self, steps: int) -> None:
        if steps > 0:
            bigger = [s for s in BRUSH_SIZES if s > self.brush_size]
            self.set_brush_size(bigger[0] if bigger else BRUSH_SIZES[-1])
        else:
            smaller = [s for s in BRUSH_SIZES if s < self.brush_size]
            self.set_brush_size(smaller[-1] if smaller else BRUSH_SIZES[0])

    def show_grid(self, grid: int) -> None:
        self.grid_item.configure(grid, self.document.hw if self.document else None)

    # -- zoom -----------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, z: float, anchor_view: QPointF | None = None) -> None:
        self.fitted = False
        z = max(MIN_ZOOM, min(MAX_ZOOM, z))
        f = z / self.zoom
        if anchor_view is None:
            old = self.transformationAnchor()
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
            self.scale(f, f)
            self.setTransformationAnchor(old)
        else:
            self.scale(f, f)
        self._zoom_updated()

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * 1.25)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / 1.25)

    def fit(self) -> None:
        """The whole image in the view; it follows the view's size until the user zooms."""
        self.fitted = True
        r = self.scene().sceneRect()
        if r.isEmpty():
            return
        self.resetTransform()
        self.fitInView(r.adjusted(-8, -8, 8, 8), Qt.AspectRatioMode.KeepAspectRatio)
        self._zoom_updated()

    def _zoom_updated(self) -> None:
        s = 1.0 / max(self.zoom, 1e-6)
        for it in self.box_items.values():
            it.set_handle_scale(s)
        for tag in (*self.box_tags.values(), *self.region_tags):
            tag.show_at_zoom(self.zoom)
        self.zoom_changed.emit(self.zoom)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.fitted:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.fitted = False
            pos = event.position().toPoint()
            anchor = self.mapToScene(pos)
            z = max(MIN_ZOOM, min(MAX_ZOOM, self.zoom * (1.2**steps)))
            f = z / self.zoom
            self.scale(f, f)
            # keep the image point under the mouse where it was
            d = self.mapFromScene(anchor) - pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + d.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() + d.y())
            self._zoom_updated()
        event.accept()

    # -- mouse ----------------------------------------------------------------------------------
    def _image_pos(self, event) -> QPointF:
        return self.mapToScene(event.position().toPoint()) if hasattr(event, "position") else self.mapToScene(event.pos())

    def _wants_pan(self, event: QMouseEvent) -> bool:
        return event.button() == Qt.MouseButton.MiddleButton or (event.button() == Qt.MouseButton.LeftButton and self._space_down)

    def _queues_input(self) -> bool:
        """True while the full image loads and its labels are on screen: input waits for it."""
        return self.loading and self.document is not None and self.tool is not None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._wants_pan(event):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.tool is not None and event.button() == Qt.MouseButton.LeftButton:
            if self._queues_input():
                self._queue("press", self._image_pos(event), event)
                self._queued_pressed = True
                return
            self.tool.press(self._image_pos(event), event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            d = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            return
        pos = self._image_pos(event)
        self.cursor_moved.emit(int(pos.x() // 1), int(pos.y() // 1))
        if self._queued_pressed and self._queues_input():
            self._queue("move", pos, event)
            return
        if self.tool is not None:
            self.tool.move(pos, event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self.viewport().setCursor(self.tool.cursor if self.tool else Qt.CursorShape.ArrowCursor)
            return
        if self.tool is not None and event.button() == Qt.MouseButton.LeftButton:
            if self._queued_pressed:
                self._queued_pressed = False
                if self._queues_input():
                    self._queue("release", self._image_pos(event), event)
                    return
            self.tool.release(self._image_pos(event), event)

    def leaveEvent(self, event) -> None:
        self.brush_cursor.setVisible(False)
        super().leaveEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            return
        if event.key() == Qt.Key.Key_Escape and self.tool is not None:
            if self.queued and self._queues_input():  # cancels the queued drag it follows
                self.edit_or_queue(self.tool.cancel, "Cancel")
            else:
                self.tool.cancel()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self.viewport().setCursor(self.tool.cursor if self.tool else Qt.CursorShape.ArrowCursor)
            return
        super().keyReleaseEvent(event)

    def can_edit_soon(self) -> bool:
        """True if the current image may be edited now or once its full image has loaded (an
        edit made meanwhile is queued); otherwise says why in the status bar."""
        if self._queues_input() and self.document.editable:
            return True
        return self.can_edit()

    def can_edit(self) -> bool:
        """True if the current image may be edited; otherwise says why in the status bar."""
        if self.document is None:
            self.message.emit("The image's size is known only once it has loaded: label it when it is shown."
                              if self.loading else "This image cannot be labelled (it could not be opened).")
            return False
        if self.loading and not self._replaying:
            self.message.emit("The full image is still loading: this edit cannot wait for it; make it when the image is shown.")
            return False
        if not self.document.editable:
            self.message.emit("The project is read-only: labels cannot be changed.")
            return False
        return True
