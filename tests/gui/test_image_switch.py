"""Switching to a large image never waits for its decoding: the preview (or "Loading…") is shown
at once with the labels at image resolution, strokes made on it apply when the full image arrives, and the full image
replaces the preview without losing the view. The decoder is held back by a gate, so the test
sees the in-between state deterministically on any machine."""

import numpy as np
import pytest
from PySide6.QtCore import QRectF, Qt
from PySide6.QtTest import QTest

from semirest.core.project.previews import PREVIEW_MIN_BYTES, PREVIEW_SIDE, PreviewStore, preview_folder
from tests.gui.conftest import drag, key, open_window

BIG_HW = (1300, 1500)  # noise PNG: about 2 MB, so it is "large" (gets a preview, decodes async)


@pytest.fixture
def mixed_project(tmp_path):
    from semirest.core.data.images import write_png
    from semirest.core.project.store import NewImage, ProjectStore

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(4):
        p = folder / f"im{i}.png"
        hw = BIG_HW if i % 2 else (90, 120)
        write_png(p, rng.integers(0, 256, hw, dtype=np.uint8))
        paths.append(p)
    assert paths[1].stat().st_size >= PREVIEW_MIN_BYTES and paths[0].stat().st_size < PREVIEW_MIN_BYTES
    store = ProjectStore.create(tmp_path / "p.sqlite")
    store.add_images([NewImage(p, p.stem) for p in paths])
    store.close()
    return tmp_path / "p.sqlite", paths


def click_row(window, row):
    lst = window.image_list
    rect = lst.view.visualRect(lst.model.index(lst.model.order.position(row), 0))
    QTest.mouseClick(lst.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def test_jump_to_large_image_shows_at_once_and_edits_after_full_image(mixed_project, gate, qtbot, clock):
    project, paths = mixed_project
    w = open_window(qtbot, project, clock)
    c, s = w.canvas, w.session
    assert s.index == 0 and not c.loading  # small image: shown directly
    click_row(w, 3)  # a jump: image 3 is not read ahead from image 0
    assert s.index == 3 and c.loading
    assert c.document is None and c.placeholder.isVisible() and "Loading" in c.placeholder.text()  # size unknown yet
    key(qtbot, w, Qt.Key.Key_F2)  # study mode while loading: says so, then shows the image
    assert w.study.picture.text() == "Loading…"
    gate.set()
    qtbot.waitUntil(lambda: not c.loading, timeout=10000)
    assert w.study.picture.pixmap().width() > 0
    assert c.image_layer.array.shape == BIG_HW and c.image_layer.transform().isIdentity()
    assert c.document.hw == BIG_HW and s.record.hw == BIG_HW
    assert s.loaded.bgra.shape[:2] == BIG_HW
    # the decode left a preview next to the project, never next to the images
    previews = PreviewStore(preview_folder(project))
    p = previews.get(paths[3])
    assert p is not None and p.full_hw == BIG_HW and max(p.image.shape) == PREVIEW_SIDE
    assert sorted(x.name for x in paths[0].parent.iterdir()) == [x.name for x in paths]
    key(qtbot, w, Qt.Key.Key_B)
    drag(c, [(700, 600), (760, 640)])
    assert c.document.pixels[600:641, 700:761].any()
    w.close()


def test_preview_keeps_labels_aligned_and_strokes_wait(mixed_project, gate, qtbot, clock):
    project, paths = mixed_project
    gate.set()
    w = open_window(qtbot, project, clock)  # first session: view image 1 fully, paint, leave
    key(qtbot, w, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: not w.canvas.loading, timeout=10000)
    key(qtbot, w, Qt.Key.Key_B)
    drag(w.canvas, [(100, 1200), (300, 1200)])
    painted = w.canvas.document.pixels.copy()
    assert painted[1200, 100:300].all()
    w.close()

    gate.clear()
    w = open_window(qtbot, project, clock)  # next day: nothing decoded, previews on disk
    c, s = w.canvas, w.session
    click_row(w, 1)
    assert s.index == 1 and c.loading
    # the preview is small but covers the whole image, so labels sit where they were drawn
    pa = c.image_layer.array
    assert max(pa.shape) == PREVIEW_SIDE
    assert c.image_layer.mapRectToScene(c.image_layer.boundingRect()) == QRectF(0, 0, BIG_HW[1], BIG_HW[0])
    assert c.label_layer.array.shape == BIG_HW and (c.label_layer.array[1200, 100:300] != 0).all()
    assert c.scene().sceneRect() == QRectF(0, 0, BIG_HW[1], BIG_HW[0])
    # a stroke on the preview waits for the full image, then applies
    key(qtbot, w, Qt.Key.Key_E)
    drag(c, [(100, 1200), (300, 1200)])
    assert (c.document.pixels == painted).all() and c.queued
    c.set_zoom(2.0)  # the inspector zooms in meanwhile: the swap must keep it
    gate.set()
    qtbot.waitUntil(lambda: not c.loading, timeout=10000)
    assert c.zoom == pytest.approx(2.0)
    assert c.image_layer.array.shape == BIG_HW and c.image_layer.transform().isIdentity()
    assert not c.document.pixels[1200, 110:290].any()
    w.close()


def test_neighbours_are_read_ahead_in_both_directions(mixed_project, gate, qtbot, clock):
    project, paths = mixed_project
    gate.set()
    w = open_window(qtbot, project, clock)
    s = w.session
    click_row(w, 2)  # small image between two large ones
    assert s.index == 2 and not w.canvas.loading
    qtbot.waitUntil(lambda: s.cache.idle, timeout=10000)
    assert s.cache.lookup(paths[1]) is not None and s.cache.lookup(paths[3]) is not None
    key(qtbot, w, Qt.Key.Key_A)  # read ahead: shown at once, no loading state
    assert s.index == 1 and not w.canvas.loading and w.canvas.image_layer.array.shape == BIG_HW
    w.close()


def test_labels_do_not_leak_between_images_of_the_same_size(mixed_project, gate, qtbot, clock):
    """The label overlay buffer is reused across images of the same size: it must come back clean."""
    project, paths = mixed_project
    gate.set()
    w = open_window(qtbot, project, clock)
    c = w.canvas
    key(qtbot, w, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: not c.loading, timeout=10000)
    key(qtbot, w, Qt.Key.Key_L)
    drag(c, [(40, 40), (400, 300)])  # 16x16 blocks
    key(qtbot, w, Qt.Key.Key_B)
    drag(c, [(1000, 1200), (1400, 100)])
    assert (c.label_layer.array != 0).sum() > 10000
    click_row(w, 3)  # same size, straight from image 1
    qtbot.waitUntil(lambda: not c.loading, timeout=10000)
    assert w.session.index == 3 and c.label_layer.array.shape == BIG_HW
    assert not c.label_layer.array.any()
    click_row(w, 1)
    qtbot.waitUntil(lambda: not c.loading, timeout=10000)
    assert c.label_layer.array[1200, 1000] != 0 and c.label_layer.array[50, 50] != 0
    w.close()


def test_background_sweep_makes_missing_previews_without_visiting(mixed_project, gate, qtbot, clock):
    project, paths = mixed_project
    gate.set()
    w = open_window(qtbot, project, clock)  # on image 0 (small); images 1 and 3 are large
    assert w.session.index == 0
    qtbot.waitUntil(lambda: all(PreviewStore(preview_folder(project)).has(p) for p in (paths[1], paths[3])), timeout=15000)
    assert not PreviewStore(preview_folder(project)).has(paths[0])  # small files need none
    qtbot.waitUntil(lambda: not w.session._sweep.isActive(), timeout=5000)  # the sweep ends
    w.close()
