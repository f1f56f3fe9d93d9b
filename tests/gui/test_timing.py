"""Labeling time on the real window, driven by real key and mouse events and a fake clock: a span
of a label type opens at the first edit of that type (from the press that began it), never at a
tool switch or a navigation key; it counts canvas input only, and closes at an edit of another
type, at leaving the image, when the window loses focus, or 30 s after the last input."""
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget

from semirest.app.timing import TimeTracker
from semirest.core.labels.image_labels import LABEL_TYPES
from semirest.core.project.store import NewImage, ProjectStore
from tests.gui.conftest import key, move, open_window, view_point

N_SCREWS = 20


@pytest.fixture
def screws(real_mvtec, tmp_path):
    """A project over the first 20 real screw images."""
    paths = sorted((real_mvtec / "screw" / "train" / "good").glob("*.png"))[:N_SCREWS]
    assert len(paths) == N_SCREWS
    path = tmp_path / "screws.sqlite"
    with ProjectStore.create(path) as store:
        store.add_images([NewImage(p, f"good/{p.stem}") for p in paths])
    return path


@pytest.fixture
def screw_window(qtbot, screws, clock):
    w = open_window(qtbot, screws, clock)
    yield w
    if w.isVisible():
        w.close()


def timed_drag(canvas, clock, points, seconds_per_step=1.0):
    """A left-button drag through image ``points`` with ``seconds_per_step`` on the clock before
    each move and before the release."""
    vp = canvas.viewport()
    x0, y0 = points[0]
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view_point(canvas, x0, y0))
    for x, y in points[1:]:
        clock.advance(seconds_per_step)
        move(canvas, x, y, Qt.MouseButton.LeftButton)
    clock.advance(seconds_per_step)
    xe, ye = points[-1]
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, view_point(canvas, xe, ye))


def recorded(window) -> dict[int, dict[str, float]]:
    """Every image's seconds by label type, stored and running (types with time only)."""
    s = window.session
    return {r.id: {t: v for t in LABEL_TYPES if (v := s.seconds(r.id, t)) > 0} for r in s.records}


def test_navigation_keys_record_no_time(screw_window, qtbot, clock, screws):
    w = screw_window
    ids = [r.id for r in w.session.records]
    for _ in range(N_SCREWS):  # D through all 20 images, 3 s on each
        clock.advance(3)
        key(qtbot, w, Qt.Key.Key_D)
    assert w.session.index == N_SCREWS - 1
    for _ in range(3):
        clock.advance(3)
        key(qtbot, w, Qt.Key.Key_A)
    w._tick()
    assert recorded(w) == {i: {} for i in ids}
    assert "paused 0.0 s" in w.status_labels["time"].text()
    w.close()
    with ProjectStore.open(screws) as store:
        assert store.time_spans() == []


def test_one_box_on_image_3_is_box_time_only_there(screw_window, qtbot, clock, screws):
    w, s = screw_window, screw_window.session
    key(qtbot, w, Qt.Key.Key_D)
    key(qtbot, w, Qt.Key.Key_D)
    third = s.record.id
    assert s.index == 2 and s.wait_until_shown()
    clock.advance(5)
    key(qtbot, w, Qt.Key.Key_R)  # the box tool: choosing it starts nothing
    clock.advance(5)
    move(w.canvas, 100, 100)  # hovering is not activity either
    clock.advance(5)
    assert recorded(w)[third] == {}
    timed_drag(w.canvas, clock, [(100, 100), (140, 120), (180, 160), (200, 170)])  # 4 s from press to release
    assert len(s.document.boxes) == 1
    assert s.seconds(third, "box") == pytest.approx(4.0)  # back-dated to the press, not before it
    clock.advance(2)
    key(qtbot, w, Qt.Key.Key_D)  # leaving the image closes the span: the 2 s before count
    for _ in range(N_SCREWS):
        clock.advance(3)
        key(qtbot, w, Qt.Key.Key_D)
    expect = {r.id: {} for r in s.records}
    expect[third] = {"box": pytest.approx(6.0)}
    assert recorded(w) == expect
    w.close()
    with ProjectStore.open(screws) as store:
        assert store.time_totals() == {third: {"box": pytest.approx(6.0)}}
        (span,) = store.time_spans()
    assert span.annotator == "tester" and span.started_at < span.ended_at


def test_an_edit_of_another_type_takes_the_time_from_its_press(window, qtbot, clock):
    w, s = window, window.session
    img = s.record.id
    key(qtbot, w, Qt.Key.Key_B)
    timed_drag(w.canvas, clock, [(20, 20), (40, 20)])  # 2 s of painting
    clock.advance(3)
    key(qtbot, w, Qt.Key.Key_R)  # a key on the canvas: still the pixel span's time
    clock.advance(4)
    timed_drag(w.canvas, clock, [(60, 40), (90, 70)])  # the box's 2 s from its press on
    assert s.seconds(img, "pixel") == pytest.approx(2 + 3 + 4)
    assert s.seconds(img, "box") == pytest.approx(2)
    clock.advance(1)
    key(qtbot, w, Qt.Key.Key_K)
    timed_drag(w.canvas, clock, [(10, 10), (30, 10)])
    assert s.seconds(img, "box") == pytest.approx(3)
    assert s.seconds(img, "block8") == pytest.approx(2)
    w._tick()
    assert "● timing block8" in w.status_labels["time"].text()


def test_idle_limit_closes_the_span(window, qtbot, clock):
    w, s = window, window.session
    img = s.record.id
    timed_drag(w.canvas, clock, [(20, 20), (40, 20)])
    clock.advance(100)  # away from the desk: the span ends 30 s after the last input
    assert s.seconds(img) == pytest.approx(32)
    move(w.canvas, 30, 30, Qt.MouseButton.LeftButton)
    clock.advance(10)
    move(w.canvas, 31, 30, Qt.MouseButton.LeftButton)  # input without an edit opens nothing
    assert s.seconds(img) == pytest.approx(32)
    assert not s.tracker.running
    timed_drag(w.canvas, clock, [(20, 50), (40, 50)])
    assert s.seconds(img, "pixel") == pytest.approx(34)


def test_inactive_window_closes_the_span(window, qtbot, clock):
    w, s = window, window.session
    img = s.record.id
    timed_drag(w.canvas, clock, [(20, 20), (40, 20)])
    clock.advance(3)
    other = QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: not w.isActiveWindow())
    clock.advance(20)
    move(w.canvas, 11, 11, Qt.MouseButton.LeftButton)  # events while another window is active do not count
    assert s.seconds(img) == pytest.approx(5)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    clock.advance(9)
    move(w.canvas, 12, 12, Qt.MouseButton.LeftButton)
    clock.advance(1)
    move(w.canvas, 13, 13, Qt.MouseButton.LeftButton)
    assert s.seconds(img) == pytest.approx(5)  # the span closed with the focus
    timed_drag(w.canvas, clock, [(20, 50), (40, 50)])
    assert s.seconds(img) == pytest.approx(7)


def test_the_train_panel_and_image_list_do_not_count(window, qtbot, clock):
    w, s = window, window.session
    img = s.record.id
    timed_drag(w.canvas, clock, [(20, 20), (40, 20)])
    clock.advance(1)
    steps = w.train_panels.training.steps
    qtbot.mouseClick(steps, Qt.MouseButton.LeftButton)  # the Steps box: the count pauses here
    clock.advance(10)
    qtbot.keyClick(steps, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(steps, "250")
    clock.advance(10)
    lst = w.image_list.view.viewport()
    QTest.mouseMove(lst, QPoint(10, 10))
    clock.advance(10)
    assert steps.value() == 250
    assert s.seconds(img) == pytest.approx(3)
    w.canvas.setFocus()
    timed_drag(w.canvas, clock, [(20, 50), (40, 50)])  # back on the canvas: the open span counts on
    assert s.seconds(img, "pixel") == pytest.approx(5)


def test_tracker_flushes_long_spans():
    spans, t = [], [0.0]
    tr = TimeTracker(spans.append, "a", clock=lambda: t[0])
    tr.set_image(1)
    tr.note_input(press=True)
    tr.note_edit("pixel")
    for _ in range(40):  # 40 s of steady input in 1 s steps
        t[0] += 1.0
        tr.note_input()
    assert sum(sp.seconds for sp in spans) >= 15  # written while still running
    tr.stop()
    assert sum(sp.seconds for sp in spans) == pytest.approx(40)
    assert {sp.label_type for sp in spans} == {"pixel"}


def test_go_to_and_find_keys_pause_the_count(window, qtbot, clock):
    """Ctrl+G and Ctrl+F take the keyboard from the canvas to a box of the image list: the time
    from the key to the box's first character (or to the next image) is navigation, not labeling."""
    w, s = window, window.session
    first = s.record.id
    timed_drag(w.canvas, clock, [(20, 20), (40, 20)])  # 2 s of painting
    clock.advance(3)  # looking at the stroke: counts, up to the key
    key(qtbot, w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    name = w.image_list.filter_bar.name
    assert name.hasFocus()
    clock.advance(4)
    qtbot.keyClicks(name, "x")
    clock.advance(4)
    qtbot.keyClick(name, Qt.Key.Key_Escape)
    assert w.canvas.hasFocus()
    clock.advance(2)  # back on the canvas, before its next input: not counted
    assert s.seconds(first, "pixel") == pytest.approx(5)
    timed_drag(w.canvas, clock, [(20, 50), (40, 50)])  # the open span counts on
    assert s.seconds(first, "pixel") == pytest.approx(7)
    clock.advance(3)
    key(qtbot, w, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    box = w.image_list.filter_bar.go_to_box
    assert box.hasFocus()
    clock.advance(4)
    qtbot.keyClicks(box, "3")
    clock.advance(4)
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert s.index == 2
    assert recorded(w)[first] == {"pixel": pytest.approx(10)}
    assert all(v == {} for i, v in recorded(w).items() if i != first)
