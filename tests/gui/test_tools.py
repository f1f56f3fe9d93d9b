"""Each tool draws through real mouse and keyboard events; undo/redo restores exactly; the project
file holds what was drawn after the window closes."""
import numpy as np
import pytest
from PySide6.QtCore import Qt

from semirest.core.project.store import ProjectStore
from tests.gui.conftest import click, drag, key

CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


def undo(qtbot, w):
    key(qtbot, w, Qt.Key.Key_Z, CTRL)


def redo(qtbot, w):
    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)


def stored(project, image_index=0):
    with ProjectStore.open(project) as s:
        rec = s.images()[image_index]
        return s.load_labels(rec.id, rec.hw)


def test_brush_paints_at_image_resolution_and_size_keys(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_B)
    assert c.tool is window.tools["brush"] and c.brush_size == 12
    key(qtbot, window, Qt.Key.Key_BracketRight)
    assert c.brush_size == 16
    key(qtbot, window, Qt.Key.Key_BracketLeft)
    key(qtbot, window, Qt.Key.Key_BracketLeft)
    assert c.brush_size == 10
    drag(c, [(20, 30), (80, 30)])
    px = c.document.pixels
    assert px.shape == (120, 160) and px.dtype == np.uint8
    assert px[30, 20:81].all()  # the stroke's spine
    assert px[26:35, 50].all() and not px[24, 50] and not px[36, 50]  # 10 px wide, round-capped
    assert not px[30, 10] and not px[30, 90]
    assert px.sum() == pytest.approx(60 * 10 + np.pi * 25, rel=0.12)
    assert "Brush 10 px" in window.status_labels["tool"].text()


def test_eraser_and_stroke_undo_redo_exact(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 30), (50, 35), (80, 30)], steps=6)  # one stroke, many mouse moves
    painted = c.document.pixels.copy()
    key(qtbot, window, Qt.Key.Key_E)
    drag(c, [(50, 10), (50, 60)])
    erased = c.document.pixels.copy()
    assert painted[32, 50] and not erased[32, 50] and erased[30, 25] and erased[30, 75]
    undo(qtbot, window)
    assert np.array_equal(c.document.pixels, painted)
    undo(qtbot, window)  # the whole first stroke is one step
    assert not c.document.pixels.any()
    redo(qtbot, window)
    assert np.array_equal(c.document.pixels, painted)
    redo(qtbot, window)
    assert np.array_equal(c.document.pixels, erased)
    window.close()
    assert np.array_equal(stored(window.session.store.path).pixels, erased)


def test_block_tools_toggle_whole_cells(window, qtbot, small_project):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_K)
    assert c.grid_item.isVisible() and c.grid_item.grid == 8
    click(c, 5, 5)
    assert c.document.labels.blocks[8] == {(0, 0)}
    drag(c, [(3, 12), (44, 12)])  # a drag along row 1: cells (1, 0) .. (1, 5)
    assert c.document.labels.blocks[8] == {(0, 0)} | {(1, k) for k in range(6)}
    drag(c, [(20, 12), (30, 12)])  # starting on an "on" cell turns cells off
    assert c.document.labels.blocks[8] == {(0, 0), (1, 0), (1, 1), (1, 4), (1, 5)}
    key(qtbot, window, Qt.Key.Key_L)
    click(c, 150, 118)  # bottom-right cell of a 160x120 image is partial on the 16 grid
    assert c.document.labels.blocks[16] == {(7, 9)}
    assert window.session.summaries[window.session.record.id].block16 == 1
    undo(qtbot, window)  # undo the 16-grid click
    assert c.document.labels.blocks[16] == set()
    undo(qtbot, window)  # undo the switching-off drag
    assert c.document.labels.blocks[8] == {(0, 0)} | {(1, k) for k in range(6)}
    redo(qtbot, window)
    redo(qtbot, window)
    assert c.document.labels.blocks[8] == {(0, 0), (1, 0), (1, 1), (1, 4), (1, 5)}
    assert c.document.labels.blocks[16] == {(7, 9)}
    window.close()
    got = stored(small_project)
    assert got.blocks == {8: {(0, 0), (1, 0), (1, 1), (1, 4), (1, 5)}, 16: {(7, 9)}}
    assert not got.pixels.any()  # blocks are stored as cells, not pixels


def test_block_undo_steps_in_order(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_K)
    history = [set(c.document.labels.blocks[8])]
    for x, y in [(5, 5), (13, 5), (21, 5), (5, 5)]:
        click(c, x, y)
        history.append(set(c.document.labels.blocks[8]))
    assert history[-1] == {(0, 1), (0, 2)}
    for want in reversed(history[:-1]):
        undo(qtbot, window)
        assert c.document.labels.blocks[8] == want
    for want in history[1:]:
        redo(qtbot, window)
        assert c.document.labels.blocks[8] == want


def test_at_least_100_undo_steps(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_K)
    cells = [(r, k) for r in range(11) for k in range(11)][:110]
    for r, k in cells:
        click(c, k * 8 + 4, r * 8 + 4)
    assert len(c.document.labels.blocks[8]) == 110
    for _ in range(110):
        undo(qtbot, window)
    assert c.document.labels.blocks[8] == set()
    for _ in range(110):
        redo(qtbot, window)
    assert c.document.labels.blocks[8] == set(cells)


def _box(c):
    (b,) = c.document.boxes.values()
    return b


def test_rotated_box_draw_rotate_move_resize_delete(window, qtbot, small_project):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_R)
    drag(c, [(30, 30), (70, 50)])
    b = _box(c)
    assert (b.cx, b.cy, b.width, b.height, b.angle) == pytest.approx((50, 40, 40, 20, 0), abs=0.4)
    for k, mod, expect in [(Qt.Key.Key_X, Qt.KeyboardModifier.NoModifier, 1), (Qt.Key.Key_X, SHIFT, 16), (Qt.Key.Key_Z, Qt.KeyboardModifier.NoModifier, 15), (Qt.Key.Key_Z, SHIFT, 0)]:
        key(qtbot, window, k, mod)
        assert _box(c).angle == pytest.approx(expect)
    key(qtbot, window, Qt.Key.Key_X, SHIFT)
    key(qtbot, window, Qt.Key.Key_X, SHIFT)  # 30 degrees
    b = _box(c)
    drag(c, [(b.cx, b.cy), (b.cx + 10, b.cy + 5)])  # move
    m = _box(c)
    assert (m.cx - b.cx, m.cy - b.cy, m.width, m.height, m.angle) == pytest.approx((10, 5, b.width, b.height, 30), abs=0.4)
    item = c.box_items[c.selected_box]
    east = item.mapToScene(item.handles()["e"])
    far = item.mapToScene(item.handles()["w"])
    drag(c, [(east.x(), east.y()), (east.x() + 10 * np.cos(np.radians(30)), east.y() + 10 * np.sin(np.radians(30)))])
    r = _box(c)
    assert r.width == pytest.approx(m.width + 10, abs=0.5) and r.height == pytest.approx(m.height, abs=1e-6)
    item = c.box_items[c.selected_box]
    far2 = item.mapToScene(item.handles()["w"])
    assert (far2.x(), far2.y()) == pytest.approx((far.x(), far.y()), abs=0.5)  # the opposite side stays
    rot = item.mapToScene(item.handles()["rotate"])
    drag(c, [(rot.x(), rot.y()), (r.cx + 60, r.cy)])  # handle to the right of the centre: 90 degrees
    a = _box(c).angle  # 90 degrees; angles are kept in [-90, 90), so 90 may read as -90
    d = (a - 90) % 180
    assert -90 <= a < 90 and min(d, 180 - d) < 0.6
    assert (_box(c).width, _box(c).height) == pytest.approx((r.width, r.height))
    final = _box(c)
    key(qtbot, window, Qt.Key.Key_Delete)
    assert c.document.boxes == {}
    undo(qtbot, window)
    assert _box(c) == final
    window.close()
    (got,) = stored(small_project).boxes.values()
    assert (got.cx, got.cy, got.width, got.height, got.angle) == pytest.approx((final.cx, final.cy, final.width, final.height, final.angle))


def test_box_undo_redo_restores_every_step(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_R)
    drag(c, [(20, 20), (60, 40)])
    states = [dict(c.document.boxes)]
    key(qtbot, window, Qt.Key.Key_X)
    states.append(dict(c.document.boxes))
    b = _box(c)
    drag(c, [(b.cx, b.cy), (b.cx + 20, b.cy + 20)])
    states.append(dict(c.document.boxes))
    drag(c, [(100, 80), (130, 110)])  # a second box
    states.append(dict(c.document.boxes))
    key(qtbot, window, Qt.Key.Key_Delete)
    states.append(dict(c.document.boxes))
    for want in reversed(states[:-1]):
        undo(qtbot, window)
        assert c.document.boxes == want
    undo(qtbot, window)
    assert c.document.boxes == {}
    for want in states:
        redo(qtbot, window)
        assert c.document.boxes == want


def test_tiny_drag_makes_no_box_and_click_selects(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_R)
    click(c, 50, 50)
    assert c.document.boxes == {}
    drag(c, [(20, 20), (60, 40)])
    local = c.selected_box
    click(c, 120, 100)  # empty image: deselect
    assert c.selected_box is None
    key(qtbot, window, Qt.Key.Key_Delete)  # nothing selected: nothing deleted
    assert len(c.document.boxes) == 1
    click(c, 40, 30)
    assert c.selected_box == local
