"""Small boxes stay editable (handles sized on screen, a drag inside moves), hover cursors, Keep
zoom and Fit, windows that fit small screens, and strokes made while a large image loads."""

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRect, QSize, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel

from semirest.core.labels.boxes import RotatedBox
from semirest.core.project.previews import PREVIEW_MIN_BYTES
from tests.gui.conftest import drag, key, move, open_window


@pytest.fixture
def screw_project(tmp_path, real_mvtec):
    """Two real screw images (MVTec, reduced to 320x320 in the shared data)."""
    from semirest.core.project.store import NewImage, ProjectStore

    good = sorted((real_mvtec / "screw" / "train" / "good").glob("*.png"))[:2]
    store = ProjectStore.create(tmp_path / "p.sqlite")
    store.add_images([NewImage(p, p.stem) for p in good])
    store.close()
    return tmp_path / "p.sqlite"


@pytest.fixture
def screw_window(qtbot, screw_project, clock):
    w = open_window(qtbot, screw_project, clock)
    assert w.session.wait_until_shown()
    yield w
    if w.isVisible():
        w.close()


def add_box(window, box: RotatedBox) -> int:
    """A box on the image on screen, selected."""
    c = window.canvas
    local = c.document.add_box(box)
    c.select_box(local)
    return local


def screen_handles(canvas, local):
    """The selected box's handles: name -> (centre on screen, side on screen in px)."""
    item = canvas.box_items[local]
    side = 2 * item.handle_half_px()
    return {n: (canvas.mapFromScene(item.mapToScene(q)), side) for n, q in item.handles().items()}


@pytest.fixture
def full_size_project(tmp_path, real_mvtec):
    """A real screw image at MVTec's own 1024x1024 (the shared copy is reduced to 320x320)."""
    from semirest.core.data.images import write_png
    from semirest.core.project.store import NewImage, ProjectStore

    src = sorted((real_mvtec / "screw" / "train" / "good").glob("*.png"))[0]
    big = tmp_path / "screw_1024.png"
    write_png(big, cv2.resize(cv2.imread(str(src), cv2.IMREAD_GRAYSCALE), (1024, 1024), interpolation=cv2.INTER_CUBIC))
    store = ProjectStore.create(tmp_path / "p.sqlite")
    store.add_images([NewImage(big, "screw_1024")])
    store.close()
    return tmp_path / "p.sqlite"


@pytest.mark.parametrize("project", ["full_size_project", "screw_project"])
def test_small_box_at_fit_zoom_moves_from_its_centre(project, request, qtbot, clock):
    w = open_window(qtbot, request.getfixturevalue(project), clock)
    assert w.session.wait_until_shown()
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_R)
    assert c.fitted
    x0 = c.document.hw[1] // 2
    drag(c, [(x0, x0), (x0 + 13, x0 + 9)], steps=2)  # a 13x9 px box: about 10x7 px on screen at 1024 px, 32x22 at 320
    (local,) = c.document.boxes
    b = c.document.boxes[local]
    assert (b.width, b.height) == pytest.approx((13, 9), abs=1.5)
    on_screen = min(b.width, b.height) * c.zoom
    assert c.selected_box == local and len(c.box_items[local].handles()) == (0 if on_screen < 8 else 4)
    drag(c, [(b.cx, b.cy), (b.cx + 40, b.cy + 25)])
    m = c.document.boxes[local]
    assert (m.cx - b.cx, m.cy - b.cy) == pytest.approx((40, 25), abs=1.1 / c.zoom)  # moved (to a screen pixel) ...
    assert (m.width, m.height, m.angle) == (b.width, b.height, b.angle)  # ... not resized
    w.close()


def test_handles_are_sized_on_screen(screw_window, qtbot):
    w = screw_window
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_R)
    z = c.zoom
    small = add_box(w, RotatedBox(100, 100, 20 / z, 14 / z, 0))  # 20x14 px on screen
    hs = screen_handles(c, small)
    assert sorted(hs) == ["ne", "nw", "se", "sw"] and {s for _, s in hs.values()} == {6.0}
    # the corner handles sit outside the box: its interior is free for moving
    outline = c.mapFromScene(c.box_items[small].mapToScene(c.box_items[small].boundingRect())).boundingRect()
    inner = QRect(c.mapFromScene(QPointF(100 - 10 / z, 100 - 7 / z)), c.mapFromScene(QPointF(100 + 10 / z, 100 + 7 / z)))
    for p, side in hs.values():
        handle = QRect(p.x() - side // 2, p.y() - side // 2, side, side)
        assert not handle.adjusted(1, 1, -1, -1).intersects(inner) and outline.contains(handle)
    tiny = add_box(w, RotatedBox(250, 250, 6 / z, 5 / z, 0))  # 6x5 px on screen: no handles
    assert screen_handles(c, tiny) == {}
    large = add_box(w, RotatedBox(200, 100, 120 / z, 60 / z, 0))
    hs = screen_handles(c, large)
    assert len(hs) == 9 and "rotate" in hs and {s for _, s in hs.values()} == {8.0}
    # zooming in keeps the handle size on screen and turns the small box into a large one
    c.set_zoom(z * 4)
    assert {s for _, s in screen_handles(c, large).values()} == {8.0}
    c.select_box(small)
    assert len(screen_handles(c, small)) == 9


def test_hover_cursor_says_what_a_press_does(screw_window, qtbot):
    w = screw_window
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_R)
    z = c.zoom
    local = add_box(w, RotatedBox(170, 170, 200 / z, 100 / z, 0))
    item = c.box_items[local]

    def cursor_at(name_or_point):
        p = item.mapToScene(item.handles()[name_or_point]) if isinstance(name_or_point, str) else name_or_point
        move(c, p.x(), p.y())
        return c.viewport().cursor().shape()

    assert cursor_at("e") == Qt.CursorShape.SizeHorCursor
    assert cursor_at("n") == Qt.CursorShape.SizeVerCursor
    assert cursor_at("nw") == Qt.CursorShape.SizeFDiagCursor
    assert cursor_at("ne") == Qt.CursorShape.SizeBDiagCursor
    assert cursor_at("rotate") == Qt.CursorShape.BitmapCursor  # the drawn rotate arrow
    assert cursor_at(QPointF(170 + 30 / z, 170)) == Qt.CursorShape.SizeAllCursor  # inside: move
    assert cursor_at(QPointF(20, 20)) == Qt.CursorShape.CrossCursor  # empty image: draw
    key(qtbot, w, Qt.Key.Key_X)  # rotate by 90 degrees: the east handle points down on screen
    for _ in range(6):
        key(qtbot, w, Qt.Key.Key_X, Qt.KeyboardModifier.ShiftModifier)
    assert c.document.boxes[local].angle % 180 == pytest.approx(91 % 180)
    item = c.box_items[local]
    assert cursor_at("e") == Qt.CursorShape.SizeVerCursor
    assert cursor_at("n") == Qt.CursorShape.SizeHorCursor


def test_keep_zoom_keeps_the_view_across_images_and_is_remembered(screw_window, qtbot, screw_project, clock):
    w = screw_window
    c = w.canvas
    fit_zoom = c.zoom
    c.set_zoom(6.0)
    c.centerOn(QPointF(100, 250))
    key(qtbot, w, Qt.Key.Key_D)  # Keep zoom off: the next image is fitted
    assert c.fitted and c.zoom == pytest.approx(fit_zoom)
    keep = w.actions_["keep_zoom"]
    keep.trigger()
    assert keep.isChecked()
    c.set_zoom(6.0)
    c.centerOn(QPointF(100, 250))
    centre, transform = c.mapToScene(c.viewport().rect().center()), c.transform()
    key(qtbot, w, Qt.Key.Key_A)
    assert w.session.index == 0 and c.transform() == transform
    after = c.mapToScene(c.viewport().rect().center())
    assert (after.x(), after.y()) == pytest.approx((centre.x(), centre.y()), abs=1.0)
    key(qtbot, w, Qt.Key.Key_0)  # Fit on demand
    assert c.fitted and c.zoom == pytest.approx(fit_zoom)
    w.close()
    w2 = open_window(qtbot, screw_project, clock)  # persisted
    assert w2.actions_["keep_zoom"].isChecked() and w2.canvas.keep_zoom
    w2.close()


def test_window_resize_refits_only_while_fitted(screw_window, qtbot):
    w = screw_window
    c = w.canvas
    before = c.zoom
    w.resize(1280, 720)
    qtbot.waitUntil(lambda: c.zoom < before - 0.05, timeout=3000)
    scene = c.mapToScene(c.viewport().rect()).boundingRect()
    assert scene.contains(c.scene().sceneRect())  # the whole image still shows
    c.zoom_in()
    zoomed = c.zoom
    w.resize(1760, 900)
    QApplication.processEvents()
    assert c.zoom == pytest.approx(zoomed) and not c.fitted


def test_window_opens_inside_the_screen(qtbot, small_project, clock):
    from semirest.app.main_window import MainWindow
    from semirest.core.project.store import ProjectStore

    w = MainWindow(ProjectStore.open(small_project), "t", clock=clock)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    avail = w.screen().availableGeometry()  # 800x800 on the offscreen platform
    assert avail.contains(w.frameGeometry())
    frame = w.frameGeometry().size() - w.size()
    assert w.width() == min(1760, avail.width() - frame.width()) and w.height() == min(900, avail.height() - frame.height())
    assert abs(w.frameGeometry().center().x() - avail.center().x()) <= 1
    w.close()


@pytest.mark.parametrize("size", [(1024, 600), (1280, 720)])
def test_train_dock_is_usable_on_small_screens(qtbot, small_project, clock, size):
    from semirest.app.main_window import MainWindow
    from semirest.core.project.store import ProjectStore

    window = MainWindow(ProjectStore.open(small_project), "t", clock=clock)
    qtbot.addWidget(window)
    window.resize(*size)  # as if the screen were this small
    window.show()
    qtbot.waitExposed(window)
    assert window.size() == QSize(*size)
    area = window.train_dock.widget()
    content = area.widget()
    assert area.viewport().height() < content.height()  # taller than the dock: it scrolls
    assert window.canvas.width() >= 0.4 * size[0]
    buttons = [b for b in content.findChildren(QAbstractButton) if b.isVisibleTo(content)]
    names = {b.text() for b in buttons}
    assert {"Start (Ctrl+T)", "Cancel", "Retrain"} <= names and any("Propose" in n for n in names)
    for b in buttons:
        area.ensureWidgetVisible(b)
        QApplication.processEvents()
        r = QRect(b.mapTo(area.viewport(), b.rect().topLeft()), b.size())
        assert area.viewport().rect().contains(r), b.text()
    curve = window.train_panels.training.loss_curve
    curve_rect = QRect(curve.mapTo(content, curve.rect().topLeft()), curve.size())
    for lab in content.findChildren(QLabel):
        if lab.isVisibleTo(content) and lab.text():
            assert not QRect(lab.mapTo(content, lab.rect().topLeft()), lab.size()).intersects(curve_rect), lab.text()
    window.close()


@pytest.fixture
def large_project(tmp_path, real_mvtec):
    """A real image and the same image upscaled to 3000x3000 (a PNG over the preview size limit),
    whose size the project already knows (so its labels show while it decodes)."""
    from semirest.core.data.images import write_png
    from semirest.core.project.store import NewImage, ProjectStore

    src = sorted((real_mvtec / "screw" / "train" / "good").glob("*.png"))[0]
    img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(img, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, big.shape), 0, 255).astype(np.uint8)
    large = tmp_path / "large.png"
    write_png(large, big)
    assert large.stat().st_size >= PREVIEW_MIN_BYTES
    store = ProjectStore.create(tmp_path / "p.sqlite")
    store.add_images([NewImage(src, "small"), NewImage(large, "large")])
    rec = store.images()[1]
    store.set_image_size(rec.id, 3000, 3000)
    store.close()
    return tmp_path / "p.sqlite"


def test_stroke_while_loading_is_applied_when_the_image_arrives(large_project, gate, qtbot, clock):
    w = open_window(qtbot, large_project, clock)
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_D)  # the large image: not read ahead yet (the gate holds it)
    assert w.session.index == 1 and c.loading and c.document.hw == (3000, 3000)
    drag(c, [(1000, 1500), (2000, 1500)])  # brush, 12 px
    assert not c.document.pixels.any()  # not applied yet ...
    assert len(c.queued) > 2 and not c.queue_trail.path().isEmpty()  # ... but queued and shown
    assert "still loading" not in w.statusBar().currentMessage()
    gate.set()
    qtbot.waitUntil(lambda: not c.loading, timeout=15000)
    assert c.document.pixels[1500, 1000:2001].all() and not c.document.pixels[1600].any()
    assert c.queue_trail.path().isEmpty() and c.queued == []
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undoable stroke
    assert not c.document.pixels.any()
    w.close()


def test_stroke_while_loading_is_kept_when_leaving_before_it_arrives(large_project, gate, qtbot, clock):
    w = open_window(qtbot, large_project, clock)
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_D)
    assert c.loading
    doc = c.document
    drag(c, [(500, 500), (800, 500)])
    key(qtbot, w, Qt.Key.Key_A)  # back to the small image before the large one decoded
    assert w.session.index == 0 and doc.pixels[500, 500:801].all()
    gate.set()
    w.close()


def test_keyboard_edits_while_loading_are_applied_in_order_after_the_strokes(large_project, gate, qtbot, clock):
    """Rotate, Delete, undo, redo and class keys made on the loading image act, once it has
    loaded, on the strokes made before them, as if the image had been there all along."""
    from semirest.core.labels.classes import DEFAULT_CLASS_ID
    from semirest.core.project.store import ProjectStore

    store = ProjectStore.open(large_project)
    scratch = store.add_class("scratch").id
    store.close()
    w = open_window(qtbot, large_project, clock)
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_D)
    assert c.loading and c.document.hw == (3000, 3000)
    key(qtbot, w, Qt.Key.Key_R)
    drag(c, [(500, 500), (900, 800)])  # box A, selected when drawn
    key(qtbot, w, Qt.Key.Key_X, Qt.KeyboardModifier.ShiftModifier)  # A turned by +15 degrees
    key(qtbot, w, Qt.Key.Key_2)  # class 2 from now on
    drag(c, [(1500, 1500), (1900, 1700)])  # box B in class 2 ...
    key(qtbot, w, Qt.Key.Key_Delete)  # ... deleted
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # ... and back
    drag(c, [(2200, 2200), (2400, 2400)])  # box C ...
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # ... undone
    key(qtbot, w, Qt.Key.Key_B)
    drag(c, [(1000, 2800), (2000, 2800)])  # a stroke, undone and redone
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    doc = c.document
    assert not doc.boxes and not doc.pixels.any()  # nothing applied yet ...
    message = w.statusBar().currentMessage()
    assert "done when the full image has loaded" in message and "still loading" not in message  # ... all waiting
    gate.set()
    qtbot.waitUntil(lambda: not c.loading, timeout=15000)
    assert c.queued == [] and c.document is doc
    boxes = sorted(doc.boxes.items(), key=lambda kv: kv[1].cx)
    assert len(boxes) == 2
    (a_id, a), (b_id, b) = boxes
    px = 1.1 / c.zoom  # one screen pixel
    assert (a.cx, a.cy, a.angle) == pytest.approx((700, 650, 15), abs=px)
    assert (b.cx, b.cy, b.angle) == pytest.approx((1700, 1600, 0), abs=px)
    assert doc.box_classes[a_id] == DEFAULT_CLASS_ID and doc.box_classes[b_id] == scratch
    assert doc.pixels[2800, 1000:2001].all() and not doc.pixels[2900].any()
    assert w.session.label_class == scratch
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the history is in the order made
    assert not doc.pixels.any() and len(doc.boxes) == 2
    w.close()


def test_escape_while_loading_cancels_the_queued_box_drag(large_project, gate, qtbot, clock):
    from PySide6.QtTest import QTest

    from tests.gui.conftest import view_point

    w = open_window(qtbot, large_project, clock)
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_D)
    key(qtbot, w, Qt.Key.Key_R)
    assert c.loading
    move(c, 500, 500)
    QTest.mousePress(c.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view_point(c, 500, 500))
    move(c, 800, 800, Qt.MouseButton.LeftButton)
    key(qtbot, w, Qt.Key.Key_Escape)
    move(c, 900, 900, Qt.MouseButton.LeftButton)
    QTest.mouseRelease(c.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view_point(c, 900, 900))
    drag(c, [(1500, 1500), (1700, 1700)])  # the next box is kept
    gate.set()
    qtbot.waitUntil(lambda: not c.loading, timeout=15000)
    (box,) = c.document.boxes.values()
    assert (box.cx, box.cy) == pytest.approx((1600, 1600), abs=1.1 / c.zoom)
    w.close()


def test_edits_on_an_image_of_unknown_size_are_refused_with_a_reason(tmp_path, real_mvtec, gate, qtbot, clock):
    """Before a large image's size is known there are no labels to edit: strokes and keys say so."""
    from semirest.core.data.images import write_png
    from semirest.core.project.store import NewImage, ProjectStore

    src = sorted((real_mvtec / "screw" / "train" / "good").glob("*.png"))[0]
    big = cv2.resize(cv2.imread(str(src), cv2.IMREAD_GRAYSCALE), (3000, 3000), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, big.shape), 0, 255).astype(np.uint8)
    write_png(tmp_path / "large.png", big)
    store = ProjectStore.create(tmp_path / "p.sqlite")
    store.add_images([NewImage(src, "small"), NewImage(tmp_path / "large.png", "large")])
    store.close()
    w = open_window(qtbot, tmp_path / "p.sqlite", clock)
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_D)
    assert c.loading and c.document is None
    for k, mods in ((Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier), (Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)):
        w.statusBar().clearMessage()
        key(qtbot, w, k, mods)
        assert "size is known only once it has loaded" in w.statusBar().currentMessage()
    w.statusBar().clearMessage()
    drag(c, [(100, 100), (200, 100)])
    assert "size is known only once it has loaded" in w.statusBar().currentMessage()
    gate.set()
    w.close()


def test_strokes_queued_while_loading_count_from_the_first_press(large_project, gate, qtbot, clock):
    """Strokes made on a loading image are edits only when they are replayed; their time still
    starts at the first queued stroke's press, not at the last real press before the replay."""
    from semirest.core.project.store import ProjectStore
    from tests.gui.test_timing import timed_drag

    w = open_window(qtbot, large_project, clock)
    c, s = w.canvas, w.session
    key(qtbot, w, Qt.Key.Key_D)
    assert c.loading
    large = s.record.id
    clock.advance(5)  # looking at the preview: not counted
    timed_drag(c, clock, [(500, 500), (800, 500)])  # 2 s, queued
    clock.advance(3)
    timed_drag(c, clock, [(500, 900), (800, 900)])  # 2 s, queued
    clock.advance(1)
    assert s.seconds(large) == 0  # no edit yet: no span
    gate.set()
    qtbot.waitUntil(lambda: not c.loading, timeout=15000)
    assert c.document.pixels[500, 500:801].all() and c.document.pixels[900, 500:801].all()
    assert s.seconds(large, "pixel") == pytest.approx(2 + 3 + 2 + 1)
    clock.advance(2)
    key(qtbot, w, Qt.Key.Key_A)
    w.close()
    with ProjectStore.open(large_project) as store:
        assert store.time_totals() == {large: {"pixel": pytest.approx(10)}}
