"""The issue-6 user flow on real data: `semirest project create` from ../shared/data (MVTec screw,
test split), boxes drawn with the mouse on three defect images, Ctrl+T, and a semi-supervised run
whose held-out metrics appear in the Train panel. A tiny model (64 px, a few steps) keeps it to
about a minute on two cores; the figures it reaches say nothing about the method's accuracy."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from semirest.core.labels.boxes import boxes_from_mask
from tests.gui.conftest import FakeClock, drag, key, open_window
from tests.gui.test_train_panel import TINY

pytestmark = pytest.mark.slow


def test_boxes_then_ctrl_t_gives_a_semi_run_with_metrics_in_the_panel(real_mvtec, tmp_path, qtbot):
    from semirest.core.cli import main as cli

    project = tmp_path / "screw.sqlite"
    assert cli(["project", "create", str(project), "--mvtec", str(real_mvtec), "--category", "screw"]) == 0
    w = open_window(qtbot, project, FakeClock())
    s = w.session
    key(qtbot, w, Qt.Key.Key_R)
    defects = [i for i, r in enumerate(s.records) if r.defect_type not in (None, "good")]
    for i in defects[::40][:3]:
        s.open_index(i)
        s.wait_until_shown()
        for b in boxes_from_mask(s.reference_mask):
            c = b.corners()
            drag(w.canvas, [tuple(map(float, c.min(axis=0))), tuple(map(float, c.max(axis=0)))])
        assert s.document.boxes
    panel = w.train_panels.training
    assert "<b>semi</b>" in panel.setting_label.text()
    panel.overrides = TINY + ["train.synthetic_pool=8", "train.steps=3"]
    panel.device.setCurrentText("cpu")
    with qtbot.waitSignal(panel.run_ended, timeout=600000):
        key(qtbot, w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert s.store.runs()[-1].state == "finished"  # usable before the review queue is scored
    with qtbot.waitSignal(panel.scoring_done, timeout=600000):
        pass
    run = s.store.runs()[-1]
    assert run.state == "finished" and run.setting == "semi", run.message
    assert len(run.label_snapshot["labelled"]) == 3 and len(run.label_snapshot["normal"]) == 41
    assert run.metrics["eval_images"] == 116  # 119 defect images minus the 3 labelled (goods trained on)
    assert "pixel AUROC" in panel.metrics_label.text()
    w.close()
