"""Timing advances only with input, pauses after 30 s idle and while the window is inactive, goes
to the right image and label type, and is stored with the annotator."""
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from semirest.app.timing import TimeTracker
from semirest.core.project.store import ProjectStore
from tests.gui.conftest import drag, key, move


def test_no_input_no_time(window, clock):
    rec = window.session.record
    clock.advance(100)
    window._tick()
    assert window.session.seconds(rec.id) == 0.0
    assert window.image_list.model.data(window.image_list.model.index(0, 2)) == ""


def test_time_counts_input_and_pauses_after_30s_idle(window, qtbot, clock, small_project):
    c, s = window.canvas, window.session
    img0 = s.record.id
    key(qtbot, window, Qt.Key.Key_B)  # input starts the clock
    clock.advance(4)
    move(c, 10, 10)
    clock.advance(6)
    drag(c, [(20, 20), (40, 20)])
    assert s.seconds(img0, "pixel") == pytest.approx(10)
    clock.advance(100)  # away from the desk: the clock stops 30 s after the last input
    assert s.seconds(img0) == pytest.approx(40)
    move(c, 12, 12)
    clock.advance(2)
    key(qtbot, window, Qt.Key.Key_R)  # switching tool: from now on the time is box time
    clock.advance(3)
    drag(c, [(30, 30), (60, 50)])
    assert s.seconds(img0, "pixel") == pytest.approx(42)
    assert s.seconds(img0, "box") == pytest.approx(3)
    window._tick()
    assert window.image_list.model.data(window.image_list.model.index(0, 2)) == "45.0 s"
    assert "45.0 s" in window.status_labels["time"].text()
    clock.advance(5)
    key(qtbot, window, Qt.Key.Key_D)  # next image: the running span is written
    img1 = s.record.id
    clock.advance(7)
    move(c, 10, 10)
    assert s.seconds(img1) == pytest.approx(7)  # the D key press started image 1's clock
    window.close()
    with ProjectStore.open(small_project) as store:
        totals = store.time_totals()
        spans = store.time_spans()
    assert totals[img0] == pytest.approx({"pixel": 42, "box": 8})
    assert {sp.annotator for sp in spans} == {"tester"}
    assert all(sp.started_at <= sp.ended_at for sp in spans)


def test_inactive_window_stops_the_clock(window, qtbot, clock):
    c, s = window.canvas, window.session
    rec = s.record
    key(qtbot, window, Qt.Key.Key_B)
    clock.advance(5)
    move(c, 10, 10)
    other = QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: not window.isActiveWindow())
    clock.advance(20)
    move(c, 11, 11)  # events while another window is active do not count
    assert s.seconds(rec.id) == pytest.approx(5)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    clock.advance(9)
    move(c, 12, 12)
    clock.advance(1)
    move(c, 13, 13)
    assert s.seconds(rec.id) == pytest.approx(6)


def test_tracker_flushes_long_spans():
    spans, t = [], [0.0]
    tr = TimeTracker(spans.append, "a", clock=lambda: t[0])
    tr.set_target(1, "pixel")
    for _ in range(40):  # 40 s of steady input in 1 s steps
        tr.note_input()
        t[0] += 1.0
    assert sum(sp.seconds for sp in spans) >= 15  # written while still running
    tr.stop()
    assert sum(sp.seconds for sp in spans) == pytest.approx(40)
