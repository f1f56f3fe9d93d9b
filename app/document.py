"""The labels of the image being edited, and how each edit reaches the project file.

Plain Python (no Qt) so it can be tested directly: the canvas listens through callbacks, the
tools and the undo commands call the ``apply_*`` methods, and every edit is committed to the
store before the method returns. If the store refuses (locked, read-only mid-session, disk full),
the edit stays in memory, :attr:`unsaved` becomes true and :meth:`flush` writes the whole image
later; nothing the inspector drew is dropped.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from semirest.core.labels.classes import DEFAULT_CLASS_ID
from semirest.core.labels.image_labels import ImageLabels, grid_shape
from semirest.core.project.store import ProjectStore, ProjectWriteError
from semirest.core.labels.boxes import RotatedBox

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, half-open


@dataclass(frozen=True)
class Change:
    """What changed, for the views: ``kind`` is pixels, blocks or boxes."""

    kind: str
    rect: Rect | None = None  # pixels and blocks: the image region to repaint
    grid: int | None = None
    box_id: int | None = None  # boxes: the local id of the box (None: all boxes)


class ImageDocument:
    """One image's labels in memory, bound to its row in the project."""

    _box_ids = itertools.count(1)

    def __init__(self, store: ProjectStore | None, image_id: int, labels: ImageLabels):
        self.store = store
        self.image_id = image_id
        self.labels = labels
        self.hw = labels.hw
        self.listeners: list[Callable[[Change], None]] = []
        self.on_save_error: Callable[[ProjectWriteError], None] | None = None
        self.unsaved = False
        self.label_class = DEFAULT_CLASS_ID  # the class new pixels, cells and boxes get (keys 1-9)
        # Boxes get local ids that never change; the store's ids can (a failed save, an undo of a
        # delete), so they are kept in a map.
        self.boxes: dict[int, RotatedBox] = {}
        self._db_box_id: dict[int, int | None] = {}
        self.box_classes: dict[int, int] = {}  # local id -> class id; kept after a delete, for its undo
        for db_id, box in labels.boxes.items():
            local = next(self._box_ids)
            self.boxes[local] = box
            self._db_box_id[local] = db_id
            self.box_classes[local] = labels.box_class(db_id)
        # per grid, each cell's class id (0: off), so the canvas colours cells by class in numpy
        self.cells = {g: np.zeros(grid_shape(self.hw, g), dtype=np.uint8) for g in (8, 16)}
        for g in (8, 16):
            for r, c in labels.blocks[g]:
                self.cells[g][r, c] = labels.block_class(g, (r, c))
        self._stroke_before: np.ndarray | None = None
        self._stroke_rect: Rect | None = None

    @property
    def editable(self) -> bool:
        return self.store is None or not self.store.read_only

    @property
    def pixels(self) -> np.ndarray:
        return self.labels.pixels

    # -- notification and persistence -----------------------------------------------------------
    def _notify(self, change: Change) -> None:
        for f in list(self.listeners):
            f(change)

    def _persist(self, write: Callable[[], None]) -> bool:
        if self.store is None:
            return True
        if self.unsaved:  # an earlier edit is pending: the session's retry writes everything
            return False
        try:
            write()
            return True
        except ProjectWriteError as exc:
            self.unsaved = True
            if self.on_save_error:
                self.on_save_error(exc)
            return False

    def flush(self) -> bool:
        """Write the whole label state of the image (after a failed save). True if saved."""
        if self.store is None or not self.unsaved:
            return True
        try:
            keys = {}
            for local, box in self.boxes.items():
                db = self._db_box_id.get(local)
                keys[local] = db if db is not None else -local
            mapping = self.store.replace_labels(self.image_id, self._labels_keyed(keys))
        except ProjectWriteError as exc:
            if self.on_save_error:
                self.on_save_error(exc)
            return False
        for local, k in keys.items():
            self._db_box_id[local] = mapping[k]
        self.unsaved = False
        return True

    def _labels_keyed(self, keys: dict[int, int]) -> ImageLabels:
        out = ImageLabels(self.hw, pixels=self.labels.pixels, blocks=self.labels.blocks, block_classes=self.labels.block_classes)
        out.boxes = {keys[local]: b for local, b in self.boxes.items()}
        out.box_classes = {keys[local]: self.box_classes.get(local, DEFAULT_CLASS_ID) for local in self.boxes}
        return out

    # -- pixels ---------------------------------------------------------------------------------
    def begin_stroke(self) -> None:
        self._stroke_before = self.labels.pixels.copy()
        self._stroke_rect = None

    def paint_segment(self, p0: tuple[float, float], p1: tuple[float, float], size: int, value: int) -> Rect | None:
        """Paint (value 1: in :attr:`label_class`) or erase (0) a round-capped line of ``size``
        pixels diameter between two image points, at image resolution. Returns the changed region
        (not yet committed)."""
        value = self.label_class if value else 0
        h, w = self.hw
        r = max(size, 1) / 2.0
        x0 = int(np.floor(min(p0[0], p1[0]) - r)) - 1
        y0 = int(np.floor(min(p0[1], p1[1]) - r)) - 1
        x1 = int(np.ceil(max(p0[0], p1[0]) + r)) + 2
        y1 = int(np.ceil(max(p0[1], p1[1]) + r)) + 2
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return None
        crop = self.labels.pixels[y0:y1, x0:x1]
        shift = 4  # sub-pixel positions, 1/16 pixel
        # pixel (c, r) has its centre at (c + 0.5, r + 0.5): move by -0.5 to sample centres
        a = (int(round((p0[0] - x0 - 0.5) * 16)), int(round((p0[1] - y0 - 0.5) * 16)))
        b = (int(round((p1[0] - x0 - 0.5) * 16)), int(round((p1[1] - y0 - 0.5) * 16)))
        if size <= 1:
            cv2.line(crop, a, b, int(value), 1, cv2.LINE_8, shift)
        else:
            rad = int(round((r - 0.5) * 16))
            cv2.circle(crop, a, rad, int(value), -1, cv2.LINE_8, shift)
            cv2.circle(crop, b, rad, int(value), -1, cv2.LINE_8, shift)
            if a != b:
                d = np.array(b, float) - np.array(a, float)
                n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * rad
                quad = np.array([a + n, b + n, b - n, a - n]).round().astype(np.int32)
                cv2.fillConvexPoly(crop, quad, int(value), cv2.LINE_8, shift)
        rect = (x0, y0, x1, y1)
        sr = self._stroke_rect
        self._stroke_rect = rect if sr is None else (min(sr[0], x0), min(sr[1], y0), max(sr[2], x1), max(sr[3], y1))
        self._notify(Change("pixels", rect))
        return rect

    def end_stroke(self):
        """Finish a stroke: commit it and return (rect, before patch, after patch), or None if it
        changed nothing. The patches are what the undo command keeps."""
        before, rect = self._stroke_before, self._stroke_rect
        self._stroke_before = self._stroke_rect = None
        if before is None or rect is None:
            return None
        x0, y0, x1, y1 = rect
        old = before[y0:y1, x0:x1]
        new = self.labels.pixels[y0:y1, x0:x1].copy()
        if np.array_equal(old, new):
            return None
        # shrink to the pixels that really changed: smaller undo records and fewer tiles written
        ys, xs = np.nonzero(old != new)
        rect = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
        x0n, y0n, x1n, y1n = rect
        old = before[y0n:y1n, x0n:x1n].copy()
        new = self.labels.pixels[y0n:y1n, x0n:x1n].copy()
        self._persist(lambda: self.store.save_pixel_region(self.image_id, self.labels.pixels, rect))
        return rect, old, new

    def apply_pixels(self, rect: Rect, patch: np.ndarray) -> None:
        """Set a region of the brush mask (undo/redo of a stroke) and commit it."""
        x0, y0, x1, y1 = rect
        self.labels.pixels[y0:y1, x0:x1] = patch
        self._notify(Change("pixels", rect))
        self._persist(lambda: self.store.save_pixel_region(self.image_id, self.labels.pixels, rect))

    # -- blocks ---------------------------------------------------------------------------------
    def cell_rect(self, grid: int, cells) -> Rect:
        h, w = self.hw
        rs = [r for r, _ in cells]
        cs = [c for _, c in cells]
        return (min(cs) * grid, min(rs) * grid, min(w, (max(cs) + 1) * grid), min(h, (max(rs) + 1) * grid))

    def cell_class(self, grid: int, cell: tuple[int, int]) -> int | None:
        """The class of a cell that is on (None for a cell that is off)."""
        r, c = cell
        if not self.cells[grid][r, c]:
            return None
        return self.labels.block_classes.get((grid, r, c), DEFAULT_CLASS_ID)

    def set_cells(self, grid: int, cells, on: bool, commit: bool = True, classes=None) -> None:
        """Turn cells of one grid on or off (shown at once; committed if ``commit``). Cells turned
        on get their class from ``classes`` (cell -> class id; undo and redo), else
        :attr:`label_class`."""
        cells = list(cells)
        if not cells:
            return
        classes = classes or {}
        for r, c in cells:
            self.cells[grid][r, c] = self.label_class if on else 0
            if on:
                self.labels.blocks[grid].add((r, c))
                self.labels.block_classes[(grid, r, c)] = classes.get((r, c)) or self.label_class
            else:
                self.labels.blocks[grid].discard((r, c))
                self.labels.block_classes.pop((grid, r, c), None)
        self._notify(Change("blocks", self.cell_rect(grid, cells), grid=grid))
        if commit:
            self.commit_cells(grid, cells, on)

    def commit_cells(self, grid: int, cells, on: bool) -> None:
        """Write cells as they are now: off, or on in the class each holds (one write per class)."""
        cells = list(cells)
        if not on:
            self._persist(lambda: self.store.set_blocks(self.image_id, grid, off=cells))
            return
        by_class: dict[int, list[tuple[int, int]]] = {}
        for r, c in cells:
            by_class.setdefault(self.labels.block_classes.get((grid, r, c), self.label_class), []).append((r, c))

        def write():
            for k, group in by_class.items():
                self.store.set_blocks(self.image_id, grid, on=group, class_id=k)

        self._persist(write)

    # -- boxes ----------------------------------------------------------------------------------
    def add_box(self, box: RotatedBox, local_id: int | None = None) -> int:
        """A new box in :attr:`label_class`; ``local_id`` brings a deleted box back in its own class (undo)."""
        local = local_id if local_id is not None else next(self._box_ids)
        self.boxes[local] = box
        self._db_box_id[local] = None
        k = self.box_classes.setdefault(local, self.label_class)
        self._notify(Change("boxes", box_id=local))

        def write():
            self._db_box_id[local] = self.store.add_box(self.image_id, box, class_id=k)

        self._persist(write)
        return local

    def update_box(self, local: int, box: RotatedBox) -> None:
        self.boxes[local] = box
        self._notify(Change("boxes", box_id=local))
        self._persist(lambda: self.store.update_box(self._db_box_id[local], box))

    def remove_box(self, local: int) -> None:
        self.boxes.pop(local)
        db = self._db_box_id.pop(local, None)
        self._notify(Change("boxes", box_id=local))
        if db is not None:
            self._persist(lambda: self.store.delete_box(db))
        # else: the box never reached the project; a pending flush writes the current state

    def snapshot(self) -> ImageLabels:
        """A copy of the current labels (tests, exports)."""
        out = ImageLabels(self.hw, pixels=self.labels.pixels.copy())
        out.blocks = {g: set(s) for g, s in self.labels.blocks.items()}
        out.boxes = dict(self.boxes)
        out.box_classes = {local: self.box_classes.get(local, DEFAULT_CLASS_ID) for local in self.boxes}
        out.block_classes = dict(self.labels.block_classes)
        return out
