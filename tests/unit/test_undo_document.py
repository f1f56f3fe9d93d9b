"""The Qt-free editing model: strokes, undo records and their memory bound."""
import numpy as np

from semirest.app.document import ImageDocument
from semirest.app.undo import BlockToggleCommand, HistoryBook, PixelStrokeCommand, UndoHistory
from semirest.core.labels.image_labels import ImageLabels


def _stroke(doc, a, b, size=9, value=1):
    doc.begin_stroke()
    doc.paint_segment(a, a, size, value)
    doc.paint_segment(a, b, size, value)
    return doc.end_stroke()


def test_stroke_record_is_the_changed_rectangle_only():
    doc = ImageDocument(None, 1, ImageLabels((4096, 4096)))
    rect, before, after = _stroke(doc, (1000.5, 2000.5), (1100.5, 2000.5))
    x0, y0, x1, y1 = rect
    assert (x0, y0, x1, y1) == (996, 1996, 1105, 2005)  # 9 px round brush around the segment
    assert before.shape == after.shape == (9, 109) and not before.any() and after.all(axis=0).any()
    assert _stroke(doc, (1000.5, 2000.5), (1100.5, 2000.5)) is None  # painting again changes nothing


def test_undo_of_huge_stroke_is_small_and_exact():
    doc = ImageDocument(None, 1, ImageLabels((4096, 4096)))
    h = UndoHistory()
    res = _stroke(doc, (0, 0), (4096, 4096), size=256)
    after = doc.pixels.copy()
    cmd = PixelStrokeCommand(*res)
    assert cmd.nbytes < 200_000  # a full-diagonal stroke on 16 Mpixel, stored compressed
    h.push(cmd)
    h.undo(doc)
    assert not doc.pixels.any()
    h.redo(doc)
    assert np.array_equal(doc.pixels, after)


def test_history_book_is_memory_bounded_but_keeps_100_steps_of_the_current_image():
    book = HistoryBook(max_steps=1000, max_bytes=50_000, min_steps=100)
    for image in (1, 2):
        for i in range(150):
            book.push(image, BlockToggleCommand(8, [(i, j) for j in range(5)], []))  # ~500 bytes each
    assert len(book.history(1).commands) == 0  # the other image gave its memory first
    assert len(book.history(2).commands) >= 100
    assert book.nbytes <= 50_000 + 100 * 600


def test_push_after_undo_drops_redo_steps():
    doc = ImageDocument(None, 1, ImageLabels((32, 32)))
    h = UndoHistory(max_steps=3)
    for i in range(5):
        doc.set_cells(8, [(0, i % 4)], True)
        h.push(BlockToggleCommand(8, [(0, i % 4)], []))
    assert len(h.commands) == 3
    h.undo(doc)
    h.push(BlockToggleCommand(8, [], []))
    assert not h.can_redo() and len(h.commands) == 3


def test_stroke_undo_redo_keeps_each_pixels_class():
    """A stroke in class 2 comes back in class 2, and an eraser stroke over two classes brings
    both back: the undo record keeps class values, not on/off bits."""
    doc = ImageDocument(None, 1, ImageLabels((64, 64)))
    h = UndoHistory()
    doc.label_class = 3
    h.push(PixelStrokeCommand(*_stroke(doc, (10.5, 20.5), (50.5, 20.5))))
    doc.label_class = 2
    h.push(PixelStrokeCommand(*_stroke(doc, (30.5, 10.5), (30.5, 50.5))))
    painted = doc.pixels.copy()
    assert set(np.unique(painted)) == {0, 2, 3}
    h.push(PixelStrokeCommand(*_stroke(doc, (5.5, 20.5), (55.5, 20.5), size=15, value=0), erase=True))
    assert set(np.unique(doc.pixels)) == {0, 2}
    doc.label_class = 1  # the class picked now has no say in what undo brings back
    h.undo(doc)
    assert np.array_equal(doc.pixels, painted)
    h.undo(doc)
    h.redo(doc)
    assert np.array_equal(doc.pixels, painted)


def test_block_undo_redo_keeps_each_cells_class():
    """Cells turned on come back in the class they were made in, cells turned off in the class
    they had, whatever class is picked when undoing."""
    doc = ImageDocument(None, 1, ImageLabels((64, 64)))
    h = UndoHistory()
    doc.label_class = 2
    doc.set_cells(8, [(1, 1), (1, 2)], True)
    h.push(BlockToggleCommand(8, {(1, 1): 2, (1, 2): 2}, {}))
    doc.label_class = 3
    doc.set_cells(8, [(2, 2)], True)
    h.push(BlockToggleCommand(8, {(2, 2): 3}, {}))
    made = dict(doc.labels.block_classes)
    assert made == {(8, 1, 1): 2, (8, 1, 2): 2, (8, 2, 2): 3}
    doc.set_cells(8, [(1, 2), (2, 2)], False)
    h.push(BlockToggleCommand(8, {}, {(1, 2): 2, (2, 2): 3}))
    doc.label_class = 1
    h.undo(doc)
    assert doc.labels.block_classes == made
    h.undo(doc)
    h.undo(doc)
    assert doc.labels.block_classes == {} and not doc.cells[8].any()
    h.redo(doc)
    h.redo(doc)
    assert doc.labels.block_classes == made
