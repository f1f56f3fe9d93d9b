"""Grab the real studio window with each tool in use on real images (../shared/data).

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_screenshots.py

Labels are drawn through the same mouse and key events a user makes, copying each image's
reference mask (study mode), so the pictures show the tool as an inspector sees it.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QPointF, QRect, QRectF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.gui.conftest import drag, move  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
OUT = Path(__file__).resolve().parent


def key(w, k, mod=Qt.KeyboardModifier.NoModifier):
    QTest.keyClick(w.canvas, k, mod)
    QApplication.processEvents()


def goto(w, key_name):
    idx = next(i for i, r in enumerate(w.session.records) if r.key == key_name)
    w.session.open_index(idx)
    w.session.wait_until_shown()  # a large file is shown as a preview first
    QApplication.processEvents()


def zoom_to(w, mask, margin=40):
    QApplication.processEvents()  # let docks settle first: a resize would fit the image again
    w.canvas.fitted = False
    ys, xs = np.nonzero(mask)
    r = QRectF(xs.min() - margin, ys.min() - margin, xs.max() - xs.min() + 2 * margin, ys.max() - ys.min() + 2 * margin)
    w.canvas.fitInView(r, Qt.AspectRatioMode.KeepAspectRatio)
    w.canvas._zoom_updated()
    QApplication.processEvents()


def grab(w, name):
    QApplication.processEvents()
    p = OUT / f"{name}.png"
    w.grab().save(str(p))
    print(f"{p.relative_to(ROOT)}: {p.stat().st_size // 1024} KB")


def main() -> int:
    from semirest.app.main_window import MainWindow
    from semirest.core.project.formats import images_from_mvtec
    from semirest.core.project.store import ProjectStore
    from semirest.core.labels.boxes import boxes_from_mask

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp())
    store = ProjectStore.create(tmp / "inspection.sqlite")
    store.add_images(images_from_mvtec(DATA / "mvtec", "screw"))
    tiles = [n for n in images_from_mvtec(DATA / "magnetic_tile", "magnetic_tile") if n.defect_type != "good"]
    for n in tiles:
        object.__setattr__(n, "key", "tile/" + n.key)
    store.add_images(tiles)
    w = MainWindow(store, "inspector")
    w.resize(1400, 900)
    w.show()
    QApplication.processEvents()
    c = w.canvas

    # 1. brush, in study mode: copy the reference shown top-left (paper Fig. 5)
    goto(w, "test/scratch_head/001")
    key(w, Qt.Key.Key_F2)
    ref = w.session.reference_mask
    zoom_to(w, ref, 60)
    key(w, Qt.Key.Key_B)
    (b,) = boxes_from_mask(ref)[:1]
    c.set_brush_size(max(4, int(min(b.width, b.height))))
    corners = b.corners()
    long_axis = (corners[0] + corners[3]) / 2, (corners[1] + corners[2]) / 2
    if b.height > b.width:
        long_axis = (corners[0] + corners[1]) / 2, (corners[3] + corners[2]) / 2
    (x0, y0), (x1, y1) = long_axis
    drag(c, [(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2 + 1), (x1, y1)], steps=10)
    move(c, x1 + 25, y1 + 10)
    grab(w, "brush_study_mode")

    # 2. eraser trimming the stroke
    key(w, Qt.Key.Key_E)
    key(w, Qt.Key.Key_BracketLeft)
    drag(c, [(x1, y1), (x1 - (x1 - x0) * 0.2, y1 - (y1 - y0) * 0.2)], steps=6)
    move(c, x1 - (x1 - x0) * 0.2, y1 - (y1 - y0) * 0.2)
    grab(w, "eraser")
    key(w, Qt.Key.Key_F2)

    # 3. 8x8 blocks, reference shown in green: click every cell the defect touches
    goto(w, "test/thread_side/002")
    ref = w.session.reference_mask
    key(w, Qt.Key.Key_G)
    key(w, Qt.Key.Key_K)
    zoom_to(w, ref, 24)
    cells = ref.reshape(40, 8, 40, 8).mean(axis=(1, 3))
    for r, col in zip(*np.nonzero(cells > 0.25)):
        drag(c, [(col * 8 + 4, r * 8 + 4)])
    grab(w, "blocks_8x8_with_reference")
    key(w, Qt.Key.Key_G)

    # 4. 16x16 blocks on a magnetic tile crack
    goto(w, "tile/test/crack/003")
    ref = w.session.reference_mask
    key(w, Qt.Key.Key_L)
    zoom_to(w, ref, 70)
    h, wd = ref.shape
    for r in range((h + 15) // 16):
        for col in range((wd + 15) // 16):
            if ref[r * 16 : r * 16 + 16, col * 16 : col * 16 + 16].mean() > 0.1:
                drag(c, [(col * 16 + 8, r * 16 + 8)])
    grab(w, "blocks_16x16")

    # 5. rotated boxes: draw level, then turn with Shift+X / X to match the defect
    goto(w, "test/scratch_neck/004")
    ref = w.session.reference_mask
    key(w, Qt.Key.Key_R)
    zoom_to(w, ref, 70)
    for b in boxes_from_mask(ref):
        drag(c, [(b.cx - b.width / 2, b.cy - b.height / 2), (b.cx + b.width / 2, b.cy + b.height / 2)])
        turn = round(b.angle)
        for _ in range(abs(turn) // 15):
            key(w, Qt.Key.Key_X if turn > 0 else Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier)
        for _ in range(abs(turn) % 15):
            key(w, Qt.Key.Key_X if turn > 0 else Qt.Key.Key_Z)
    key(w, Qt.Key.Key_G)
    grab(w, "rotated_box")
    key(w, Qt.Key.Key_G)

    # 6. a 13x9 px box at fit zoom: its 4 corner handles sit outside it (crop, enlarged 4x)
    goto(w, "test/manipulated_front/000")
    key(w, Qt.Key.Key_0)
    drag(c, [(114, 196), (127, 205)], steps=3)
    move(c, 150, 240)
    QApplication.processEvents()
    p = c.mapFromScene(QPointF(120, 200))
    crop = c.viewport().grab(QRect(p.x() - 40, p.y() - 30, 80, 60)).scaled(320, 240)
    crop.save(str(OUT / "small_box_handles.png"))
    print("docs/screenshots/small_box_handles.png")

    # 7. the whole window on a 1024x600 screen: the Train dock scrolls
    w.resize(1024, 600)
    grab(w, "window_1024x600")

    w.image_list.select_row(w.session.index)
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
