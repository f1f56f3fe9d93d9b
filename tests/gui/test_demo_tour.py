"""`semirest-studio --demo`: the demo project is built once and reopened; the guided tour steps
through the tools and is dismissed by its button or Escape."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from semirest.core.project.store import ProjectStore
from tests.gui.conftest import open_window


def test_tour_steps_select_the_tools_and_close(qtbot, small_project, clock):
    from semirest.app.tour import TOUR_STEPS, GuidedTour

    w = open_window(qtbot, small_project, clock)
    tour = GuidedTour(w)
    assert tour.isVisible() and tour.counter.text() == f"1 / {len(TOUR_STEPS)}"
    seen = []
    for i in range(1, len(TOUR_STEPS)):
        tour.next.click()
        assert tour.index == i
        action = TOUR_STEPS[i][2]
        if action:
            assert w.actions_[action].isChecked()
            seen.append(action)
    assert seen == ["brush", "block8", "box"]
    # the card lies inside the canvas area and does not take the keyboard focus
    assert w.centralWidget().geometry().contains(tour.geometry().center())
    assert tour.next.focusPolicy() == Qt.FocusPolicy.NoFocus
    tour.back.click()
    assert tour.index == len(TOUR_STEPS) - 2
    QTest.keyClick(w, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not tour.isVisible(), timeout=2000)
    assert tour.dismissed
    w.close()


def test_tour_done_button_dismisses(qtbot, small_project, clock):
    from semirest.app.tour import TOUR_STEPS, GuidedTour

    w = open_window(qtbot, small_project, clock)
    tour = GuidedTour(w)
    for _ in range(len(TOUR_STEPS) - 1):
        tour.next.click()
    assert tour.next.text() == "Done"
    tour.next.click()
    assert tour.dismissed and not tour.isVisible()
    w.close()


def test_demo_flag_builds_the_project_once_and_reopens_it(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1")
    script = tmp_path / "edit.jsonl"
    script.write_text("\n".join(json.dumps(o) for o in (
        {"op": "tool", "name": "block16"}, {"op": "drag", "id": "d1", "points": [[20, 20]]}, {"op": "quit"})) + "\n")
    folder = tmp_path / "démo dir"
    cmd = [sys.executable, "-m", "semirest.app.main", "--demo", "--demo-dir", str(folder), "--script", str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "ack d1" in r.stdout
    with ProjectStore.open(folder / "demo.sqlite", read_only=True) as store:
        recs = store.images()
        assert len(recs) == 42 and all(store.has_reference(r.id) for r in recs if r.defect_type != "good")
        assert store.summary(recs[0].id).block16 == 1
    # the second start reopens the same project: the edit is still there, nothing is rebuilt
    (folder / "edit2.jsonl").write_text(json.dumps({"op": "quit"}) + "\n")
    r = subprocess.run(cmd[:-1] + [str(folder / "edit2.jsonl")], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    with ProjectStore.open(folder / "demo.sqlite", read_only=True) as store:
        assert store.summary(store.images()[0].id).block16 == 1
    r = subprocess.run([sys.executable, "-m", "semirest.app.main", "--demo", "x.sqlite"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "--demo opens its own project" in r.stderr


def test_add_folder_adds_readable_images_and_lists_the_refused_ones(qtbot, small_project, clock, tmp_path):
    import numpy as np

    from semirest.core.data.images import write_png

    folder = tmp_path / "more images"
    folder.mkdir()
    write_png(folder / "neu 1.png", np.full((30, 40), 90, np.uint8))
    (folder / "kaputt.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    w = open_window(qtbot, small_project, clock)
    warnings = []
    w.show_warning = lambda title, text: warnings.append((title, text))
    n = len(w.session.records)
    assert w.add_folder(folder)
    assert len(w.session.records) == n + 1 and w.session.records[-1].hw == (30, 40)
    assert warnings and "kaputt.jpg" in warnings[0][1] and "1 files could not be used" in warnings[0][1]
    w.close()


def test_save_a_copy_writes_one_file_with_the_edits(qtbot, small_project, clock, tmp_path):
    from semirest.core.project.store import ProjectStore

    w = open_window(qtbot, small_project, clock)
    rec = w.session.records[0]
    w.session.store.set_blocks(rec.id, 8, on=[(2, 1)])
    warnings = []
    w.show_warning = lambda title, text: warnings.append((title, text))
    assert w.save_copy(tmp_path / "copy.sqlite")
    assert not w.save_copy(tmp_path / "copy.sqlite") and "already exists" in warnings[0][1]
    w.close()
    assert not (tmp_path / "copy.sqlite-wal").exists()
    with ProjectStore.open(tmp_path / "copy.sqlite", read_only=True) as copy:
        assert (2, 1) in copy.load_labels(rec.id, (120, 160)).blocks[8]


def test_demo_images_are_made_again_if_deleted(tmp_path):
    import shutil

    from semirest.core.project.demo import ensure_demo_project

    project = ensure_demo_project(tmp_path / "demo")
    with ProjectStore.open(project) as store:
        rec = store.images()[0]
        store.set_blocks(rec.id, 8, on=[(0, 0)])
        first = store.image_path(rec).read_bytes()
    shutil.rmtree(tmp_path / "demo" / "data")
    assert ensure_demo_project(tmp_path / "demo") == project
    with ProjectStore.open(project) as store:
        assert store.image_path(rec).read_bytes() == first  # the same deterministic file
        assert store.summary(rec.id).block8 == 1
