"""`semirest train --labels`: train sup / semi on labels exported by the studio, end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from semirest.core.data.demo import make_demo_dataset
from semirest.core.labels.boxes import RotatedBox
from semirest.core.cli.labelled_export import read_labelled_export

TINY = [
    "features.image_size=64", "features.d_f=64", "features.pretrain_dim=64", "features.batch_size=4",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.b1=2", "train.b2=2", "train.synthetic_pool=4",
    "train.normal_pool=6", "train.ema_decay=0.9", "bank.coreset_ratio=0.25", "train.rampup_steps=2",
]


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "semirest.core.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def labelled_project(tmp_path_factory):
    """A project over a small demo dataset's test images: one image with a brush stroke, two with
    a rotated box each (as an inspector would draw them), exported twice (all types; boxes only)."""
    from semirest.core.project.store import ProjectStore

    root = tmp_path_factory.mktemp("labels")
    make_demo_dataset(root / "data", seed=1, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    proj = root / "p.sqlite"
    r = _cli("project", "create", proj, "--mvtec", root / "data", "--category", "demo")
    assert r.returncode == 0, r.stderr
    with ProjectStore.open(proj) as store:
        recs = [rec for rec in store.images() if rec.defect_type not in (None, "good")][:3]
        for i, rec in enumerate(recs):
            labels = store.load_labels(rec.id, (64, 64))
            if i == 0:
                labels.pixels[20:30, 10:40] = True
            else:
                labels.boxes = {-1: RotatedBox(32.0, 30.0, 24.0, 10.0, 30.0 * i)}
            store.replace_labels(rec.id, labels)
    for name, types in (("all", "pixel,block8,block16,box"), ("boxes", "box")):
        r = _cli("project", "export", proj, "--format", "masks", "--out", root / name, "--types", types)
        assert r.returncode == 0, r.stderr
    return root


def test_export_reads_back_as_images_with_masks(labelled_project):
    pairs = read_labelled_export(labelled_project / "all")
    assert len(pairs) == 3
    assert all(im.shape == (64, 64, 3) and m.shape == (64, 64) and m.any() for im, m in pairs)
    boxes = read_labelled_export(labelled_project / "boxes")
    assert len(boxes) == 2  # the brushed image has no box
    # a filled 24 x 10 box covers about 240 pixels
    assert all(200 < m.sum() < 290 for _, m in boxes)


@pytest.mark.parametrize("setting, folder", [("sup", "all"), ("semi", "boxes")])
def test_train_on_exported_labels(labelled_project, tmp_path, setting, folder):
    overrides = [a for s in TINY for a in ("--set", s)]
    r = _cli("train", "--data", labelled_project / "data", "--category", "demo", "--setting", setting,
             "--steps", "4", "--device", "cpu", "--quiet", "--out", tmp_path / "run",
             "--labels", labelled_project / folder, *overrides)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    n = 3 if folder == "all" else 2
    assert f"{n} labelled images from" in r.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()
    info = json.loads((tmp_path / "run" / "train.json").read_text())
    assert info["config"]["setting"] == setting


def test_labels_refused_with_reasons(labelled_project, tmp_path):
    r = _cli("train", "--data", labelled_project / "data", "--category", "demo", "--setting", "un",
             "--out", tmp_path / "run", "--labels", labelled_project / "all")
    assert r.returncode != 0 and "--labels needs --setting sup" in r.stderr and "Traceback" not in r.stderr
    r = _cli("train", "--data", labelled_project / "data", "--category", "demo", "--setting", "sup",
             "--out", tmp_path / "run", "--labels", tmp_path)
    assert r.returncode != 0 and "no manifest.csv" in r.stderr and "Traceback" not in r.stderr
