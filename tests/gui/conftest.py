"""Fixtures for driving the real studio window: a fake clock for timing, and mouse drags that
carry the held button (QTest's mouseMove does not)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """Studio settings (View ▸ Keep zoom…) in a fresh folder per test, never the user's."""
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path_factory.mktemp("settings")))


@pytest.fixture
def clock():
    return FakeClock()


def open_window(qtbot, project, clock, annotator="tester"):
    from semirest.app.main_window import MainWindow
    from semirest.core.project.store import ProjectStore

    w = MainWindow(ProjectStore.open(project), annotator, clock=clock)
    w.resize(1760, 900)  # the preferred size; the offscreen screen (800x800) would make it smaller
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    return w


@pytest.fixture
def window(qtbot, small_project, clock):
    w = open_window(qtbot, small_project, clock)
    yield w
    if w.isVisible():
        w.close()


def view_point(canvas, x: float, y: float):
    """Viewport position of image point (x, y)."""
    return canvas.mapFromScene(QPointF(x, y))


def move(canvas, x, y, buttons=Qt.MouseButton.NoButton, modifiers=Qt.KeyboardModifier.NoModifier):
    vp = canvas.viewport()
    p = QPointF(view_point(canvas, x, y))
    ev = QMouseEvent(QEvent.Type.MouseMove, p, QPointF(vp.mapToGlobal(p.toPoint())), Qt.MouseButton.NoButton, buttons, modifiers)
    QApplication.sendEvent(vp, ev)


def drag(canvas, points, modifiers=Qt.KeyboardModifier.NoModifier, steps=4):
    """Press at the first image point, move through the others (``steps`` events per segment),
    release at the last, as a user's mouse drag."""
    vp = canvas.viewport()
    x0, y0 = points[0]
    move(canvas, x0, y0)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, modifiers, view_point(canvas, x0, y0))
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        for i in range(1, steps + 1):
            move(canvas, ax + (bx - ax) * i / steps, ay + (by - ay) * i / steps, Qt.MouseButton.LeftButton, modifiers)
    xe, ye = points[-1]
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, modifiers, view_point(canvas, xe, ye))


def click(canvas, x, y):
    drag(canvas, [(x, y)])


def key(qtbot, window, k, modifiers=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(window.canvas, k, modifiers)


@pytest.fixture
def gate(monkeypatch):
    """Large images decode only once the gate is opened (small ones pass at once), or after 5 s,
    so that a failing test that never opens it still closes its window."""
    import threading

    from semirest.app import image_cache
    from semirest.core.project.previews import PREVIEW_MIN_BYTES

    opened = threading.Event()
    real = image_cache.load_for_display

    def gated(path, previews=None):
        if path.stat().st_size >= PREVIEW_MIN_BYTES:
            opened.wait(5)
        return real(path, previews)

    monkeypatch.setattr(image_cache, "load_for_display", gated)
    return opened
