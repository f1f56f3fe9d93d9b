"""Image list, A/D navigation, zoom and pan, reference layer and study mode."""
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import click, drag, key, view_point


def test_next_previous_and_list(window, qtbot):
    s, lst = window.session, window.image_list
    assert s.index == 0 and lst.view.selectionModel().selectedRows()[0].row() == 0
    key(qtbot, window, Qt.Key.Key_D)
    assert s.index == 1 and s.record.key == "img01"
    assert window.canvas.document.hw == (100, 130)
    assert lst.view.selectionModel().selectedRows()[0].row() == 1
    key(qtbot, window, Qt.Key.Key_D)
    key(qtbot, window, Qt.Key.Key_D)  # stays on the last image
    assert s.index == 2
    key(qtbot, window, Qt.Key.Key_A)
    assert s.index == 1
    rect = lst.view.visualRect(lst.model.index(lst.model.order.position(2), 0))
    QTest.mouseClick(lst.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    assert s.index == 2
    assert "image 3/3" in window.status_labels["image"].text()


def test_labels_and_history_survive_going_away_and_back(window, qtbot):
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_K)
    click(c, 5, 5)
    model = window.image_list.model
    assert model.data(model.index(0, 1)) == "8: 1"
    from PySide6.QtGui import QColor

    from semirest.app.panels.image_list import UNLABELLED

    def chip(row):  # the first chip's colour of the row's icon
        icon = model.data(model.index(row, 0), Qt.ItemDataRole.DecorationRole)
        return QColor(icon.pixmap(icon.availableSizes()[0]).toImage().pixel(3, 7)).name()

    assert chip(0) == window.session.store.classes()[0].colour  # the cell's class
    assert chip(1) == UNLABELLED.name()
    assert "1 of 3 images labelled" == window.image_list.progress.text()
    key(qtbot, window, Qt.Key.Key_D)
    assert c.document.labels.blocks[8] == set()
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # nothing to undo here
    key(qtbot, window, Qt.Key.Key_A)
    assert c.document.labels.blocks[8] == {(0, 0)}
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert c.document.labels.blocks[8] == set()
    assert model.data(model.index(0, 1)) == "—"


def test_zoom_keys_wheel_and_fit(window, qtbot):
    c = window.canvas
    fit = c.zoom
    assert fit == pytest.approx(min(c.viewport().width() / 176, c.viewport().height() / 136), rel=0.05)
    key(qtbot, window, Qt.Key.Key_Plus)
    assert c.zoom == pytest.approx(fit * 1.25)
    key(qtbot, window, Qt.Key.Key_Minus)
    key(qtbot, window, Qt.Key.Key_Minus)
    assert c.zoom == pytest.approx(fit / 1.25)
    key(qtbot, window, Qt.Key.Key_0)
    assert c.zoom == pytest.approx(fit)
    pos = view_point(c, 40, 30)
    qtbot.wait(1)
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    ev = QWheelEvent(QPointF(pos), QPointF(c.viewport().mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(c.viewport(), ev)
    assert c.zoom == pytest.approx(fit * 1.44)
    # the point under the mouse stays under the mouse
    after = c.mapToScene(pos)
    assert (after.x(), after.y()) == pytest.approx((40, 30), abs=1.0)
    assert f"zoom {c.zoom * 100:.0f}%" == window.status_labels["zoom"].text()


def test_pan_with_middle_button(window, qtbot):
    c = window.canvas
    for _ in range(4):
        key(qtbot, window, Qt.Key.Key_Plus)
    before = c.mapToScene(QPoint(100, 100))
    vp = c.viewport()
    QTest.mousePress(vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(200, 200))
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, QPointF(150, 170), QPointF(vp.mapToGlobal(QPoint(150, 170))), Qt.MouseButton.NoButton, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier))
    QTest.mouseRelease(vp, Qt.MouseButton.MiddleButton, Qt.KeyboardModifier.NoModifier, QPoint(150, 170))
    after = c.mapToScene(QPoint(100, 100))
    assert after.x() - before.x() == pytest.approx(50 / c.zoom, abs=1 / c.zoom + 0.01)
    assert not c.document.pixels.any()  # panning does not paint


def test_reference_layer_and_study_mode(window, qtbot):
    c = window.canvas
    assert c.reference_layer.array is None
    key(qtbot, window, Qt.Key.Key_G)
    ref = c.reference_layer.array
    assert ref is not None and ref.shape == (120, 160)
    assert ref[50, 70] != 0 and ref[10, 10] == 0  # the reference rectangle 40:60, 50:90
    assert not c.document.pixels.any()  # the reference is not a label
    assert c.reference_layer.zValue() < c.label_layer.zValue()
    key(qtbot, window, Qt.Key.Key_F2)
    assert window.study_dock.isVisible()
    pm = window.study.picture.pixmap()
    assert not pm.isNull() and max(pm.width(), pm.height()) == 300
    img = pm.toImage()
    red = img.pixelColor(int(70 * 300 / 160), int(50 * 300 / 160))
    assert red.red() > 150 and red.green() < 120
    assert "reference mask in red" in window.study.caption.text()
    key(qtbot, window, Qt.Key.Key_D)
    assert c.reference_layer.array is None  # image 1 has no reference
    assert "no reference mask" in window.study.caption.text()
    key(qtbot, window, Qt.Key.Key_F2)
    assert not window.study_dock.isVisible()


def test_painting_repaints_only_the_changed_region(window, qtbot, monkeypatch):
    c = window.canvas
    rects = []
    orig = c.label_layer.update
    monkeypatch.setattr(c.label_layer, "update", lambda r=None: (rects.append(r), orig(r) if r is not None else orig()))
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 20), (24, 20)], steps=2)
    assert rects and all(r is not None and r.width() <= 30 and r.height() <= 30 for r in rects)


def _drag_view(canvas, button, start, end):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    vp = canvas.viewport()
    QTest.mousePress(vp, button, Qt.KeyboardModifier.NoModifier, start)
    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, QPointF(end), QPointF(vp.mapToGlobal(end)),
                                           Qt.MouseButton.NoButton, button, Qt.KeyboardModifier.NoModifier))
    QTest.mouseRelease(vp, button, Qt.KeyboardModifier.NoModifier, end)


def test_space_drag_pans_right_drag_does_not_and_the_help_says_so(window, qtbot):
    import re
    from pathlib import Path

    from semirest.app.tour import TOUR_STEPS

    c = window.canvas
    for _ in range(4):
        key(qtbot, window, Qt.Key.Key_Plus)
    before = c.mapToScene(QPoint(100, 100))
    _drag_view(c, Qt.MouseButton.RightButton, QPoint(200, 200), QPoint(150, 170))
    assert c.mapToScene(QPoint(100, 100)) == before  # the right button does not pan
    QTest.keyPress(c, Qt.Key.Key_Space)
    _drag_view(c, Qt.MouseButton.LeftButton, QPoint(200, 200), QPoint(150, 170))
    QTest.keyRelease(c, Qt.Key.Key_Space)
    after = c.mapToScene(QPoint(100, 100))
    assert after.x() - before.x() == pytest.approx(50 / c.zoom, abs=1 / c.zoom + 0.01)
    assert not c.document.pixels.any()  # panning does not paint
    guide = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text(encoding="utf-8").splitlines()
    tour = [step[1] for step in TOUR_STEPS]
    about_panning = [t for t in tour + guide if re.search(r"\bpan(s|ning)?\b", t)]
    assert len(about_panning) >= 2  # the tour's brush card and the guide's line on zoom and pan
    for text in about_panning:
        assert "middle" in text and "Space" in text and not re.search(r"right[- ](drag|button)", text), text
