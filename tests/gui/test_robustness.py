"""Odd images, a read-only project and a locked project: clear messages, no crash, no lost edit."""
import sqlite3
from unittest import mock

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt

from semirest.app.main_window import open_project_window
from semirest.core.project.store import NewImage, ProjectStore
from tests.gui.conftest import click, drag, key, open_window


@pytest.fixture
def odd_project(tmp_path):
    d = tmp_path / "odd"
    d.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(d / "a_gray16.png"), (rng.random((60, 80)) * 65535).astype(np.uint16))
    rgba = np.zeros((50, 70, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 40
    cv2.imwrite(str(d / "b_rgba.png"), rgba)
    (d / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    cv2.imwrite(str(d / "d_gray8.png"), (rng.random((40, 40)) * 255).astype(np.uint8))
    store = ProjectStore.create(tmp_path / "odd.sqlite")
    store.add_images([NewImage(p, p.stem) for p in sorted(d.iterdir())])
    store.add_images([NewImage(d / "e_missing.png", "e_missing")])
    store.close()
    return tmp_path / "odd.sqlite"


def test_odd_images_are_shown_or_clearly_refused(qtbot, odd_project, clock):
    w = open_window(qtbot, odd_project, clock)
    c, s = w.canvas, w.session
    assert c.image_layer.array.shape == (60, 80)  # 16-bit: shown, scaled to 8 bits
    key(qtbot, w, Qt.Key.Key_D)
    assert c.image_layer.array.shape == (50, 70)  # RGBA: shown without its alpha
    assert (c.image_layer.array.view(np.uint8).reshape(50, 70, 4)[..., 1] == 200).all()
    key(qtbot, w, Qt.Key.Key_D)
    assert c.document is None and c.image_layer.array is None  # corrupt: refused with a reason
    assert "c_corrupt.png" in c.placeholder.text() and "not a readable image" in c.placeholder.text()
    assert c.placeholder.isVisible()
    key(qtbot, w, Qt.Key.Key_B)
    drag(c, [(5, 5), (30, 5)])  # drawing on it does nothing and does not crash
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert "cannot be labelled" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_D)
    assert c.document.hw == (40, 40)
    key(qtbot, w, Qt.Key.Key_D)
    assert c.document is None and "file not found" in c.placeholder.text()
    w.close()


def test_studio_refuses_huge_image_with_a_message(qtbot, odd_project, clock):
    from semirest.app import image_cache

    with mock.patch.object(image_cache, "MAX_STUDIO_PIXELS", 1000):
        w = open_window(qtbot, odd_project, clock)
        assert w.canvas.document is None
        assert "above the studio's limit" in w.canvas.placeholder.text()
        w.close()


def test_bad_project_files_give_a_message_not_a_crash(qtbot, tmp_path):
    errors = []
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    assert open_project_window(junk, "t", show_error=errors.append) is None
    assert "not an SQLite database" in errors[-1]
    con = sqlite3.connect(tmp_path / "future.sqlite")
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT, applied_at TEXT)")
    con.execute("INSERT INTO schema_migrations VALUES (7, 'x', 'y')")
    con.commit()
    con.close()
    assert open_project_window(tmp_path / "future.sqlite", "t", show_error=errors.append) is None
    assert "update the software" in errors[-1]


def test_missing_project_file_is_created_empty(qtbot, tmp_path):
    w = open_project_window(tmp_path / "new.sqlite", "t", show_error=pytest.fail)
    qtbot.addWidget(w)
    assert (tmp_path / "new.sqlite").is_file() and w.session.records == []
    assert "Add image folder" in w.status_labels["image"].text()
    key(qtbot, w, Qt.Key.Key_D)  # nothing to navigate: no crash
    w.close()


def test_read_only_project_cannot_be_edited(qtbot, small_project, clock):
    from semirest.app.main_window import MainWindow

    w = MainWindow(ProjectStore.open(small_project, read_only=True), "t", clock=clock)
    qtbot.addWidget(w)
    w.show()
    assert w.status_labels["save"].text() == "READ-ONLY"
    assert "[read-only]" in w.windowTitle()
    for k in (Qt.Key.Key_B, Qt.Key.Key_K):
        key(qtbot, w, k)
        drag(w.canvas, [(10, 10), (40, 10)])
    assert not w.canvas.document.pixels.any() and not w.canvas.document.labels.blocks[8]
    assert "read-only" in w.statusBar().currentMessage()
    w.close()


def test_locked_project_keeps_edits_and_saves_them_later(window, qtbot, small_project):
    c, s = window.canvas, window.session
    key(qtbot, window, Qt.Key.Key_K)
    click(c, 5, 5)
    other = sqlite3.connect(small_project, timeout=0.1)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the project
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 40), (60, 40)])
    key(qtbot, window, Qt.Key.Key_R)
    drag(c, [(80, 20), (120, 60)])
    assert s.has_unsaved
    assert window.status_labels["save"].text().startswith("NOT SAVED")
    assert "locked by another program" in s.save_error
    drawn = c.document.snapshot()
    assert drawn.pixels.any() and len(drawn.boxes) == 1
    window.ask_unsaved_on_close = lambda: False  # the user chooses to keep the window open
    window.close()
    assert window.isVisible()
    other.rollback()
    other.close()
    qtbot.waitUntil(lambda: not s.has_unsaved, timeout=6000)  # the retry timer saves
    assert window.status_labels["save"].text() == "saved ✓"
    window.close()
    assert not window.isVisible()
    with ProjectStore.open(small_project) as st:
        got = st.load_labels(st.images()[0].id, (120, 160))
    assert np.array_equal(got.pixels, drawn.pixels)
    assert got.blocks[8] == {(0, 0)}
    assert list(got.boxes.values()) == list(drawn.boxes.values())
