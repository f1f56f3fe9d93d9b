"""As a user would: `semirest project create` on the real MVTec screw data, `semirest-studio` on
that project, three images labelled with keyboard shortcuts and mouse drags only (one with each
tool), the window closed, then every export checked."""
import csv
import json

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from semirest.app import main as studio
from semirest.app.main_window import MainWindow
from semirest.core.cli import main as cli
from semirest.core.data.images import read_mask
from tests.gui.conftest import drag


def test_label_three_images_then_export(real_mvtec, tmp_path, qtbot):
    project = tmp_path / "screw.sqlite"
    assert cli(["project", "create", str(project), "--mvtec", str(real_mvtec), "--category", "screw"]) == 0
    log = {}

    def session():
        (w,) = [x for x in QApplication.topLevelWidgets() if isinstance(x, MainWindow) and x.isVisible()]
        qtbot.waitExposed(w)
        w.activateWindow()
        qtbot.waitUntil(w.isActiveWindow)
        c = w.canvas
        press = lambda k, m=Qt.KeyboardModifier.NoModifier: qtbot.keyClick(c, k, m)  # noqa: E731
        while w.session.record.defect_type == "good":  # the test split starts with 41 good images
            press(Qt.Key.Key_D)
        log["images"] = []
        # image 1: pixel brush
        log["images"].append(w.session.record.key)
        press(Qt.Key.Key_B)
        press(Qt.Key.Key_BracketRight)
        drag(c, [(100, 100), (140, 120), (180, 130)])
        qtbot.wait(20)
        press(Qt.Key.Key_D)
        # image 2: 8x8 blocks
        log["images"].append(w.session.record.key)
        press(Qt.Key.Key_K)
        drag(c, [(100, 100), (150, 100), (150, 120)])
        qtbot.wait(20)
        press(Qt.Key.Key_D)
        # image 3: a rotated box, turned by 15 + 1 degrees
        log["images"].append(w.session.record.key)
        press(Qt.Key.Key_R)
        drag(c, [(120, 140), (200, 170)])
        press(Qt.Key.Key_X, Qt.KeyboardModifier.ShiftModifier)
        press(Qt.Key.Key_X)
        qtbot.wait(20)
        press(Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)  # quit

    QTimer.singleShot(0, session)
    assert studio.main([str(project), "--annotator", "inspector-1"]) == 0
    a, b, c = log["images"]
    assert a == "test/manipulated_front/000" and b == "test/manipulated_front/001"

    out = tmp_path / "out"
    for fmt in ("masks", "coco", "dota", "yolo-obb", "timing-csv"):
        assert cli(["project", "export", str(project), "--format", fmt, "--out", str(out / fmt)]) == 0

    masks = {p.relative_to(out / "masks" / "ground_truth").as_posix(): read_mask(p) for p in (out / "masks" / "ground_truth").rglob("*.png")}
    assert sorted(masks) == ["manipulated_front/000_mask.png", "manipulated_front/001_mask.png", "manipulated_front/002_mask.png"]
    brush = masks["manipulated_front/000_mask.png"]
    assert brush.shape == (320, 320) and brush[100, 100] and brush[130, 180] and not brush[10, 10]
    blocks = masks["manipulated_front/001_mask.png"]
    cells = blocks.reshape(40, 8, 40, 8)
    assert (cells.all(axis=(1, 3)) == cells.any(axis=(1, 3))).all()  # whole 8x8 cells only
    assert blocks[100, 100] and blocks[100, 150] and blocks[116, 150] and not blocks[116, 100]
    box = masks["manipulated_front/002_mask.png"]
    assert box[155, 160] and not box[100, 100]

    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert {x["attributes"]["label_type"] for x in coco["annotations"]} == {"pixel", "block8", "box"}
    (dota,) = (out / "dota" / "labelTxt").iterdir()
    assert dota.name == "test__manipulated_front__002.txt"
    corners = np.array(dota.read_text().split()[:8], dtype=float).reshape(4, 2)
    edge = corners[1] - corners[0]
    assert abs(np.degrees(np.arctan2(edge[1], edge[0])) - 16) < 1e-3  # drawn level, then Shift+X and X
    assert abs(np.linalg.norm(edge) - 80) < 0.5  # p0 -> p1 is the width edge
    (yolo,) = (out / "yolo-obb" / "labels" / "train").iterdir()
    assert np.allclose(np.array(yolo.read_text().split()[1:], dtype=float).reshape(4, 2) * 320, corners, atol=1e-3)

    rows = list(csv.DictReader(open(out / "timing-csv" / "timing.csv")))
    got = {(r["image_key"], r["label_type"]) for r in rows}
    assert {(a, "pixel"), (b, "block8"), (c, "box")} <= got
    assert all(r["annotator"] == "inspector-1" and float(r["seconds"]) > 0 for r in rows)
    assert (out / "timing-csv" / "timing.png").stat().st_size > 5000
