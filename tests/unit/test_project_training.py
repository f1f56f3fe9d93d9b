"""Project labels -> training: setting rule, token labels with known answers, the runs table, a tiny
real run on a project (finished and cancelled), and `semirest project runs`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semirest.core.config import make_config
from semirest.core.labels.image_labels import ImageLabels
from semirest.core.project.store import SCHEMA_VERSION, NewImage, ProjectStore
from semirest.core.labels.blocks import IGNORE, NEGATIVE, NORMAL, POSITIVE, UNKNOWN
from semirest.core.labels.boxes import RotatedBox
from semirest.core.project.plan import (
    LabelledImage,
    category_from_source,
    choose_setting,
    labelled_image,
    plan_from_store,
    token_labels,
)
from semirest.core.project.proposals import propose_boxes

TINY = [
    "features.image_size=64", "features.d_f=64", "features.pretrain_dim=64", "features.batch_size=8",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.steps=4", "train.b1=2", "train.b2=2", "train.b3=1", "train.synthetic_pool=4",
    "train.ema_decay=0.9", "bank.coreset_ratio=0.25", "train.rampup_steps=2", "device=\"cpu\"",
]


def test_setting_follows_the_labels_present():
    assert choose_setting(0, 0)[0] == "un"
    assert choose_setting(3, 0)[0] == "sup"
    assert choose_setting(0, 2)[0] == "semi"
    setting, why = choose_setting(1, 2)
    assert setting == "semi" and "mixed" in why and "pixel and block regions are used like boxes" in why


def _item(labels: ImageLabels) -> LabelledImage:
    return labelled_image(1, "k", Path("x.png"), labels)


def test_pixel_mask_gives_eq14_block_labels():
    cfg = make_config("fast", "sup")  # eps+ 0.25, eps- 0.08
    lab = ImageLabels((64, 64))
    lab.pixels[16:24, 24:32] = 1          # token (2, 3) fully
    lab.pixels[40:44, 40:48] = 1          # token (5, 5): half -> POSITIVE (> 0.25)
    lab.pixels[0:2, 56:58] = 1            # token (0, 7): 4/64 = 0.0625 < 0.08 -> NEGATIVE
    lab.pixels[56:58, 0:4] = 1            # token (7, 0): 8/64 = 0.125 -> IGNORE
    got = token_labels(_item(lab), "sup", (8, 8), cfg)
    want = np.full((8, 8), NEGATIVE)
    want[2, 3] = want[5, 5] = POSITIVE
    want[7, 0] = IGNORE
    np.testing.assert_array_equal(got, want)


def test_block_toggles_map_to_tokens_exactly():
    cfg = make_config("fast", "sup")
    lab = ImageLabels((64, 64))
    lab.blocks[8].add((1, 1))
    lab.blocks[16].add((2, 3))            # pixels 32..47 x 48..63 -> tokens (4..5, 6..7)
    got = token_labels(_item(lab), "sup", (8, 8), cfg)
    want = np.full((8, 8), NEGATIVE)
    want[1, 1] = POSITIVE
    want[4:6, 6:8] = POSITIVE
    np.testing.assert_array_equal(got, want)


def test_boxes_give_eq15_unknown_tokens_and_angle_is_respected():
    cfg = make_config("fast", "semi", ["train.box_unknown_fraction=0.5"])  # the paper's v
    lab = ImageLabels((64, 64))
    lab.boxes[1] = RotatedBox(24, 24, 16, 16, 0)        # pixels 16..31: tokens (2..3, 2..3)
    lab.boxes[2] = RotatedBox(48, 52, 8, 24, -90)       # turned: 24 wide, 8 high: rows 48..55, cols 36..59
    got = token_labels(_item(lab), "semi", (8, 8), cfg)
    want = np.full((8, 8), NORMAL)
    want[2:4, 2:4] = UNKNOWN
    want[6, 5:7] = UNKNOWN                               # cols 40..55 fully, 36..39 and 56..59 half (not > 0.5)
    np.testing.assert_array_equal(got, want)
    # the fast preset's v = 8 %: the half-covered blocks are unknown too, not known-normal
    fast = token_labels(_item(lab), "semi", (8, 8), make_config("fast", "semi"))
    want[6, 4:8] = UNKNOWN
    np.testing.assert_array_equal(fast, want)
    with pytest.raises(ValueError, match="only boxes"):
        token_labels(_item(lab), "sup", (8, 8), cfg)


def test_mixed_labels_use_masks_as_unknown_regions():
    cfg = make_config("fast", "semi")
    lab = ImageLabels((64, 64))
    lab.blocks[8].add((0, 0))
    lab.boxes[1] = RotatedBox(60, 60, 8, 8, 0)
    got = token_labels(_item(lab), "semi", (8, 8), cfg)
    want = np.full((8, 8), NORMAL)
    want[0, 0] = want[7, 7] = UNKNOWN
    np.testing.assert_array_equal(got, want)


def test_proposals_are_boxes_around_thresholded_regions():
    h = np.zeros((64, 80), dtype=np.float32)
    h[10:20, 30:60] = 0.9
    h[50, 5] = 0.95  # one pixel: below min_area
    found = propose_boxes(h, 0.5, min_area=4)
    assert len(found) == 1
    b = found[0].box
    assert (b.cx, b.cy) == pytest.approx((45.0, 15.0))
    assert sorted((b.width, b.height)) == pytest.approx([10.0, 30.0])
    assert found[0].score == pytest.approx(0.9) and found[0].area == 300


def test_proposals_are_the_most_anomalous_regions_first_and_only_the_best_few():
    h = np.zeros((60, 200), dtype=np.float32)
    peaks = [0.6, 0.95, 0.7, 0.8, 0.65, 0.9, 0.75]
    for i, v in enumerate(peaks):
        h[10:30, 5 + 28 * i:20 + 28 * i] = 0.55
        h[18, 10 + 28 * i] = v  # the peak of region i, one pixel
    h[40:58, 0:200] = 0.56  # the largest region, but the least anomalous
    found = propose_boxes(h, 0.5, min_area=4, max_boxes=3)
    assert [p.score for p in found] == pytest.approx([0.95, 0.9, 0.8])
    assert [round(p.box.cx) for p in found] == [5 + 28 + 7, 5 + 28 * 5 + 7, 5 + 28 * 3 + 7]  # boxes where the regions are
    assert len(propose_boxes(h, 0.5, min_area=4)) == 5  # default: the best five
    assert propose_boxes(h, 0.99) == []


def test_category_from_source():
    assert category_from_source("mvtec /d/mvtec category screw split test") == "screw"
    assert category_from_source("folder /x") == "auto"
    assert category_from_source(None) == "auto"


def test_plan_from_store_picks_normal_labelled_and_held_out(boxed_demo_project):
    with ProjectStore.open(boxed_demo_project) as store:
        plan = plan_from_store(store)
    assert plan.setting == "semi" and plan.category == "demo"
    assert len(plan.normal) == 6 and all(p.key.startswith("train/good/") for p in plan.normal)
    assert len(plan.labelled) == 2 and all(p.boxes and p.mask is None for p in plan.labelled)
    # held out: 2 good test images and the 2 unlabelled defect images
    kinds = [p.key.split("/")[1] for p in plan.evaluation]
    assert len(kinds) == 4 and kinds.count("good") == 2
    assert not {p.key for p in plan.evaluation} & {p.key for p in plan.labelled}
    snap = plan.snapshot()
    assert json.loads(json.dumps(snap))["labelled"][0]["types"] == ["box"]


def test_known_conditions_of_a_project(boxed_demo_project):
    from semirest.core.project.plan import known_conditions

    with ProjectStore.open(boxed_demo_project) as store:
        known = known_conditions(store)
        plan = plan_from_store(store)
        by_key = {r.key: r.id for r in store.images()}
    assert all(known[p.image_id] is True for p in plan.labelled)  # boxed: defective
    good_test = [k for k in by_key if k.startswith("test/good/")]
    unlabelled_defects = [p.key for p in plan.evaluation if not p.key.startswith("test/good/")]
    assert len(good_test) == 2 and all(known[by_key[k]] is False for k in good_test)
    assert len(unlabelled_defects) == 2 and all(known[by_key[k]] is True for k in unlabelled_defects)  # reference masks
    assert all(known[by_key[k]] is False for k in by_key if k.startswith("train/good/"))  # marked good


def _reference(store):
    return lambda image_id, hw: store.reference_mask(image_id, hw)


def test_tiny_semi_run_on_a_project_stores_metrics_and_matches_predict(boxed_demo_project, tmp_path):
    from semirest.core.methods.semirest import SemiREST
    from semirest.core.project.run import ProjectTrainingRun

    with ProjectStore.open(boxed_demo_project) as store:
        plan = plan_from_store(store)
        cfg = make_config("fast", plan.setting, TINY)
        live = []
        first = plan.evaluation[0]
        from semirest.core.data.images import read_image

        img = read_image(first.path)
        run = ProjectTrainingRun(cfg, plan, tmp_path / "run1", "cpu", live_image=lambda: (first.image_id, img),
                                 on_heatmap=live.append, live_every=2, reference_mask=_reference(store))
        res = run.run()
        assert res.state == "finished", res.message
        assert res.checkpoint.is_file()
        scored = run.score(res.checkpoint)  # the second phase: the run's model is usable before it
        assert scored.state == "done"
        res.metrics.update(scored.metrics)
        res.scores = scored.scores
        assert {"pixel_auroc", "pro", "ap"} <= set(res.metrics) and 0 <= res.metrics["pixel_auroc"] <= 1
        assert res.metrics["eval_images"] == 4
        assert len(live) >= 2 and live[0].heatmap.shape == img.shape[:2]
        assert {p.image_id for p in plan.evaluation} <= set(res.scores)
        # the run is stored in the project
        rid = store.create_run(plan.setting, cfg.preset, cfg.to_dict(), plan.snapshot())
        store.finish_run(rid, res.state, res.duration_s, res.checkpoint, res.metrics)
        store.set_run_scores(rid, res.scores)
        rec = store.run(rid)
        assert rec.state == "finished" and rec.metrics["pixel_auroc"] == res.metrics["pixel_auroc"]
        assert store.run_checkpoint_path(rec) == res.checkpoint
        assert store.run_scores(rid) == pytest.approx(res.scores)
    # the same map as `semirest predict` gives for the same checkpoint
    score = SemiREST.load(res.checkpoint, "cpu").predict([img])[0].max()
    assert score == pytest.approx(res.scores[first.image_id])


def test_cancelled_run_leaves_a_loadable_checkpoint(boxed_demo_project, tmp_path):
    from semirest.core.methods.semirest import SemiREST
    from semirest.core.project.run import ProjectTrainingRun

    steps = []

    def progress(ev):
        if ev.stage.startswith("train"):
            steps.append(ev.done)

    with ProjectStore.open(boxed_demo_project) as store:
        plan = plan_from_store(store)
    cfg = make_config("fast", plan.setting, TINY)
    run = ProjectTrainingRun(cfg, plan, tmp_path / "run2", "cpu", progress=progress, should_stop=lambda: len(steps) >= 2)
    res = run.run()
    assert res.state == "cancelled" and "saved" in res.message
    model = SemiREST.load(res.checkpoint, "cpu")
    assert model.model is not None


def test_cli_project_runs_lists_runs(boxed_demo_project, capsys):
    from semirest.core.cli import main

    with ProjectStore.open(boxed_demo_project) as store:
        assert main(["project", "runs", str(boxed_demo_project)]) == 0
        assert "no training runs" in capsys.readouterr().out
        rid = store.create_run("semi", "fast", {"a": 1}, {"labelled": []})
        store.finish_run(rid, "finished", 12.5, None, {"pixel_auroc": 0.9123, "pro": 0.5, "ap": 0.25, "final_loss": 0.01})
        store.create_run("un", "paper", {}, {})
        # listed while this program still has the project open (as the studio does while it trains)
        assert main(["project", "runs", str(boxed_demo_project)]) == 0
        out = capsys.readouterr().out
        assert "semi" in out and "finished" in out and "12.5 s" in out and "pixel_auroc 0.912" in out
        assert "running" in out and "paper" in out
        assert main(["project", "runs", str(boxed_demo_project), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows[0]["metrics"]["pro"] == 0.5 and rows[1]["state"] == "running"
    # opened again after that program ended: the run that was left running was interrupted
    assert main(["project", "runs", str(boxed_demo_project), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["state"] == "failed" and rows[1]["message"].startswith("interrupted")


def test_old_project_is_upgraded_with_a_runs_table(small_project):
    import sqlite3

    con = sqlite3.connect(small_project)  # make it look like a version-1 project
    con.execute("DROP TABLE run_scores")
    con.execute("DROP TABLE runs")
    con.execute("DROP TABLE label_classes")
    con.execute("DELETE FROM schema_migrations WHERE version >= 2")
    con.commit()
    con.close()
    with ProjectStore.open(small_project) as s:
        assert s.schema_version() == SCHEMA_VERSION and s.runs() == []
        assert len(s.images()) == 3


def test_cli_project_train_stores_a_run(boxed_demo_project, capsys):
    from semirest.core.cli import main

    args = ["project", "train", str(boxed_demo_project), "--device", "cpu", "--steps", "2", "--quiet"]
    for o in TINY:
        if not o.startswith("device="):
            args += ["--set", o]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "finished" in out and "held-out metrics pixel_auroc" in out
    assert "trained in" in captured.err and "scoring" in captured.err  # the model is stored before scoring
    assert main(["project", "runs", str(boxed_demo_project)]) == 0
    listing = capsys.readouterr().out
    assert "semi" in listing and "finished" in listing and "pixel_auroc" in listing


def test_every_stage_gets_an_eta_at_its_own_pace():
    from semirest.core.progress import ProgressEvent, WithEta

    now = [0.0]
    seen = []
    eta = WithEta(seen.append, clock=lambda: now[0])
    for stage, step_s in (("features", 2.0), ("knn normal", 0.5)):
        for done in range(1, 5):
            now[0] += step_s
            eta(ProgressEvent(stage, done, 4))
    eta(ProgressEvent("train", 1, 10, {"eta_s": 99.0}))  # a stage with its own ETA keeps it
    by = {(e.stage, e.done): e.info.get("eta_s") for e in seen}
    assert by[("features", 1)] is None  # nothing to go on yet
    assert by[("features", 3)] == pytest.approx(2.0) and by[("features", 4)] == 0
    assert by[("knn normal", 2)] == pytest.approx(1.0)  # its own pace, not the features'
    assert by[("train", 1)] == 99.0
