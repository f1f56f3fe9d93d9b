"""The Train panel on the real window: a real (tiny, CPU) training started with Ctrl+T runs in a
worker thread, live heatmaps arrive, Cancel stops it within a second leaving a loadable checkpoint,
and a timer probe in the GUI thread never sees a long gap; a finished semi run shows its metrics,
scores the image list (sortable), maps images like `semirest predict`, and its proposals become
box labels (accepting them in the panel is not labeling time)."""
from __future__ import annotations

import gc
import time

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, QEvent, QPointF, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QWidget

from tests.gui.conftest import drag, key, open_window

TINY = [
    "features.image_size=64", "features.d_f=64", "features.pretrain_dim=64", "features.batch_size=8",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.b1=2", "train.b2=2", "train.b3=1", "train.synthetic_pool=4",
    "train.ema_decay=0.9", "bank.coreset_ratio=0.25", "train.rampup_steps=2",
]
# The target is 100 ms; the figure is printed, with when the worst gap happened and the
# longest garbage collection meanwhile. In a working checkout the worst gaps are 18-86 ms (86 ms at
# a load average of about 10 on 2 cores); in fresh installs (clean-clone CI runs) 19, 36, 37, 43 ms,
# but three times 635, 621 and 334 ms. The third showed the cause: a 339 ms full garbage
# collection at the run's start (~450,000 tracked objects with torch and timm loaded). Now
# the window freezes that long-lived heap (app/heap.py), and collections skip it.
# Timing is not asserted against 100 ms (no timed assertions in tests); the guard catches training
# in the GUI thread, which blocks it for the whole run (seconds), so the limit is 2 s.
GAP_LIMIT_MS = 2000


class GapProbe:
    """A 5 ms QTimer in the GUI thread; the largest interval between its ticks is how long the GUI
    thread was blocked at worst (minus 5 ms)."""

    def __init__(self):
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.worst_ms = 0.0
        self.worst_at_s = 0.0
        self.ticks = 0
        self.context = lambda: ""
        self.worst_context = ""

    def start(self):
        self.gc_worst_ms, self._gc_t0 = 0.0, None
        gc.callbacks.append(self._gc)
        self.clock.start()
        self.last = self.clock.nsecsElapsed()
        self.timer.start()

    def _gc(self, phase, info):
        """The longest garbage collection meanwhile: a full one stops every thread."""
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        elif self._gc_t0 is not None:
            self.gc_worst_ms = max(self.gc_worst_ms, (time.perf_counter() - self._gc_t0) * 1000)

    def _tick(self):
        now = self.clock.nsecsElapsed()
        gap = (now - self.last) / 1e6
        if gap > self.worst_ms:  # where it happened, to tell what blocked the GUI thread
            self.worst_ms, self.worst_at_s, self.worst_context = gap, now / 1e9, self.context()
        self.last = now
        self.ticks += 1

    def stop(self):
        self.timer.stop()
        gc.callbacks.remove(self._gc)


def test_training_runs_in_a_worker_with_live_heatmaps_and_cancels_fast(window, qtbot, capsys):
    panel, view = window.train_panels.training, window.train_panels.inference
    panel.overrides = TINY + ["train.steps=100000"]  # longer than the test: it is cancelled
    panel.live_every = 2
    panel.live_min_interval_s = 0.0
    panel.device.setCurrentText("cpu")
    assert "<b>un</b>" in panel.setting_label.text()
    probe = GapProbe()
    probe.context = lambda: f"{panel.live_updates} live maps, {len(panel.losses)} losses, status {panel.status.text()!r}"
    probe.start()
    key(qtbot, window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)  # Ctrl+T: start
    assert panel.training.running
    assert panel.training.lane.activeThreadCount() == 1  # the run has the training lane's thread
    qtbot.waitUntil(lambda: panel.live_updates >= 3, timeout=120000)
    qtbot.wait(1500)  # keep probing while it trains
    assert window.canvas.heatmap_layer.array is not None  # the live map is drawn on the image on screen
    assert view.live[1].shape == window.session.document.hw
    assert len(panel.losses) > 0
    t0 = time.perf_counter()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.busy, timeout=10000)  # the worker ended and its end is shown
    cancel_s = time.perf_counter() - t0
    probe.stop()
    with capsys.disabled():
        print(f"\n[train panel] cancel took {cancel_s * 1000:.0f} ms; worst GUI-thread gap {probe.worst_ms:.1f} ms "
              f"over {probe.ticks} probe ticks; {panel.live_updates} live heatmaps; worst gap ended "
              f"{probe.worst_at_s:.2f} s after Ctrl+T ({probe.worst_context}); longest garbage collection "
              f"{probe.gc_worst_ms:.0f} ms")
    # the run stops at the next step instead of running on (a step here takes well under a second;
    # the figure itself is printed above, the bound only tells stopping from running on under load)
    assert cancel_s < 5.0
    assert probe.worst_ms < GAP_LIMIT_MS, f"the GUI thread was blocked for {probe.worst_ms:.0f} ms"
    store = window.session.store
    run = store.runs()[-1]
    assert run.state == "cancelled" and run.setting == "un" and run.duration_s > 0
    ckpt = store.run_checkpoint_path(run)
    assert ckpt.is_file()
    from semirest.core.methods.semirest import SemiREST

    assert SemiREST.load(ckpt, "cpu").model is not None  # a usable last checkpoint
    assert "cancelled" in panel.status.text()


def test_input_over_the_train_dock_is_not_labeling_time(window, qtbot, clock):
    """Mouse moves over every panel of the dock pause the labeling time and add none (each panel
    answers QWidget.window() with the main window: a panel attribute named ``window`` had made
    every mouse move over the dock raise "TypeError: 'MainWindow' object is not callable" in the
    activity filter)."""
    dock, s = window.train_panels, window.session
    drag(window.canvas, [(20, 20), (40, 20)])  # a stroke opens the image's pixel span
    clock.advance(2)
    for panel in (dock.training, dock.inference, dock.proposals):
        assert panel.window() is window
        for target in [panel] + panel.findChildren(QWidget):
            p = QPointF(target.rect().center())
            ev = QMouseEvent(QEvent.Type.MouseMove, p, QPointF(target.mapToGlobal(p.toPoint())),
                             Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
            QApplication.sendEvent(target, ev)
            clock.advance(1)
    assert not s.tracker.running  # paused at the first move over the dock
    assert s.seconds(s.record.id) == pytest.approx(2)


def test_training_error_is_a_message_not_a_crash(window, qtbot):
    panel = window.train_panels.training
    panel.overrides = TINY + ["train.steps=2", "model.embed_dim=33"]  # 33 is not divisible by 2 heads
    panel.device.setCurrentText("cpu")
    panel.start()
    qtbot.waitUntil(lambda: not panel.busy, timeout=60000)
    assert "Training failed" in panel.status.text()
    assert window.session.store.runs() == []  # the config is refused before a run is recorded
    assert window.isVisible()
    panel.error_box.close()


def test_finished_semi_run_metrics_scores_inference_and_proposals(qtbot, boxed_demo_project, clock, tmp_path):
    from semirest.core.cli import main as cli
    from semirest.core.labels.image_labels import BOX

    window = open_window(qtbot, boxed_demo_project, clock)
    panel, view, proposals = window.train_panels.training, window.train_panels.inference, window.train_panels.proposals
    assert "<b>semi</b>" in panel.setting_label.text()
    panel.overrides = TINY + ["train.steps=3"]
    panel.device.setCurrentText("cpu")
    panel.live_every = 1
    panel.live_min_interval_s = 0.0
    streamed = []
    window.session.open_index(len(window.session.records) - 1)  # a held-out image is on screen
    on_screen = window.session.record.id
    panel.image_scored.connect(lambda i, v: streamed.append(i))
    with qtbot.waitSignal(panel.run_ended, timeout=120000):
        panel.start()
    store = window.session.store
    # the run is finished and its model usable before the review queue is scored
    assert store.runs()[-1].state == "finished" and not panel.busy and panel.start_button.isEnabled()
    assert "scoring" in panel.progress.format()
    with qtbot.waitSignal(panel.scoring_done, timeout=120000):
        pass
    run = store.runs()[-1]
    assert run.state == "finished" and run.setting == "semi", run.message
    assert len(streamed) == 6 and streamed[0] == on_screen  # the image on screen first
    assert panel.loss_curve.marks and 0 < panel.loss_curve.marks[0] < len(panel.losses)  # un | semi
    assert "MB" in panel.cache_label.text() or "KB" in panel.cache_label.text()
    assert {"pixel_auroc", "pro", "ap"} <= set(run.metrics)
    assert "pixel AUROC" in panel.metrics_label.text() and "PRO" in panel.metrics_label.text()
    assert len(run.label_snapshot["labelled"]) == 2 and run.label_snapshot["choices"]["device"] == "cpu"

    # scores in the image list, most anomalous first
    scores = store.run_scores(run.id)
    assert len(scores) == 6  # 4 held-out + 2 labelled images
    lst = window.image_list
    lst.sort_by_score()
    order = lst.visible_order()
    first = window.session.records[order[0]]
    assert scores[first.id] == pytest.approx(max(scores.values()))
    assert lst.model.index(0, 3).data() == f"{max(scores.values()):.3f}"

    # inference view: the map of an image equals `semirest predict`'s for the same run
    window.session.open_index(order[0])
    qtbot.waitUntil(lambda: view.current_map() is not None, timeout=60000)
    m = view.current_map()
    assert window.canvas.heatmap_layer.array is not None
    out = tmp_path / "pred"
    assert cli(["predict", "--run", str(store.run_checkpoint_path(run)), str(store.image_path(first)),
                "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    cli_map = np.load(next((out / "maps").glob("*.npy")))
    np.testing.assert_allclose(m, cli_map, atol=1e-6)
    view.opacity.setValue(30)
    view.threshold.setValue(0)
    assert (window.canvas.heatmap_layer.array >> 24 == round(255 * 0.3)).all()

    # the threshold is in calibrated units: 0.50 is the run's threshold at its false-alarm rate
    from semirest.core.calibration import outcome_at
    from semirest.core.project.plan import known_conditions

    cal = view.calibration
    assert cal is not None and cal.n_images > 0
    view.load_runs(select=run.id)  # the same run read again (its scoring ended): the setting stays
    assert view.threshold.value() == 0
    view.runs.setCurrentIndex(0)
    view.load_runs(select=run.id)  # choosing a run starts at its calibrated threshold
    assert view.threshold.value() == 50 and view.threshold_value == pytest.approx(cal.threshold)
    assert "calibrated" in view.threshold_label.text() and f"{cal.threshold:.3f}" in view.threshold_label.text()
    assert view.legend.threshold == pytest.approx(cal.threshold)
    conditions = known_conditions(store)
    expect = outcome_at(scores, conditions, cal.threshold)
    assert expect.n_good + expect.n_defect == len(scores)  # every scored demo image has a known condition
    assert view.outcome_label.text() == expect.text()
    assert f"of {expect.n_good} good images rejected" in view.outcome_label.text()
    view.set_setting(1.0)  # the top of the scale rejects no good image and misses every defect
    assert view.threshold_value == pytest.approx(1.0)
    assert view.outcome_label.text().startswith(f"0 of {expect.n_good} good images rejected; {expect.n_defect} of")

    # proposals: the best few from the thresholded map, none ticked, numbered on the canvas
    view.threshold.setValue(0)
    proposals.max_boxes.setValue(2)
    view.threshold.setValue(int(round(100 * cal.normalise(float(m.max()) * 0.8))))
    before = len(window.session.document.boxes)
    box_s = window.session.seconds(first.id, BOX)
    key(qtbot, window, Qt.Key.Key_P)  # Propose boxes: the box tool is chosen for the review
    n = len(proposals.proposals)
    assert 1 <= n <= 2 and window.canvas.tool is window.tools["box"]
    assert [p.score for p in proposals.proposals] == sorted((p.score for p in proposals.proposals), reverse=True)
    layer = window.canvas.proposal_layer
    assert len(layer.polygons) == n and [t.text() for t in layer.numbers] == [str(i + 1) for i in range(n)]
    assert all(proposals.proposal_list.item(i).checkState() == Qt.CheckState.Unchecked for i in range(n))
    clock.advance(2)
    qtbot.mouseClick(proposals.accept_button, Qt.MouseButton.LeftButton)  # nothing ticked: nothing accepted
    assert len(window.session.document.boxes) == before and proposals.proposals == []
    key(qtbot, window, Qt.Key.Key_P)
    assert len(proposals.proposals) == n
    clock.advance(2)
    qtbot.mouseClick(proposals.accept_one_button, Qt.MouseButton.LeftButton)  # the selected (first) one
    assert len(window.session.document.boxes) == before + 1 and len(proposals.proposals) == n - 1
    assert window.session.seconds(first.id, BOX) == box_s  # accepting from the panel is not labeling time
    if n == 2:
        assert layer.numbers[0].text() == "1" and len(layer.polygons) == 1  # renumbered
        qtbot.mouseClick(proposals.reject_one_button, Qt.MouseButton.LeftButton)
        assert proposals.proposals == [] and len(window.session.document.boxes) == before + 1
    key(qtbot, window, Qt.Key.Key_P)
    qtbot.mouseClick(proposals.accept_all_button, Qt.MouseButton.LeftButton)
    assert len(window.session.document.boxes) == before + 1 + n
    window.session.undo()
    assert len(window.session.document.boxes) == before + n
    assert proposals.proposals == [] and layer.childItems() == []

    # a cancelled run (its model half-trained) is never chosen by itself
    ckpt = store.run_checkpoint_path(run)
    cancelled = store.create_run("semi", run.preset, run.config, run.label_snapshot)
    store.finish_run(cancelled, "cancelled", 1.0, ckpt)
    view.run_ended(None)
    assert view.run_id == run.id

    # Training > Export detector: the chosen finished run as one ONNX file, off the GUI thread
    onnx_path = tmp_path / "line" / "detector.onnx"
    job = window.train_panels.export_detector(onnx_path)
    assert job is not None
    qtbot.waitUntil(job.ended, timeout=180000)
    assert job.done() and job.result()[0] == onnx_path and onnx_path.stat().st_size > 0
    from semirest.core.deploy import Detector

    det = Detector(onnx_path)
    assert det.threshold == pytest.approx(cal.threshold)
    view.runs.setCurrentIndex(view.runs.findData(cancelled))
    assert window.train_panels.export_detector(tmp_path / "x.onnx") is None  # only finished runs
    assert not (tmp_path / "x.onnx").exists()

    # Retrain: a new run with the current labels and the last run's choices, from the cache
    with qtbot.waitSignal(panel.scoring_done, timeout=120000):
        panel.retrain_button.click()
    assert len(store.runs()) == 3 and store.runs()[-1].label_snapshot["choices"] == run.label_snapshot["choices"]
    import json
    from semirest.core.project.run import runs_folder

    summary = json.loads((runs_folder(store.path) / f"run{store.runs()[-1].id:03d}" / "train.json").read_text())
    assert summary["preparation"]["bank"] == "cached" and summary["preparation"]["features_extracted"] == 0
    # Training > Clear cache empties it through the menu action
    window.actions_["clear_cache"].trigger()
    assert panel.cache_label.text() == "empty"
    window.close()


def test_start_waits_for_images_in_an_empty_project(qtbot, tmp_path, clock):
    """On a project without images Start is off and says why, Ctrl+T starts nothing (a run had
    ended in a ValueError dialog); adding a folder of images turns Start on."""
    from semirest.core.project.store import ProjectStore
    from tests.conftest import make_images

    ProjectStore.create(tmp_path / "empty.sqlite").close()
    window = open_window(qtbot, tmp_path / "empty.sqlite", clock)
    panel = window.train_panels.training
    assert not panel.start_button.isEnabled()
    assert "no images" in panel.start_button.toolTip()
    key(qtbot, window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert not panel.busy and not panel.training.running and panel.error_box is None
    assert "no images" in window.statusBar().currentMessage()
    assert window.session.store.runs() == []
    make_images(tmp_path / "images")
    assert window.add_folder(tmp_path / "images")
    assert panel.start_button.isEnabled() and panel.start_button.toolTip() == ""
    window.close()
