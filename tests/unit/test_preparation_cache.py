"""The preparation cache of project runs: same inputs -> nothing recomputed (the feature extractor is
not called, the bank not rebuilt, the same losses); each changed input -> what depends on it is
recomputed; an entry left incomplete by a kill, or a damaged file, is never used."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from semirest.core.config import FeatureConfig
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.project.preparation_cache import (
    MARKER,
    PreparationCache,
    cache_folder,
    clear_project_cache,
    project_cache_size,
)
from semirest.core.project.store import ProjectStore
from tests.unit.test_project_training import TINY

OVERRIDES = [o for o in TINY if not o.startswith("device=")] + ["train.steps=2"]


@pytest.fixture
def spy(monkeypatch):
    """Counts images through the feature extractor and calls of the full preparation."""
    import semirest.core.project.run as run_mod

    seen = {"extracted": 0, "prepared": 0}
    extract, prepare = FeatureExtractor.extract_all, run_mod.prepare_training_data

    def counting_extract(self, images, *a, **k):
        seen["extracted"] += len(images)
        return extract(self, images, *a, **k)

    def counting_prepare(*a, **k):
        seen["prepared"] += 1
        return prepare(*a, **k)

    monkeypatch.setattr(FeatureExtractor, "extract_all", counting_extract)
    monkeypatch.setattr(run_mod, "prepare_training_data", counting_prepare)

    def take():
        out = dict(seen)
        seen.update(extracted=0, prepared=0)
        return out
    return take


def _train(project, extra=()):
    from semirest.core.project.run import runs_folder, train_project

    run_id, res = train_project(project, "fast", "cpu", OVERRIDES + list(extra), score=False)
    assert res.state == "finished", res.message
    summary = json.loads((runs_folder(project) / f"run{run_id:03d}" / "train.json").read_text())
    return res, summary


def test_same_inputs_reuse_everything_and_train_the_same(boxed_demo_project, spy):
    res1, s1 = _train(boxed_demo_project)
    cold = spy()
    assert cold["prepared"] == 1 and cold["extracted"] > 0
    assert s1["preparation"]["bank"] == "built" and s1["preparation"]["features_extracted"] == 6
    assert project_cache_size(boxed_demo_project) > 0
    res2, s2 = _train(boxed_demo_project)
    assert spy() == {"extracted": 0, "prepared": 0}  # no PCF computed, no bank, no k-NN rows, no synthetic pool
    assert s2["preparation"] == {**s2["preparation"], "bank": "cached", "features_extracted": 0,
                                 "labelled_cached": 2, "labelled_computed": 0}
    # what came from the cache is what was computed: the same training, step for step
    assert s2["metrics"]["loss_every_10"] == s1["metrics"]["loss_every_10"]
    assert res2.metrics["final_loss"] == pytest.approx(res1.metrics["final_loss"], rel=1e-6)


def test_each_changed_input_is_recomputed(boxed_demo_project, spy):
    _train(boxed_demo_project)
    spy()
    with ProjectStore.open(boxed_demo_project) as store:
        normal = [store.image_path(r) for r in store.images() if r.split == "train"]
    st = os.stat(normal[0])
    os.utime(normal[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed
    _, s = _train(boxed_demo_project)
    # its PCFs, and a new bank: a new synthetic pool (4 images); the labelled PCFs are reused
    assert spy() == {"extracted": 1 + 4, "prepared": 1}
    assert s["preparation"]["features_cached"] == 5 and s["preparation"]["bank"] == "built"
    assert s["preparation"]["labelled_computed"] == 2 and s["preparation"]["labelled_extracted"] == 0

    _, s = _train(boxed_demo_project, ["bank.coreset_ratio=0.3"])  # a bank field: PCFs reused, bank rebuilt
    got = spy()
    assert len(list((cache_folder(boxed_demo_project) / "prep").iterdir())) == 1  # the older bank was dropped
    assert got["prepared"] == 1 and s["preparation"]["features_extracted"] == 0
    assert s["preparation"]["labelled_computed"] == 2

    _, s = _train(boxed_demo_project, ["features.lambda_pe=0.2"])  # a feature field: every PCF again
    assert spy()["prepared"] == 1 and s["preparation"]["features_extracted"] == 6
    # what this run did not use is gone: the 6 normal and 2 labelled images' PCFs under the new
    # feature fields, the labelled rows against the new bank; nothing of the earlier runs
    folder = cache_folder(boxed_demo_project)
    assert len(list((folder / "features").glob("*.npy"))) == 8 and len(list((folder / "labelled").glob("*.npy"))) == 2
    assert s["preparation"]["cache_freed_bytes"] > 0

    # a field the preparation does not read (the Swin's width) reuses everything
    _, s = _train(boxed_demo_project, ["features.lambda_pe=0.2", "model.embed_dim=16"])
    assert spy() == {"extracted": 0, "prepared": 0}


def test_backbone_weights_are_part_of_the_feature_key(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"1234")
    cache = PreparationCache(tmp_path / "c")
    fc = FeatureConfig(weights=str(weights))
    before = cache.image_key(image, fc)
    assert PreparationCache(tmp_path / "c").image_key(image, fc) == before  # stable across runs
    weights.write_bytes(b"12345")
    assert PreparationCache(tmp_path / "c").image_key(image, fc) != before
    assert cache.image_key(image, FeatureConfig(weights=str(weights), batch_size=3)) == cache.image_key(image, fc)


def test_an_incomplete_or_damaged_entry_is_never_used(boxed_demo_project, spy):
    _train(boxed_demo_project)
    spy()
    prep = cache_folder(boxed_demo_project) / "prep"
    (entry,) = [p for p in prep.iterdir() if not p.name.startswith(".")]
    (entry / MARKER).unlink()  # killed before the marker was written
    _, s = _train(boxed_demo_project)
    assert spy()["prepared"] == 1 and s["preparation"]["bank"] == "built"
    assert (entry / MARKER).is_file()  # rebuilt complete

    # a file of another size than the marker lists (written half): rebuilt
    with open(entry / "bank_features.npy", "r+b") as f:
        f.truncate(100)
    _, s = _train(boxed_demo_project)
    assert spy()["prepared"] == 1 and s["preparation"]["bank"] == "built"

    # a damaged PCF file: that image is extracted again, the rest reused
    feats = sorted((cache_folder(boxed_demo_project) / "features").glob("*.npy"))
    feats[0].write_bytes(b"\x93NUMPY garbage")
    _, s = _train(boxed_demo_project)
    assert spy()["extracted"] == 1 and s["preparation"]["bank"] == "cached"
    # no pickle anywhere: every array loads with allow_pickle=False
    for f in cache_folder(boxed_demo_project).rglob("*.np[yz]"):
        np.load(f, allow_pickle=False)


def test_retrain_after_three_new_boxes_reuses_the_bank(boxed_demo_project, spy):
    from semirest.core.labels.boxes import RotatedBox

    _train(boxed_demo_project)
    spy()
    with ProjectStore.open(boxed_demo_project) as store:
        summaries = store.summaries()
        held_out = [r for r in store.images()
                    if r.split == "test" and not (summaries.get(r.id) and summaries[r.id].is_labelled)]
        for r in held_out[:3]:  # three more boxes, on three images
            store.add_box(r.id, RotatedBox(30, 28, 14, 10, 20))
    _, s = _train(boxed_demo_project)
    got = spy()
    assert got["prepared"] == 0 and s["preparation"]["bank"] == "cached"
    assert s["preparation"]["labelled_cached"] == 2 and s["preparation"]["labelled_computed"] == 3
    assert got["extracted"] == 3  # only the three newly labelled images


def test_clear_cache_removes_only_the_cache(boxed_demo_project):
    _train(boxed_demo_project)
    size = project_cache_size(boxed_demo_project)
    assert size > 0
    assert clear_project_cache(boxed_demo_project) == size
    assert not cache_folder(boxed_demo_project).exists() and boxed_demo_project.is_file()
    assert project_cache_size(boxed_demo_project) == 0 and clear_project_cache(boxed_demo_project) == 0


def test_scoring_after_training_streams_and_cancels_keeping_the_model(boxed_demo_project):
    from semirest.core.project.run import train_project

    events, trained = [], []

    def progress(ev):
        if ev.stage == "score":
            events.append(ev)

    with ProjectStore.open(boxed_demo_project) as store:
        wanted = [r.id for r in store.images() if r.split == "test" and r.defect_type == "good"][-1]
    run_id, res = train_project(boxed_demo_project, "fast", "cpu", OVERRIDES, progress=progress,
                                on_trained=lambda rid, r: trained.append(r.state),
                                first_to_score=lambda: wanted, should_stop=lambda: len(events) >= 2)
    assert trained == ["finished"]  # stored as finished before any image was scored
    assert res.state == "finished" and res.scoring == "cancelled" and len(res.scores) == 2
    assert events[0].info["image_id"] == wanted and "eta_s" in events[1].info
    with ProjectStore.open(boxed_demo_project) as store:
        run = store.run(run_id)
        assert run.state == "finished" and "scoring cancelled" in run.message
        assert store.run_scores(run_id) == pytest.approx(res.scores)  # the scores made so far are kept
        assert "pixel_auroc" not in run.metrics and store.run_checkpoint_path(run).is_file()


def test_a_cache_that_cannot_be_written_does_not_stop_the_run(boxed_demo_project):
    folder = cache_folder(boxed_demo_project)
    folder.write_text("not a folder")  # every write under it fails
    _, s = _train(boxed_demo_project)
    assert s["preparation"]["bank"] == "built" and s["preparation"]["cache_write_errors"]
    assert folder.read_text() == "not a folder"
