"""An annotation-time study (the paper's Fig. 6) made with the real studio window.

Creates a project from an MVTec category with `semirest project create`, opens the studio's main
window (offscreen unless a display is set), turns on study mode (F2) and the reference overlay (G),
and labels the same N defective images once with each label type by real Qt input events
(QTest key clicks, mouse presses, moves with the button held, releases) sent to the canvas:

* pixel: brush strokes along the rows of each defect region (brush about a quarter of the
  region's height, one stroke per run of covered pixels on a row);
* block8 / block16: one drag per run of covered cells in each row of cells;
* box: one rotated box per connected defect region (cv2.minAreaRect), drawn as an upright box of
  the rectangle's size by a drag, then turned with Shift+X (15 degrees) and X (1 degree).

Where to click comes from the reference mask the window shows. Pacing imitates a person: the
mouse moves at about 600 screen px/s (an event every 15 ms), a pause between strokes, a look at
each image before the first stroke, and a check after the last one. The studio's own timing then
records the spans; the timing CSV and chart are written by the studio's export (the code behind
File > Export... > timing-csv).

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/study_timing.py \\
        --mvtec ../shared/data/mvtec --category screw --images 20 --out study_out

The labeller is this script: the seconds measure the tool's timing rules and overheads under
this pacing, not a human inspector's speed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

PACE = dict(
    look_s=1.2,  # looking at a new image before the first stroke (not counted: spans open at the first press)
    between_strokes_s=0.35,  # lifting the pen, moving to the next stroke
    check_s=0.6,  # looking over the result before the next image (counted: the span runs until leaving)
    event_ms=15,  # one mouse-move event every 15 ms
    speed_px_s=600.0,  # screen pixels per second while dragging
    key_ms=120,  # between two key presses
)
TOOL_KEYS = {"pixel": "B", "block8": "K", "block16": "L", "box": "R"}


def create_project(path: Path, mvtec: Path, category: str) -> None:
    for old in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):  # a left-over WAL would bring old spans back
        if old.exists():
            old.unlink()
    subprocess.run([sys.executable, "-m", "semirest.core.cli", "project", "create", str(path),
                    "--mvtec", str(mvtec), "--category", category], check=True)


class Driver:
    """Real input events to the studio window, with human-like pacing."""

    def __init__(self, window, rng: random.Random):
        from PySide6.QtTest import QTest

        self.w, self.c, self.QTest, self.rng = window, window.canvas, QTest, rng

    def wait(self, seconds: float) -> None:
        self.QTest.qWait(max(1, int(seconds * 1000 * self.rng.uniform(0.8, 1.2))))

    def key(self, text: str, modifiers=None) -> None:
        from PySide6.QtGui import QKeySequence

        seq = QKeySequence(text)[0]
        self.QTest.keyClick(self.c, seq.key(), modifiers if modifiers is not None else seq.keyboardModifiers())
        self.QTest.qWait(PACE["key_ms"])

    def _point(self, x: float, y: float):
        from PySide6.QtCore import QPointF

        return self.c.mapFromScene(QPointF(x, y))

    def _move(self, x: float, y: float, held: bool) -> None:
        from PySide6.QtCore import QEvent, QPointF, Qt
        from PySide6.QtGui import QMouseEvent
        from PySide6.QtWidgets import QApplication

        vp = self.c.viewport()
        p = QPointF(self._point(x, y))
        buttons = Qt.MouseButton.LeftButton if held else Qt.MouseButton.NoButton
        ev = QMouseEvent(QEvent.Type.MouseMove, p, QPointF(vp.mapToGlobal(p.toPoint())), Qt.MouseButton.NoButton,
                         buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)

    def drag(self, points: list[tuple[float, float]]) -> None:
        """Press at the first image point, move through the others at the pacing speed, release."""
        from PySide6.QtCore import Qt

        vp, nomod = self.c.viewport(), Qt.KeyboardModifier.NoModifier
        x0, y0 = points[0]
        self._move(x0, y0, False)
        self.QTest.mousePress(vp, Qt.MouseButton.LeftButton, nomod, self._point(x0, y0))
        step_px = PACE["speed_px_s"] * PACE["event_ms"] / 1000.0 / max(self.c.zoom, 1e-6)  # image px per event
        for (ax, ay), (bx, by) in zip(points, points[1:]):
            n = max(1, math.ceil(math.hypot(bx - ax, by - ay) / step_px))
            for i in range(1, n + 1):
                self._move(ax + (bx - ax) * i / n, ay + (by - ay) * i / n, True)
                self.QTest.qWait(PACE["event_ms"])
        xe, ye = points[-1]
        self.QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, nomod, self._point(xe, ye))

    def go_to(self, number: int) -> None:
        """Ctrl+G, the image's number, Enter (as in 'image N/M')."""
        from PySide6.QtCore import Qt

        self.key("Ctrl+G")
        box = self.w.image_list.filter_bar.go_to_box
        self.QTest.keyClicks(box, str(number), delay=60)
        self.QTest.keyClick(box, Qt.Key.Key_Return)
        self.QTest.qWait(50)
        if not self.c.hasFocus():
            raise SystemExit("the canvas did not get the keyboard back after Ctrl+G")


def regions(mask: np.ndarray) -> list[np.ndarray]:
    n, lab = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    return [(lab == k) for k in range(1, n)]


def pixel_strokes(mask: np.ndarray, brush_sizes) -> list[tuple[int, list[tuple[float, float]]]]:
    """(brush size, points) per stroke: runs of covered pixels along rows spaced one brush apart."""
    strokes = []
    for reg in regions(mask):
        ys, xs = np.nonzero(reg)
        height = ys.max() - ys.min() + 1
        size = max(s for s in brush_sizes if s <= max(2, min(24, height / 3)))
        for y in np.arange(ys.min() + size / 2, ys.max() + 1, max(1, size * 0.8)):
            row = reg[int(min(y, reg.shape[0] - 1))]
            cols = np.flatnonzero(row)
            if cols.size == 0:
                continue
            runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
            for r in runs:
                strokes.append((size, [(r[0] + 0.5, y), (r[-1] + 0.5, y)]))
    return strokes


def block_drags(mask: np.ndarray, grid: int) -> list[list[tuple[float, float]]]:
    """One drag per run of covered cells in each row of cells (cell centres)."""
    h, w = mask.shape
    rows, cols = h // grid, w // grid
    cells = mask[: rows * grid, : cols * grid].reshape(rows, grid, cols, grid).any(axis=(1, 3))
    drags = []
    for r in range(rows):
        on = np.flatnonzero(cells[r])
        if on.size == 0:
            continue
        for run in np.split(on, np.flatnonzero(np.diff(on) > 1) + 1):
            y = (r + 0.5) * grid
            drags.append([((run[0] + 0.5) * grid, y), ((run[-1] + 0.5) * grid, y)])
    return drags


def box_plans(mask: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """(cx, cy, width, height, angle clockwise in degrees) per connected region, cv2.minAreaRect."""
    plans = []
    for reg in regions(mask):
        ys, xs = np.nonzero(reg)
        pts = np.stack([xs, ys], 1).astype(np.float32)
        pts = np.concatenate([pts, pts + [1, 0], pts + [0, 1], pts + [1, 1]]).astype(np.float32)  # pixel corners
        (cx, cy), (bw, bh), a = cv2.minAreaRect(pts)
        plans.append((cx, cy, max(bw, 2.0), max(bh, 2.0), a))
    return plans


def label(driver: Driver, label_type: str, mask: np.ndarray) -> dict:
    """Label one image with one label type from its reference mask; returns what was made."""
    from semirest.app.canvas.view import BRUSH_SIZES

    c, made = driver.c, 0
    if label_type == "pixel":
        for size, pts in pixel_strokes(mask, BRUSH_SIZES):
            while c.brush_size != size:
                driver.key("]" if c.brush_size < size else "[")
            driver.drag(pts)
            made += 1
            driver.wait(PACE["between_strokes_s"])
    elif label_type in ("block8", "block16"):
        for pts in block_drags(mask, 8 if label_type == "block8" else 16):
            driver.drag(pts)
            made += 1
            driver.wait(PACE["between_strokes_s"])
    else:
        for cx, cy, bw, bh, a in box_plans(mask):
            a = int(round(a))
            if a > 45:  # the same rectangle, turned the other way with width and height swapped
                a, bw, bh = a - 90, bh, bw
            elif a < -45:
                a, bw, bh = a + 90, bh, bw
            driver.drag([(cx - bw / 2, cy - bh / 2), (cx + bw / 2, cy + bh / 2)])
            steps15, steps1 = divmod(abs(a), 15)
            big, small = ("Shift+X", "X") if a > 0 else ("Shift+Z", "Z")  # X turns clockwise
            for _ in range(steps15):
                driver.key(big)
            for _ in range(steps1):
                driver.key(small)
            made += 1
            driver.wait(PACE["between_strokes_s"])
    return {"strokes": made}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mvtec", type=Path, required=True)
    ap.add_argument("--category", default="screw")
    ap.add_argument("--images", type=int, default=20, help="defective images labelled with each label type")
    ap.add_argument("--types", default="pixel,block8,block16,box")
    ap.add_argument("--out", type=Path, default=Path("study_out"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    args.out.mkdir(parents=True, exist_ok=True)
    project = args.out / "study.sqlite"
    create_project(project, args.mvtec, args.category)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(args.out / "settings"))
    app = QApplication.instance() or QApplication(["study"])
    from semirest.app.main_window import MainWindow
    from semirest.core.project.formats import export, mean_seconds_per_image, timing_rows
    from semirest.core.project.store import ProjectStore

    w = MainWindow(ProjectStore.open(project), "study-script")
    w.resize(1760, 900)
    w.show()
    w.activateWindow()
    t_end = time.monotonic() + 5
    while not w.isActiveWindow() and time.monotonic() < t_end:
        app.processEvents()
    if not w.isActiveWindow():
        raise SystemExit("the window is not active: the timing would count nothing")
    d = Driver(w, random.Random(args.seed))
    d.key("F2")  # study mode: the reference in a side window ...
    d.key("G")  # ... and over the image
    s = w.session
    defective = [i for i, r in enumerate(s.records) if (r.defect_type or "good") != "good"]
    chosen = [defective[round(k * (len(defective) - 1) / max(args.images - 1, 1))] for k in range(min(args.images, len(defective)))]
    log = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    for label_type in args.types.split(","):
        d.key(TOOL_KEYS[label_type])
        for index in chosen:
            d.go_to(index + 1)
            if s.index != index or not s.wait_until_shown():
                raise SystemExit(f"image {index + 1} did not open")
            mask = s.reference_mask
            d.wait(PACE["look_s"])
            t0 = time.monotonic()
            made = label(d, label_type, mask)
            d.wait(PACE["check_s"])
            log.append({"image": s.record.key, "label_type": label_type, "wall_s": round(time.monotonic() - t0, 3), **made})
            print(f"{label_type:8s} {s.record.key:40s} {made['strokes']:3d} strokes {log[-1]['wall_s']:6.2f} s wall", flush=True)
    d.key("D")  # leave the last image: its span closes
    w.close()
    app.processEvents()

    store = ProjectStore.open(project)
    paths = export(store, "timing-csv", args.out / "timing", overwrite=True)
    rows = timing_rows(store)
    summaries = store.summaries()
    spans = store.time_spans()
    keys = {r.id: r.key for r in store.images()}
    stats = {}
    for t, mean in mean_seconds_per_image(rows).items():
        v = np.array([r["seconds"] for r in rows if r["label_type"] == t])
        walls = np.array([e["wall_s"] for e in log if e["label_type"] == t])
        stats[t] = {"n": int(v.size), "mean_s": round(float(v.mean()), 2), "median_s": round(float(np.median(v)), 2),
                    "min_s": round(float(v.min()), 2), "max_s": round(float(v.max()), 2),
                    "script_wall_mean_s": round(float(walls.mean()), 2) if walls.size else None}
    # what was drawn, against the reference: pixel IoU, block cells, mask share inside the boxes
    quality = {}
    for key in dict.fromkeys(e["image"] for e in log):
        rec = next(r for r in store.images() if r.key == key)
        ref = store.reference_mask(rec.id, rec.hw) > 0
        lab = store.load_labels(rec.id, rec.hw)
        q = quality.setdefault(key, {})
        if lab.pixels is not None:
            px = lab.pixels > 0
            q["pixel_iou"] = round(float((px & ref).sum() / max((px | ref).sum(), 1)), 3)
        for grid in (8, 16):
            h, w = ref.shape
            want = ref[: h // grid * grid, : w // grid * grid].reshape(h // grid, grid, w // grid, grid).any(axis=(1, 3))
            got = np.zeros_like(want)
            for r, c_ in lab.blocks[grid]:
                if r < want.shape[0] and c_ < want.shape[1]:
                    got[r, c_] = True
            q[f"block{grid}_cells_missed_extra"] = (int((want & ~got).sum()), int((got & ~want).sum()))
        if lab.boxes:
            union = np.zeros(ref.shape, bool)
            for b in lab.boxes.values():
                union |= b.to_mask(ref.shape) > 0
            q["mask_inside_boxes"] = round(float((ref & union).sum() / max(ref.sum(), 1)), 3)
            q["boxes"] = len(lab.boxes)
    agg = {"pixel_iou_mean": round(float(np.mean([q["pixel_iou"] for q in quality.values() if "pixel_iou" in q] or [0])), 3),
           "mask_inside_boxes_mean": round(float(np.mean([q["mask_inside_boxes"] for q in quality.values() if "mask_inside_boxes" in q] or [0])), 3),
           "block8_cells_missed_extra": [sum(q["block8_cells_missed_extra"][i] for q in quality.values()) for i in (0, 1)],
           "block16_cells_missed_extra": [sum(q["block16_cells_missed_extra"][i] for q in quality.values()) for i in (0, 1)]}
    (args.out / "study_quality.json").write_text(json.dumps(quality, indent=1))
    # timing rules: no span of a type an image does not hold
    orphan = [(keys[sp.image_id], sp.label_type, sp.seconds) for sp in spans if not summaries[sp.image_id].holds(sp.label_type)]
    result = {"started": started, "category": args.category, "images_per_type": len(chosen), "pace": PACE,
              "per_type": stats, "labels_against_reference": agg, "spans": len(spans), "spans_of_types_the_image_does_not_hold": orphan,
              "files": [str(p) for p in paths]}
    (args.out / "study_result.json").write_text(json.dumps(result, indent=1))
    (args.out / "study_log.json").write_text(json.dumps(log, indent=1))
    print(json.dumps(result, indent=1))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
