"""Undo/redo: one history per image, one command per user action (a whole stroke is one step).

Plain Python (no Qt). Commands record deltas, not snapshots: a stroke keeps only the changed
rectangle, before and after, as a bit-packed, zlib-compressed mask of labelled pixels and their
class (one number when the patch holds one class, as a stroke's usually does), so hundreds of
steps on a 4096x4096 image cost a few megabytes; undo and redo bring back the exact classes. Histories are bounded by a step count and by memory
(:class:`HistoryBook`), dropping the oldest steps first.
"""
from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np

from semirest.app.document import ImageDocument, Rect
from semirest.core.labels.image_labels import BOX, GRIDS, PIXEL
from semirest.core.labels.boxes import RotatedBox


def _pack(a: np.ndarray) -> tuple[bytes, int | bytes]:
    """A class patch as (the mask of non-zero pixels, their class): one int when they all share
    one, else their values in mask order, compressed (packing the values only as bits lost the
    class: a class-2 stroke came back as class 1 on undo/redo)."""
    mask = a != 0
    bits = zlib.compress(np.packbits(mask, axis=None).tobytes(), 1)
    values = a[mask]
    if values.size == 0 or (values == values[0]).all():
        return bits, int(values[0]) if values.size else 0
    return bits, zlib.compress(values.tobytes(), 1)


def _unpack(packed: tuple[bytes, int | bytes], shape: tuple[int, int], dtype=np.uint8) -> np.ndarray:
    bits, classes = packed
    mask = np.unpackbits(np.frombuffer(zlib.decompress(bits), np.uint8), count=shape[0] * shape[1]).reshape(shape).view(bool)
    out = np.zeros(shape, dtype)
    out[mask] = classes if isinstance(classes, int) else np.frombuffer(zlib.decompress(classes), dtype)
    return out


def _packed_bytes(packed: tuple[bytes, int | bytes]) -> int:
    bits, classes = packed
    return len(bits) + (len(classes) if isinstance(classes, bytes) else 0)


class Command:
    text = ""
    label_type = PIXEL

    def undo(self, doc: ImageDocument) -> None:
        raise NotImplementedError

    def redo(self, doc: ImageDocument) -> None:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        return 200


class PixelStrokeCommand(Command):
    """A brush or eraser stroke: the changed rectangle before and after."""

    def __init__(self, rect: Rect, before: np.ndarray, after: np.ndarray, erase: bool = False):
        self.rect = rect
        self.shape = before.shape
        self.dtype = before.dtype
        self._before = _pack(before)
        self._after = _pack(after)
        self.text = "erase" if erase else "paint"

    def undo(self, doc):
        doc.apply_pixels(self.rect, _unpack(self._before, self.shape, self.dtype))

    def redo(self, doc):
        doc.apply_pixels(self.rect, _unpack(self._after, self.shape, self.dtype))

    @property
    def nbytes(self) -> int:
        return _packed_bytes(self._before) + _packed_bytes(self._after) + 200


class BlockToggleCommand(Command):
    """One click or drag of a block tool: the cells it turned on (with the class they got) and off
    (with the class they had), so that undo and redo bring each cell back in its own class. Plain
    lists of cells leave the class to the one picked at undo/redo time."""

    def __init__(self, grid: int, turned_on, turned_off):
        self.grid = grid
        self.on: dict[tuple[int, int], int | None] = _cell_classes(turned_on)
        self.off: dict[tuple[int, int], int | None] = _cell_classes(turned_off)
        self.label_type = {v: k for k, v in GRIDS.items()}[grid]
        self.text = f"toggle {len(self.on) + len(self.off)} {grid}x{grid} blocks"

    def undo(self, doc):
        doc.set_cells(self.grid, list(self.on), False)
        doc.set_cells(self.grid, list(self.off), True, classes=self.off)

    def redo(self, doc):
        doc.set_cells(self.grid, list(self.off), False)
        doc.set_cells(self.grid, list(self.on), True, classes=self.on)

    @property
    def nbytes(self) -> int:
        return 200 + 60 * (len(self.on) + len(self.off))


def _cell_classes(cells) -> dict[tuple[int, int], int | None]:
    if isinstance(cells, dict):
        return {tuple(c): k for c, k in cells.items()}
    return {tuple(c): None for c in cells}


class BoxAddCommand(Command):
    label_type = BOX
    text = "add box"

    def __init__(self, local_id: int, box: RotatedBox):
        self.local_id, self.box = local_id, box

    def undo(self, doc):
        doc.remove_box(self.local_id)

    def redo(self, doc):
        doc.add_box(self.box, local_id=self.local_id)


class BoxDeleteCommand(BoxAddCommand):
    text = "delete box"

    def undo(self, doc):
        BoxAddCommand.redo(self, doc)

    def redo(self, doc):
        BoxAddCommand.undo(self, doc)


class BoxEditCommand(Command):
    """Move, resize or rotate of one box."""

    label_type = BOX

    def __init__(self, local_id: int, before: RotatedBox, after: RotatedBox, text: str = "edit box"):
        self.local_id, self.before, self.after, self.text = local_id, before, after, text

    def undo(self, doc):
        doc.update_box(self.local_id, self.before)

    def redo(self, doc):
        doc.update_box(self.local_id, self.after)


class UndoHistory:
    """The history of one image: commands before ``index`` are done, the rest can be redone."""

    def __init__(self, max_steps: int = 1000):
        self.commands: list[Command] = []
        self.index = 0
        self.max_steps = max_steps

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.commands)

    def can_undo(self) -> bool:
        return self.index > 0

    def can_redo(self) -> bool:
        return self.index < len(self.commands)

    def push(self, cmd: Command) -> None:
        """Record a command whose effect is already applied."""
        del self.commands[self.index :]
        self.commands.append(cmd)
        self.index = len(self.commands)
        while len(self.commands) > self.max_steps:
            self.drop_oldest()

    def drop_oldest(self) -> bool:
        if not self.commands or self.index == 0:
            if self.commands and self.index == 0:  # only redo steps left: drop the farthest
                self.commands.pop()
                return True
            return False
        self.commands.pop(0)
        self.index -= 1
        return True

    def undo(self, doc: ImageDocument) -> Command | None:
        if not self.can_undo():
            return None
        self.index -= 1
        cmd = self.commands[self.index]
        cmd.undo(doc)
        return cmd

    def redo(self, doc: ImageDocument) -> Command | None:
        if not self.can_redo():
            return None
        cmd = self.commands[self.index]
        cmd.redo(doc)
        self.index += 1
        return cmd


class HistoryBook:
    """Histories of all images, within a memory budget (oldest steps of other images go first)."""

    def __init__(self, max_steps: int = 1000, max_bytes: int = 256 * 2**20, min_steps: int = 100):
        self.max_steps, self.max_bytes, self.min_steps = max_steps, max_bytes, min_steps
        self._histories: OrderedDict[int, UndoHistory] = OrderedDict()

    def forget(self, image_id: int) -> None:
        self._histories.pop(image_id, None)

    def history(self, image_id: int) -> UndoHistory:
        h = self._histories.get(image_id)
        if h is None:
            h = self._histories[image_id] = UndoHistory(self.max_steps)
        self._histories.move_to_end(image_id)
        return h

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in self._histories.values())

    def push(self, image_id: int, cmd: Command) -> None:
        self.history(image_id).push(cmd)
        self._trim(keep=image_id)

    def _trim(self, keep: int) -> None:
        total = self.nbytes
        if total <= self.max_bytes:
            return
        # least recently used images first, the current image last and never below min_steps
        for image_id, h in list(self._histories.items()):
            while total > self.max_bytes and (image_id != keep or len(h.commands) > self.min_steps):
                before = h.nbytes
                if not h.drop_oldest():
                    break
                total -= before - h.nbytes
            if total <= self.max_bytes:
                return
