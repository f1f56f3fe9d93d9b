"""The inspector's labels of one image, in memory and without Qt.

Four label types, matching the paper's annotation-time study (section 4.7, Fig. 5):

* ``pixel``: a free-hand mask painted with the brush (uint8 0/1, image resolution);
* ``block8`` / ``block16``: whole cells of an 8x8 or 16x16 grid aligned to the image's top-left
  corner, kept as cell sets (row, col), never as pixels, so the trainer gets them exactly;
* ``box``: rotated boxes (:class:`~semirest.core.labels.boxes.RotatedBox`, same angle convention).

Cells on the right and bottom edges of an image whose size is not a multiple of the grid are
partial: they cover only the pixels that exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from semirest.core.labels.boxes import RotatedBox, boxes_to_mask
from semirest.core.labels.classes import DEFAULT_CLASS_ID

PIXEL = "pixel"
BLOCK8 = "block8"
BLOCK16 = "block16"
BOX = "box"
LABEL_TYPES = (PIXEL, BLOCK8, BLOCK16, BOX)
GRIDS = {BLOCK8: 8, BLOCK16: 16}


def grid_shape(hw: tuple[int, int], grid: int) -> tuple[int, int]:
    """Number of (rows, cols) of a grid over an image, counting partial edge cells."""
    h, w = hw
    return (h + grid - 1) // grid, (w + grid - 1) // grid


def blocks_to_mask(blocks, grid: int, hw: tuple[int, int]) -> np.ndarray:
    """Pixels covered by the given cells (bool, shape ``hw``)."""
    h, w = hw
    rows, cols = grid_shape(hw, grid)
    cells = np.zeros((rows, cols), dtype=bool)
    for r, c in blocks:
        if 0 <= r < rows and 0 <= c < cols:
            cells[r, c] = True
    return cells_to_mask(cells, grid, hw)


def cells_to_mask(cells: np.ndarray, grid: int, hw: tuple[int, int]) -> np.ndarray:
    """Expand a cell grid (bool, (rows, cols)) to pixels, cropped to the image."""
    h, w = hw
    return np.repeat(np.repeat(cells, grid, axis=0), grid, axis=1)[:h, :w]


def blocks_from_mask(mask: np.ndarray, grid: int) -> set[tuple[int, int]]:
    """Cells whose every (existing) pixel is set: the exact inverse of :func:`blocks_to_mask`."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    rows, cols = grid_shape((h, w), grid)
    padded = np.ones((rows * grid, cols * grid), dtype=bool)
    padded[:h, :w] = m
    full = padded.reshape(rows, grid, cols, grid).all(axis=(1, 3))
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(full))}


@dataclass
class ImageLabels:
    """Everything the inspector drew on one image. ``boxes`` maps a store id to its box.

    Classes (:mod:`semirest.core.labels.classes`): a brush pixel's value is its class id (0:
    unlabelled, 1: the default class, so painting 1 is painting "defect"); cells and boxes not
    listed in ``block_classes`` / ``box_classes`` have the default class."""

    hw: tuple[int, int]
    pixels: np.ndarray | None = None
    blocks: dict[int, set[tuple[int, int]]] = field(default_factory=lambda: {8: set(), 16: set()})
    boxes: dict[int, RotatedBox] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # labels that could not be read (left out)
    block_classes: dict[tuple[int, int, int], int] = field(default_factory=dict)  # (grid, row, col) -> class id
    box_classes: dict[int, int] = field(default_factory=dict)  # box id -> class id

    def block_class(self, grid: int, cell: tuple[int, int]) -> int:
        return self.block_classes.get((grid, cell[0], cell[1]), DEFAULT_CLASS_ID)

    def box_class(self, box_id: int) -> int:
        return self.box_classes.get(box_id, DEFAULT_CLASS_ID)

    def class_ids(self) -> set[int]:
        """The classes this image's labels use."""
        out = {int(v) for v in np.unique(self.pixels) if v}
        out |= {self.block_class(g, c) for g in (8, 16) for c in self.blocks[g]}
        out |= {self.box_class(i) for i in self.boxes}
        return out

    def __post_init__(self) -> None:
        if self.pixels is None:
            self.pixels = np.zeros(self.hw, dtype=np.uint8)
        self.blocks.setdefault(8, set())
        self.blocks.setdefault(16, set())

    def is_empty(self) -> bool:
        return not (self.pixels.any() or self.blocks[8] or self.blocks[16] or self.boxes)

    def used_types(self) -> list[str]:
        out = []
        if self.pixels.any():
            out.append(PIXEL)
        if self.blocks[8]:
            out.append(BLOCK8)
        if self.blocks[16]:
            out.append(BLOCK16)
        if self.boxes:
            out.append(BOX)
        return out

    def type_mask(self, label_type: str, class_id: int | None = None) -> np.ndarray:
        """The pixels covered by one label type (bool); of one class only, with ``class_id``."""
        if label_type == PIXEL:
            return self.pixels.astype(bool) if class_id is None else self.pixels == class_id
        if label_type in GRIDS:
            g = GRIDS[label_type]
            cells = self.blocks[g] if class_id is None else {c for c in self.blocks[g] if self.block_class(g, c) == class_id}
            return blocks_to_mask(cells, g, self.hw)
        if label_type == BOX:
            return boxes_to_mask([b for i, b in self.boxes.items() if class_id is None or self.box_class(i) == class_id], self.hw)
        raise ValueError(f"unknown label type {label_type!r}; expected one of {', '.join(LABEL_TYPES)}")

    def union_mask(self, label_types=LABEL_TYPES, class_id: int | None = None) -> np.ndarray:
        """Union of the chosen label types rendered to pixels (bool): what a mask export writes and
        what training learns from (every class alike)."""
        out = np.zeros(self.hw, dtype=bool)
        for t in label_types:
            out |= self.type_mask(t, class_id)
        return out
