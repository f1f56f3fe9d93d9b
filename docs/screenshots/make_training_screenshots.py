"""The issue-6 user flow on real images, with screenshots: create a project from ../shared/data
(MVTec screw, test split), draw boxes on a few defect images with the box tool (mouse drags, as
an inspector would, around each defect of the reference mask), press Ctrl+T, and wait for the
semi-supervised run to finish; then review the most anomalous images and let the model propose
boxes.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_training_screenshots.py [--steps 40] [--boxes 4]

Writes training_in_progress.png, inference_view.png and box_proposals.png here, and prints the
run's setting, duration and metrics (also kept in the project: `semirest project runs PROJECT`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.gui.conftest import drag  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "mvtec"
OUT = Path(__file__).resolve().parent


def key(w, k, mod=Qt.KeyboardModifier.NoModifier):
    QTest.keyClick(w.canvas, k, mod)
    QApplication.processEvents()


def goto(w, index):
    w.session.open_index(index)
    w.session.wait_until_shown()
    QApplication.processEvents()


def wait(pred, timeout_s):
    t0 = time.time()
    while not pred():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout_s:
            raise TimeoutError("gave up waiting")


def grab(w, name):
    QApplication.processEvents()
    p = OUT / f"{name}.png"
    w.grab().save(str(p))
    print(f"{p.relative_to(ROOT)}: {p.stat().st_size // 1024} KB", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40, help="steps of the semi stage (the un stage runs 8/3 as many)")
    ap.add_argument("--boxes", type=int, default=4, help="defect images to label with boxes")
    ap.add_argument("--category", default="screw")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    from semirest.app.main_window import MainWindow
    from semirest.core.cli import main as cli
    from semirest.core.project.store import ProjectStore
    from semirest.core.labels.boxes import boxes_from_mask

    app = QApplication.instance() or QApplication([])
    work = Path(args.workdir or tempfile.mkdtemp(prefix="semirest-train-"))
    project = work / f"{args.category}.sqlite"
    if project.exists():
        project.unlink()
    assert cli(["project", "create", str(project), "--mvtec", str(DATA), "--category", args.category]) == 0
    w = MainWindow(ProjectStore.open(project), "inspector")
    w.show()
    w.activateWindow()
    QApplication.processEvents()
    s = w.session

    # boxes on a few defect images: one drag per defect region, around its reference outline
    defects = [i for i, r in enumerate(s.records) if r.defect_type not in (None, "good")]
    step = max(1, len(defects) // args.boxes)
    key(w, Qt.Key.Key_R)
    labelled = []
    for i in defects[::step][: args.boxes]:
        goto(w, i)
        ref = s.reference_mask
        for b in boxes_from_mask(ref):
            corners = b.corners()
            x0, y0 = corners.min(axis=0)
            x1, y1 = corners.max(axis=0)
            drag(w.canvas, [(float(x0), float(y0)), (float(x1), float(y1))])
        labelled.append(s.record.key)
        QApplication.processEvents()
    print(f"boxes drawn on {labelled}", flush=True)

    panel, view, proposals = w.train_panels.training, w.train_panels.inference, w.train_panels.proposals
    print("setting shown:", panel.setting_label.text(), flush=True)
    panel.preset.setCurrentText("fast")
    panel.device.setCurrentText("cpu")
    panel.steps.setValue(args.steps)
    # watch an unlabelled defect image while it trains
    view = next(i for i in defects if s.records[i].key not in labelled)
    goto(w, view)
    t0 = time.time()
    key(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    wait(lambda: panel.live_updates >= 2 and len(panel.losses) > 30, 3600)
    grab(w, "training_in_progress")
    wait(lambda: not panel.busy, 7200)
    print(f"run finished in {time.time() - t0:.0f} s: {panel.status.text()}", flush=True)
    print("metrics shown:", panel.metrics_label.text(), flush=True)
    run = w.session.store.runs()[-1]

    # inference view: most anomalous images first
    w.image_list.sort_by_score()
    order = w.image_list.visible_order()
    top = next(r for r in order if s.records[r].key not in labelled)
    goto(w, top)
    wait(lambda: view.current_map() is not None, 600)
    view.opacity.setValue(55)
    view.threshold.setValue(30)
    QApplication.processEvents()
    grab(w, "inference_view")
    m = view.current_map()
    # the hottest half percent of the map: suggestions around the strongest responses
    view.threshold.setValue(int(round(100 * max(0.3, float(np.quantile(m, 0.995))))))
    key(w, Qt.Key.Key_P)
    grab(w, "box_proposals")
    print(f"{len(proposals.proposals)} proposals on {s.record.key}", flush=True)
    proposals.reject_proposals()
    summary = {"project": str(project), "run_id": run.id, "setting": run.setting, "preset": run.preset,
               "state": run.state, "duration_s": run.duration_s, "steps": args.steps, "labelled": labelled,
               "metrics": {k: v for k, v in run.metrics.items() if k != "loss_every_10"}}
    print(json.dumps(summary, indent=2), flush=True)
    w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
