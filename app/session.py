"""The labeling session: which image is open, its document and history, saving and timing.

The main window only wires actions to these methods; the canvas and tools only talk to the
document of the current image. Documents of recently visited images are kept (with their undo
histories) so that undo still works after going back to an image; a document with an edit the
project could not save is never dropped.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from itertools import islice

import cv2
import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from semirest.app.canvas.view import CanvasView
from semirest.app.document import ImageDocument
from semirest.app.image_cache import ImageCache, LoadedImage
from semirest.app.timing import TimeTracker
from semirest.app.undo import BoxAddCommand, Command, HistoryBook
from semirest.core.data.images import ImageReadError
from semirest.core.labels.classes import DEFAULT_CLASS_ID
from semirest.core.labels.image_labels import LABEL_TYPES
from semirest.core.project.previews import PreviewStore, needs_preview, preview_folder
from semirest.core.project.store import ImageRecord, LabelSummary, ProjectError, ProjectStore, ProjectWriteError, TimeSpan

MAX_KEPT_PIXELS = 64 * 2**20  # label pixels of documents kept for undo (uint8 each)
SWEEP_BUDGET_S = 0.002  # the preview sweep's share of one event-loop turn (every 400 ms): 0.5 % of a core
SWEEP_CHUNK = 64  # records whose paths are resolved at a time


def _nearest_first(i: int, n: int):
    """0..n-1 by distance from i: i, i+1, i-1, i+2, i-2, ..."""
    yield from (j for d in range(n) for j in ((i + d, i - d) if d else (i,)) if 0 <= j < n)


class LabelingSession(QObject):
    image_changed = Signal(int)  # index in records
    summary_changed = Signal(int)  # image id
    save_state_changed = Signal()
    message = Signal(str)

    def __init__(self, store: ProjectStore, canvas: CanvasView, annotator: str, clock=time.monotonic):
        super().__init__()
        self.store = store
        self.canvas = canvas
        self.records: list[ImageRecord] = store.images()
        self.index = -1
        self.cache = ImageCache(previews=PreviewStore(preview_folder(store.path), writable=not store.read_only))
        self.book = HistoryBook()
        self.docs: OrderedDict[int, ImageDocument] = OrderedDict()
        self.loaded: LoadedImage | None = None
        self.summaries: dict[int, LabelSummary] = store.summaries()
        self.tracker = TimeTracker(self._write_span, annotator, clock)
        self.tracker.totals = store.time_totals()
        canvas.mark_press, canvas.replay_press = self.tracker.press_mark, self.tracker.replay_press
        self._pending_spans: list[TimeSpan] = []
        self.save_error: str | None = None
        canvas.command_done.connect(self._canvas_edit)
        self._retry = QTimer(self)
        self._retry.setInterval(2000)
        self._retry.timeout.connect(self.retry_saves)
        self._loading = None  # the decoding job of the full image while its preview is shown
        self._ahead: tuple[int, ...] = ()
        # make the missing previews in the background, nearest images first, one at a time; the
        # check of which files need one (two file stats each) is spread over the event loop's turns
        self._sweep_todo: deque = deque()
        self._sweep_rows = None  # record indices not yet queued, nearest the open image first
        self._sweep = QTimer(self)
        self._sweep.setInterval(400)
        self._sweep.timeout.connect(self._sweep_step)
        self._sweep.start()

    # -- navigation -----------------------------------------------------------------------------
    @property
    def record(self) -> ImageRecord | None:
        return self.records[self.index] if 0 <= self.index < len(self.records) else None

    @property
    def document(self) -> ImageDocument | None:
        return self.canvas.document

    def open_index(self, index: int) -> None:
        """Show image ``index`` without waiting for a large file to decode: if it was not read
        ahead, its preview (or a "Loading…" text) is shown at once and the full image replaces it
        when the foreground lane has decoded it (``_on_full_image_ready``)."""
        if not self.records or not (0 <= index < len(self.records)):
            return
        self.canvas.apply_queued_input()  # strokes made on this image's preview are its labels
        if self.canvas.tool is not None:
            self.canvas.tool.cancel()
        forward = index >= self.index
        self.index = index
        rec = self.records[index]
        path = self.store.image_path(rec)
        self._loading = None
        img = self.cache.lookup(path)
        if img is None and not needs_preview(path):
            img = self.cache.get(path)  # a small file decodes in a few ms: no loading state
        if img is not None:
            self._show_full(img)
        else:
            self._show_preview(rec, path)
            self._loading = job = self.cache.request(path)
            job.signals.finished.connect(lambda p=str(path): self._on_full_image_ready(p))  # queued to this thread
            if job.ended():  # it finished before the connection: its signal is gone
                QTimer.singleShot(0, lambda p=str(path): self._on_full_image_ready(p))
        self.tracker.set_image(rec.id)
        self._ahead = (index + 1, index - 1) if forward else (index - 1, index + 1)  # direction of travel first
        if img is not None:  # else after the full image: read-ahead must not slow it down
            self._read_ahead()
        self.image_changed.emit(index)
        if img is not None and img.error:
            self.message.emit(img.error)

    def _read_ahead(self) -> None:
        n = len(self.records)
        self.cache.prefetch(self.store.image_path(self.records[j]) for j in self._ahead if 0 <= j < n)

    def _show_full(self, img: LoadedImage) -> None:
        rec = self.records[self.index]
        self.loaded = img
        doc, reference = None, None
        if img.bgra is not None:
            hw = img.hw
            if rec.hw != hw:
                self._safely(lambda: self.store.set_image_size(rec.id, hw[1], hw[0]))
                self.records[self.index] = rec = self.store.image(rec.id)
            doc = self._document(rec, hw)
            reference = self._reference(rec, hw)
        self.canvas.set_document(doc, img.bgra, reference if self.reference_visible else None, img.error)
        self.reference_mask = reference

    def _show_preview(self, rec: ImageRecord, path) -> None:
        self.loaded = None
        preview = self.cache.preview(path)
        hw = preview.full_hw if preview is not None else rec.hw
        doc = self._document(rec, hw) if hw else None
        reference = self._reference(rec, hw) if hw else None
        bgra = None
        if preview is not None:
            code = cv2.COLOR_GRAY2BGRA if preview.image.ndim == 2 else cv2.COLOR_BGR2BGRA
            bgra = cv2.cvtColor(preview.image, code)
        self.canvas.set_document(doc, None, reference if self.reference_visible else None, preview=bgra, loading=True)
        self.reference_mask = reference

    def _on_full_image_ready(self, path: str) -> None:
        rec, job = self.record, self._loading
        if rec is None or job is None or str(self.store.image_path(rec)) != path or not job.done():
            return  # the inspector moved on; the decoded image stays in the cache
        self._loading = None
        img: LoadedImage = job.result()
        doc = self.canvas.document
        if img.bgra is not None and doc is not None and doc.hw == tuple(img.hw):
            if rec.hw != doc.hw:  # first full view: remember the size
                self._safely(lambda: self.store.set_image_size(rec.id, doc.hw[1], doc.hw[0]))
                self.records[self.index] = self.store.image(rec.id)
            self.loaded = img
            self.canvas.show_full_image(img.bgra)  # keeps the zoom the inspector may have set
        else:  # size unknown before, or the file changed size or became unreadable
            self._show_full(img)
        self.image_changed.emit(self.index)
        self._read_ahead()
        if img.error:
            self.message.emit(img.error)

    def wait_until_shown(self, timeout: float = 30.0) -> bool:
        """Block until the current image is fully shown (scripts and tests; not for the GUI)."""
        end = time.monotonic() + timeout
        while self.canvas.loading and time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.002)
        return not self.canvas.loading

    reference_visible = False
    reference_mask: np.ndarray | None = None
    label_class = DEFAULT_CLASS_ID  # the class the next label gets (keys 1-9)

    def set_label_class(self, class_id: int) -> None:
        """The class of the labels drawn from now on, on every image."""
        self.label_class = class_id
        for doc in self.docs.values():
            doc.label_class = class_id

    def _reference(self, rec: ImageRecord, hw) -> np.ndarray | None:
        try:
            return self.store.reference_mask(rec.id, hw)
        except (ImageReadError, ProjectError) as exc:
            self.message.emit(f"Reference mask not shown: {exc}")
            return None

    def _document(self, rec: ImageRecord, hw) -> ImageDocument:
        doc = self.docs.get(rec.id)
        if doc is None or doc.hw != tuple(hw):
            labels = self.store.load_labels(rec.id, hw, skip_corrupt=True)
            if labels.problems:
                self.message.emit(f"{labels.problems[0]} (left out)")
            doc = ImageDocument(self.store, rec.id, labels)
            doc.on_save_error = self._on_save_error
            self.docs[rec.id] = doc
        doc.label_class = self.label_class
        self.docs.move_to_end(rec.id)
        self._trim_docs(keep=rec.id)
        return doc

    def _trim_docs(self, keep: int) -> None:
        total = sum(d.hw[0] * d.hw[1] for d in self.docs.values())
        for image_id in list(self.docs):
            if total <= MAX_KEPT_PIXELS:
                break
            d = self.docs[image_id]
            if image_id == keep or d.unsaved:
                continue
            total -= d.hw[0] * d.hw[1]
            del self.docs[image_id]
            self.book.forget(image_id)

    def reload_records(self) -> None:
        """Re-read the image list after images were added."""
        self.records = self.store.images()
        self.summaries = self.store.summaries()
        self._sweep_todo.clear()
        self._sweep_rows = None
        self._sweep.start()

    def _sweep_step(self) -> None:
        """At most :data:`SWEEP_BUDGET_S` of this turn of the event loop (at 50,000 images the
        whole check took seconds in one go)."""
        if self.cache.previews is None:
            self._sweep.stop()
            return
        deadline = time.perf_counter() + SWEEP_BUDGET_S
        if self._sweep_rows is None:
            self._sweep_rows = _nearest_first(max(self.index, 0), len(self.records))
        while True:
            if not self._sweep_todo:
                chunk = [self.store.image_path(self.records[j]) for j in islice(self._sweep_rows, SWEEP_CHUNK)]
                if not chunk:
                    self._sweep.stop()  # every large image has its preview
                    return
                self._sweep_todo.extend(chunk)
            if self.cache.sweep(self._sweep_todo, deadline) or time.perf_counter() >= deadline:
                return

    def next(self) -> None:
        self.open_index(min(self.index + 1, len(self.records) - 1))

    def previous(self) -> None:
        self.open_index(max(self.index - 1, 0))

    def set_reference_visible(self, visible: bool) -> None:
        self.reference_visible = visible
        self.canvas.set_reference(self.reference_mask if visible else None)

    # -- edits ----------------------------------------------------------------------------------
    def _canvas_edit(self, cmd: Command) -> None:
        """An edit made on the canvas: labeling time of its type (accepted suggestions, added
        from a panel through :meth:`add_boxes`, are not)."""
        self.tracker.note_edit(cmd.label_type)
        self.push(cmd)

    def push(self, cmd: Command) -> None:
        self.book.push(self.record.id, cmd)
        self._labels_changed()

    def add_boxes(self, boxes) -> int:
        """Boxes as labels of the image on screen, each its own undoable edit (accepted suggestions);
        returns how many were added, or queued behind the strokes made while the full image loads
        (none where the image cannot be edited)."""
        boxes = list(boxes)
        if self.document is None or not self.canvas.can_edit_soon():
            return 0
        self.canvas.edit_or_queue(lambda: self._add_boxes_now(boxes), f"Accept {len(boxes)} suggested box(es)")
        return len(boxes)

    def _add_boxes_now(self, boxes: list) -> int:
        doc = self.document
        if doc is None or not self.canvas.can_edit():
            return 0
        for b in boxes:
            self.push(BoxAddCommand(doc.add_box(b), b))
        return len(boxes)

    def undo(self) -> Command | None:
        return self._step(self.book.history(self.record.id).undo) if self._can_step() else None

    def redo(self) -> Command | None:
        return self._step(self.book.history(self.record.id).redo) if self._can_step() else None

    def _can_step(self) -> bool:
        if self.record is None:
            return False
        if self.document is None:
            return self.canvas.can_edit()  # False, and the status bar says why
        if self.canvas.tool is not None:
            self.canvas.tool.cancel()
        return self.canvas.can_edit()

    def _step(self, fn) -> Command | None:
        cmd = fn(self.document)
        if cmd is None:
            self.message.emit("Nothing to undo or redo on this image.")
            return None
        if self.canvas.selected_box not in self.canvas.box_items:
            self.canvas.select_box(None)
        self._labels_changed()
        self.message.emit(f"{cmd.text}")
        return cmd

    def _labels_changed(self) -> None:
        doc = self.document
        old = self.summaries.get(doc.image_id, LabelSummary())
        self.summaries[doc.image_id] = LabelSummary(
            pixel_count=int(np.count_nonzero(doc.pixels)),
            block8=int(np.count_nonzero(doc.cells[8])),
            block16=int(np.count_nonzero(doc.cells[16])),
            boxes=len(doc.boxes),
            seconds=old.seconds,
        )
        self.summary_changed.emit(doc.image_id)
        self.save_state_changed.emit()

    def seconds(self, image_id: int, label_type: str | None = None) -> float:
        return self.tracker.seconds(image_id, label_type)

    def seconds_by_type(self, image_id: int) -> dict[str, float]:
        return {t: s for t in LABEL_TYPES if (s := self.tracker.seconds(image_id, t)) > 0}

    # -- saving ---------------------------------------------------------------------------------
    def _safely(self, fn) -> bool:
        try:
            fn()
            return True
        except ProjectWriteError as exc:
            self._on_save_error(exc)
            return False

    def _on_save_error(self, exc: ProjectWriteError) -> None:
        first = self.save_error is None
        self.save_error = str(exc)
        if not self._retry.isActive():
            self._retry.start()
        if first:
            self.message.emit(f"Not saved: {exc}")
        self.save_state_changed.emit()

    def _write_span(self, span: TimeSpan) -> None:
        if self._pending_spans or not self._safely(lambda: self.store.add_time_span(span)):
            self._pending_spans.append(span)

    @property
    def has_unsaved(self) -> bool:
        return bool(self._pending_spans) or any(d.unsaved for d in self.docs.values())

    def retry_saves(self) -> bool:
        """Write whatever could not be saved earlier. True when everything is saved."""
        if self.store.read_only:
            return not self.has_unsaved
        ok = True
        for d in list(self.docs.values()):
            if d.unsaved:
                ok = d.flush() and ok
        while self._pending_spans and ok:
            span = self._pending_spans[0]
            try:
                self.store.add_time_span(span)
                self._pending_spans.pop(0)
            except ProjectWriteError as exc:
                self.save_error = str(exc)
                ok = False
        if ok:
            self.save_error = None
            self._retry.stop()
            self.message.emit("All edits saved.")
        self.save_state_changed.emit()
        return ok

    def close(self) -> bool:
        """Stop the clock and save; False if something is still unsaved (the caller asks)."""
        if self.canvas.tool is not None:
            self.canvas.tool.cancel()
        self.tracker.stop()
        return self.retry_saves() if self.has_unsaved else True

    def shutdown(self) -> None:
        self._retry.stop()
        self._sweep.stop()
        self.cache.shutdown()
        self.store.close()
