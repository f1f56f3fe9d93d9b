"""Exports that other tools take unchanged: ultralytics' own dataset check and label verifier
accept the YOLO-OBB export, DOTA and YOLO label files are named after their images, and the
images can be linked or copied beside them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from semirest.core.cli import main as cli_main
from semirest.core.labels.boxes import RotatedBox
from semirest.core.project import formats
from semirest.core.project.store import NewImage, ProjectStore
from tests.conftest import make_images


def _folder_project(tmp_path, layout=("img00.png", "sub/img01.png", "sub/img02.png")):
    """A folder project whose images sit in a folder and a subfolder; every image has a box, the
    first one a box that reaches past the right edge (the 160 px wide image)."""
    src = make_images(tmp_path / "made")
    root = tmp_path / "images"
    new = []
    for made, rel in zip(src, layout):
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        made.rename(dst)
        new.append(NewImage(dst, Path(rel).with_suffix("").as_posix()))
    store = ProjectStore.create(tmp_path / "p.sqlite")
    ids = store.add_images(new)
    store.add_box(ids[0], RotatedBox(155, 60, 16, 12, 0))  # x from 147 to 163 in a 160 px wide image
    store.add_box(ids[1], RotatedBox(40, 30, 20, 10, 30))
    store.add_box(ids[2], RotatedBox(30, 20, 12, 8, -15))
    return store


def test_yolo_obb_layout_is_ultralytics_own(tmp_path):
    """The documented layout (docs.ultralytics.com/datasets/obb): data.yaml with train, val and
    names; images/<split>/x.png beside labels/<split>/x.txt; coordinates normalised to 0..1."""
    store = _folder_project(tmp_path)
    formats.export(store, "yolo-obb", tmp_path / "y", images="copy")
    data = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text())
    assert data["train"] == data["val"] == "images/train" and data["names"] == {0: "defect"}
    assert "path" not in data  # resolved against data.yaml's own folder
    images = sorted(p.name for p in (tmp_path / "y" / "images" / "train").iterdir())
    labels = sorted(p.name for p in (tmp_path / "y" / "labels" / "train").iterdir())
    assert images == ["img00.png", "img01.png", "img02.png"]
    assert labels == ["img00.txt", "img01.txt", "img02.txt"]
    vals = np.array((tmp_path / "y" / "labels" / "train" / "img00.txt").read_text().split()[1:], dtype=float)
    assert vals.min() >= 0 and vals.max() == 1.0  # 163 / 160 = 1.019 clipped
    assert (tmp_path / "y" / "images" / "train" / "img01.png").read_bytes() == (tmp_path / "images" / "sub" / "img01.png").read_bytes()
    store.close()


def test_ultralytics_dataset_check_and_label_verifier_accept_the_export(tmp_path):
    utils = pytest.importorskip("ultralytics.data.utils", reason="ultralytics is not installed")
    store = _folder_project(tmp_path)
    out = tmp_path / "y"
    assert cli_main(["project", "export", str(store.path), "--format", "yolo-obb", "--out", str(out), "--images", "link"]) == 0
    cwd = os.getcwd()
    os.chdir(tmp_path / "images")  # the check must not depend on the working folder
    try:
        data = utils.check_det_dataset(str(out / "data.yaml"), autodownload=False)
    finally:
        os.chdir(cwd)
    assert Path(data["train"]) == (out / "images" / "train").resolve() and data["names"] == {0: "defect"}
    ims = sorted(str(p) for p in (out / "images" / "train").iterdir())
    lbs = utils.img2label_paths(ims)
    assert all(Path(lb).is_file() for lb in lbs)
    for im, lb in zip(ims, lbs):
        _im, label, shape, segments, _kp, missing, found, empty, corrupt, msg = utils.verify_image_label(
            (im, lb, "", False, data["nc"], 0, 0, False))
        assert (missing, found, empty, corrupt) == (0, 1, 0, 0), msg
        assert label.shape == (1, 5) and len(segments) == 1 and segments[0].shape == (4, 2)
    store.close()


def test_dota_and_yolo_label_files_are_named_after_their_images(tmp_path):
    store = _folder_project(tmp_path, layout=("a.png", "sub/b.png", "other/a.png"))  # two images named a.png
    for fmt, folder in (("dota", "labelTxt"), ("yolo-obb", "labels/train")):
        formats.export(store, fmt, tmp_path / fmt, images="link")
        names = sorted(p.name for p in (tmp_path / fmt / folder).iterdir())
        assert names == ["a.txt", "b.txt", "other__a.txt"], names  # the second a.png gets its flat key
    links = tmp_path / "dota" / "images"
    assert sorted(p.name for p in links.iterdir()) == ["a.png", "b.png", "other__a.png"]
    assert all(p.is_symlink() for p in links.iterdir())
    assert os.path.realpath(links / "other__a.png") == os.path.realpath(tmp_path / "images" / "other" / "a.png")
    store.close()


def test_reexport_replaces_links_and_never_writes_through_them(tmp_path):
    store = _folder_project(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "images").rglob("*.png")}
    out = tmp_path / "d"
    formats.export(store, "dota", out, images="link")
    formats.export(store, "dota", out, images="copy", overwrite=True)  # a copy over each link
    assert not any(p.is_symlink() for p in (out / "images").iterdir())
    formats.export(store, "dota", out, images="link", overwrite=True)
    assert all(p.is_symlink() for p in (out / "images").iterdir())
    assert {p: p.read_bytes() for p in (tmp_path / "images").rglob("*.png")} == before
    store.close()


@pytest.mark.parametrize("fmt", ["dota", "yolo-obb"])
def test_exports_with_images_import_back(tmp_path, fmt):
    store = _folder_project(tmp_path)
    formats.export(store, fmt, tmp_path / fmt, images="copy")
    want = {r.key: list(store.load_labels(r.id, r.hw or store.image_hw(r)).boxes.values()) for r in store.images()}
    (tmp_path / fmt / "manifest.csv").unlink()  # matched by the label files' names alone
    with ProjectStore.create(tmp_path / "q.sqlite") as q:
        q.add_images([NewImage(store.image_path(r), r.key) for r in store.images()])
        assert formats.import_labels(q, fmt, tmp_path / fmt).images == 3
        for r in q.images():
            got = list(q.load_labels(r.id, q.image_hw(r)).boxes.values())
            if r.key == "img00" and fmt == "yolo-obb":
                assert got[0].width == pytest.approx(13, abs=0.01)  # clipped at the edge: 147..160
            else:
                assert len(got) == 1 and formats.same_box(got[0], want[r.key][0], tol=0.01), (r.key, got)
    store.close()


def test_images_option_is_refused_for_formats_that_reference_images(tmp_path, capsys):
    store = _folder_project(tmp_path)
    store.close()
    rc = cli_main(["project", "export", str(tmp_path / "p.sqlite"), "--format", "coco", "--out", str(tmp_path / "c"),
                   "--images", "copy"])
    err = capsys.readouterr().err
    assert rc == 2 and "--images" in err and len(err.strip().splitlines()) == 1
