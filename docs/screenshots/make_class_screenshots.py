"""Grab the studio with labels of three defect classes on real screw images (../shared/data):
class colours and name tags on the canvas, class chips in the image list, and the toolbar of a
1024x600 window.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_class_screenshots.py

Every label is drawn through the mouse and key events a user makes (keys 1-3 pick the class).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QRect, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QToolBar  # noqa: E402

ROOT = Path(__file__).resolve().parent.parents[1]
sys.path.insert(0, str(ROOT))
from tests.gui.conftest import drag, move  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_screenshots import DATA, OUT, goto, grab, key, zoom_to  # noqa: E402


def label_image(w, name: str, brush_class: int | None, cell_class: int | None, box_class: int | None) -> np.ndarray:
    """Label one image's reference defect: a brush stroke along it, 8x8 cells over one end and a
    box around it, each in the given class (None: that label type is left out)."""
    from semirest.core.labels.boxes import boxes_from_mask

    c = w.canvas
    goto(w, name)
    ref = w.session.reference_mask
    (b,) = boxes_from_mask(ref)[:1]
    corners = b.corners()
    a, z = (corners[0] + corners[3]) / 2, (corners[1] + corners[2]) / 2
    if b.height > b.width:
        a, z = (corners[0] + corners[1]) / 2, (corners[3] + corners[2]) / 2
    if brush_class:
        key(w, getattr(Qt.Key, f"Key_{brush_class}"))
        key(w, Qt.Key.Key_B)
        c.set_brush_size(max(3, int(min(b.width, b.height) * 0.8)))
        drag(c, [tuple(a), tuple((a + z) / 2), tuple(z)], steps=10)
    if cell_class:
        key(w, getattr(Qt.Key, f"Key_{cell_class}"))
        key(w, Qt.Key.Key_K)
        ys, xs = np.nonzero(ref)
        far = xs > np.percentile(xs, 60)  # one end of the defect in cells
        for r, col in {(int(y) // 8, int(x) // 8) for y, x in zip(ys[far], xs[far])}:
            drag(c, [(col * 8 + 4, r * 8 + 4)])
    if box_class:
        key(w, getattr(Qt.Key, f"Key_{box_class}"))
        key(w, Qt.Key.Key_R)
        m = 6
        drag(c, [(b.cx - b.width / 2 - m, b.cy - b.height / 2 - m), (b.cx + b.width / 2 + m, b.cy + b.height / 2 + m)])
        turn = round(b.angle)
        for _ in range(abs(turn) // 15):
            key(w, Qt.Key.Key_X if turn > 0 else Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier)
        for _ in range(abs(turn) % 15):
            key(w, Qt.Key.Key_X if turn > 0 else Qt.Key.Key_Z)
    return ref


def main() -> int:
    from semirest.app.main_window import MainWindow
    from semirest.core.project.formats import images_from_mvtec
    from semirest.core.project.store import ProjectStore

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp())
    store = ProjectStore.create(tmp / "inspection.sqlite")
    store.add_images([n for n in images_from_mvtec(DATA / "mvtec", "screw") if n.key.startswith("test/")])
    store.add_class("scratch")
    store.add_class("thread")
    w = MainWindow(store, "inspector")
    w._show_class_colours()
    w.resize(1400, 900)
    w.show()
    app.processEvents()
    c = w.canvas
    # a few labelled rows for the list's chips, then the picture's image with all three classes
    label_image(w, "test/manipulated_front/000", 1, None, 1)
    label_image(w, "test/manipulated_front/001", None, 3, 3)
    label_image(w, "test/manipulated_front/002", 2, 1, None)
    ref = label_image(w, "test/scratch_head/001", 2, 3, 1)
    # a 16x16 cell region elsewhere, in class 1
    key(w, Qt.Key.Key_1)
    key(w, Qt.Key.Key_L)
    ys, xs = np.nonzero(ref)
    y0, x0 = int(ys.max()) + 24, int(xs.min())
    drag(c, [(x0, y0), (x0 + 40, y0)])
    c.select_box(None)  # the box in its class colour, not the selection's yellow
    zoom_to(w, ref, 70)
    c.refresh_region_tags()
    c._zoom_updated()
    move(c, x0 + 80, y0 + 30)
    QApplication.processEvents()
    grab(w, "classes_on_canvas")
    lst = w.image_list.view
    lst.viewport().grab(QRect(0, 0, lst.viewport().width(), 12 * 22)).save(str(OUT / "classes_image_list.png"))
    print("docs/screenshots/classes_image_list.png")

    w.resize(1024, 600)
    QApplication.processEvents()
    grab(w, "toolbar_1024")
    bar = w.findChild(QToolBar, "tools_toolbar")
    shown = [a.iconText() for a in bar.actions() if not a.isSeparator() and bar.widgetForAction(a).isVisible()]
    print(f"toolbar at 1024 px: {bar.sizeHint().width()} px wanted of {bar.width()}; buttons {shown}")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
