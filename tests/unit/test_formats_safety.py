"""Exports write only inside the folder the user named, never over a dataset, and with unique names;
imports are one transaction, idempotent, and say what they did."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from semirest.core.cli import main as cli_main
from semirest.core.data.demo import make_demo_dataset
from semirest.core.project import formats
from semirest.core.project.store import NewImage, ProjectStore
from semirest.core.labels.boxes import RotatedBox
from tests.conftest import label_rows, make_images


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def mvtec_project(tmp_path):
    root = tmp_path / "data"
    make_demo_dataset(root, seed=0, n_train=2, n_test_good=1, n_per_defect=1, size=64)
    path = tmp_path / "demo.sqlite"
    with ProjectStore.create(path) as store:
        store.add_images(formats.images_from_mvtec(root, "demo"))
        for rec in store.images():
            store.set_blocks(rec.id, 8, on=[(1, 1), (2, 3)])
            store.add_box(rec.id, RotatedBox(30, 30, 12, 8, 15))
    return path, root / "demo"


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_export_into_the_datasets_own_folders_is_refused_and_changes_nothing(mvtec_project, fmt, capsys):
    project, category = mvtec_project
    before = _tree(category)
    for out in (category, category / "ground_truth", category / "test" / "good"):
        rc = cli_main(["project", "export", str(project), "--format", fmt, "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and "holds (or is inside) the project's images or reference masks" in err, (out, err)
        assert len(err.strip().splitlines()) == 1
    assert _tree(category) == before


def test_label_values_cannot_write_outside_the_export_folder(tmp_path):
    make_images(tmp_path / "images")
    paths = sorted((tmp_path / "images").glob("*.png"))
    with ProjectStore.create(tmp_path / "p.sqlite") as store:
        ids = store.add_images([NewImage(paths[0], "../../../escaped", defect_type="../../x"),
                                NewImage(paths[1], "/abs/olute", defect_type="/etc"),
                                NewImage(paths[2], "ok", defect_type="..")])
        for i in ids:
            store.set_blocks(i, 8, on=[(0, 0)])
            store.add_box(i, RotatedBox(20, 20, 10, 6, 0))
        outside_before = {p for p in tmp_path.rglob("*")}
        for fmt in formats.FORMATS:
            out = tmp_path / "exports" / fmt
            formats.export(store, fmt, out)
            new = {p for p in tmp_path.rglob("*")} - outside_before
            assert all(p == out or out in p.parents or p in out.parents for p in new), sorted(new)
            written = [p for p in new if p.is_file()]
            assert all(Path(os.path.realpath(p)).is_relative_to(os.path.realpath(out)) for p in written)
            outside_before |= new
        names = {p.relative_to(tmp_path / "exports" / "masks").as_posix() for p in (tmp_path / "exports" / "masks").rglob("*.png")}
        assert names == {"ground_truth/.._.._x/escaped_mask.png", "ground_truth/_etc/olute_mask.png", "ground_truth/_.._/ok_mask.png"}


def test_a_link_inside_the_export_folder_is_not_followed_out(tmp_path):
    make_images(tmp_path / "images")
    p = sorted((tmp_path / "images").glob("*.png"))[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / "labelTxt").parent.mkdir()
    (out / "labelTxt").symlink_to(elsewhere, target_is_directory=True)
    with ProjectStore.create(tmp_path / "p.sqlite") as store:
        i = store.add_images([NewImage(p, "img")])[0]
        store.add_box(i, RotatedBox(20, 20, 10, 6, 0))
        with pytest.raises(formats.ExportTargetError, match="outside the export folder"):
            formats.export(store, "dota", out, overwrite=True)
    assert list(elsewhere.iterdir()) == []


def test_a_folder_that_is_not_empty_needs_overwrite_and_the_manifest_comes_last(small_project, tmp_path, monkeypatch, capsys):
    with ProjectStore.open(small_project) as store:
        rec = store.images()[0]
        store.set_blocks(rec.id, 8, on=[(0, 0)])
        store.add_box(rec.id, RotatedBox(20, 20, 10, 6, 0))
    for fmt in formats.FORMATS:
        out = tmp_path / f"out-{fmt}"
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
        rc = cli_main(["project", "export", str(small_project), "--format", fmt, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and "folder is not empty" in err and "--overwrite" in err
        assert _tree(out) == {"mine.txt": b"keep me"}
        order = []  # every checked write ends in the rename of its finished file
        real = os.replace
        monkeypatch.setattr(os, "replace", lambda src, dst: (order.append(Path(dst).name), real(src, dst))[1])
        assert cli_main(["project", "export", str(small_project), "--format", fmt, "--out", str(out), "--overwrite"]) == 0
        monkeypatch.setattr(os, "replace", real)
        assert order[-1] == "manifest.csv" and len(order) >= 2, (fmt, order)
        assert (out / "mine.txt").read_text() == "keep me"


def test_keys_that_flatten_alike_get_distinct_stable_names(tmp_path):
    make_images(tmp_path / "images", sizes=((40, 50),) * 4)
    paths = sorted((tmp_path / "images").glob("*.png"))
    keys = ["a/b/y", "a__b/y", "A/b/y", "c/y"]
    with ProjectStore.create(tmp_path / "p.sqlite") as store:
        ids = store.add_images([NewImage(p, k) for p, k in zip(paths, keys)])
        for n, i in enumerate(ids):
            store.add_box(i, RotatedBox(10 + n, 12, 6, 4, 0))
            store.set_blocks(i, 8, on=[(n, 0)])
        outs = {}
        for fmt in ("dota", "yolo-obb", "masks", "coco"):
            formats.export(store, fmt, tmp_path / fmt)
        for fmt, sub in (("dota", "labelTxt"), ("yolo-obb", "labels/train"), ("masks", "ground_truth/labelled")):
            outs[fmt] = sorted(p.name for p in (tmp_path / fmt / sub).iterdir())
            assert len(outs[fmt]) == 4, (fmt, outs[fmt])
            assert len({n.casefold() for n in outs[fmt]}) == 4
        assert "c__y_mask.png" in outs["masks"]  # a name without a clash keeps its plain form
        assert outs["dota"] == ["img00.txt", "img01.txt", "img02.txt", "img03.txt"]  # named after the image files
        names_before = formats.export_names(store)
    # the same names in a fresh project, and each image gets its own labels back without the manifest
    for fmt in ("dota", "yolo-obb", "masks"):
        (tmp_path / fmt / "manifest.csv").unlink()
        with ProjectStore.create(tmp_path / f"q-{fmt}.sqlite") as q:
            q.add_images([NewImage(p, k) for p, k in zip(paths, keys)])
            assert list(formats.export_names(q).values()) == list(names_before.values())
            assert formats.import_labels(q, fmt, tmp_path / fmt).images == 4
            for n, rec in enumerate(q.images()):
                labels = q.load_labels(rec.id, (40, 50))
                if fmt == "masks":
                    assert labels.pixels[n * 8 : n * 8 + 8, :8].all() and labels.pixels.sum() >= 64, rec.key
                else:
                    assert [round(b.cx) for b in labels.boxes.values()] == [10 + n], rec.key


# -- imports ---------------------------------------------------------------------------------------
def _labelled_pair(tmp_path):
    """Project a with labels of every type on its three images, and an empty project b over the same images."""
    from tests.unit.test_formats import _label, _project

    a = _project(tmp_path, "a")
    _label(a)
    b = _project(tmp_path, "b")
    return a, b


@pytest.mark.parametrize("fmt", formats.IMPORT_FORMATS)
def test_importing_the_same_file_twice_gives_the_same_project(tmp_path, fmt, capsys):
    a, b = _labelled_pair(tmp_path)
    formats.export(a, fmt, tmp_path / fmt)
    first = formats.import_labels(b, fmt, tmp_path / fmt)
    assert first.images == 3 and first.changed == 3
    once = label_rows(b.path)
    second = formats.import_labels(b, fmt, tmp_path / fmt)
    assert second.changed == 0 and second.boxes_added == 0 and second.boxes_present == first.boxes_added
    assert label_rows(b.path) == once
    if fmt != "masks":  # (a mask holds every type drawn as pixels: it adds pixels to its source)
        before = label_rows(a.path)  # into the project the file came from: nothing doubles
        rep = formats.import_labels(a, fmt, tmp_path / fmt)
        assert rep.boxes_added == 0 and rep.changed == 0 and label_rows(a.path) == before
    b.close()
    rc = cli_main(["project", "import", str(b.path), "--format", fmt, "--from", str(tmp_path / fmt)])
    out = capsys.readouterr().out
    assert rc == 0 and "3 images (0 changed, 3 already as in the source)" in out and "0 boxes added" in out


def test_a_failed_import_changes_nothing(tmp_path):
    a, b = _labelled_pair(tmp_path)
    formats.export(a, "coco", tmp_path / "coco")
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    last_image = doc["images"][-1]["id"]
    doc["annotations"].append({"id": 999, "image_id": last_image, "segmentation": [[1, 2, 3, float("nan"), 5, 6]]})
    (tmp_path / "coco" / "annotations.json").write_text(json.dumps(doc))  # NaN, as Python writes it
    before = label_rows(b.path)
    with pytest.raises(formats.FormatError, match="annotation 999 is malformed"):
        formats.import_coco(b, tmp_path / "coco")
    assert label_rows(b.path) == before
    doc["annotations"][-1] = {"id": 999, "image_id": last_image, "attributes": {"label_type": "box", "rotated_box": [1e9, 5, 4, 4, 0]}}
    (tmp_path / "coco" / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(formats.FormatError, match="outside the"):
        formats.import_coco(b, tmp_path / "coco")
    assert label_rows(b.path) == before


@pytest.mark.parametrize("fmt", ["dota", "yolo-obb", "coco"])
def test_replace_takes_an_updated_file(tmp_path, fmt):
    from tests.unit.test_formats import _project

    a = _project(tmp_path, "a")
    rec = a.images()[0]
    moved = a.add_box(rec.id, RotatedBox(40, 30, 20, 10, 0))
    a.add_box(rec.id, RotatedBox(90, 60, 8, 8, 45))
    b = _project(tmp_path, "b")
    formats.export(a, fmt, tmp_path / "v1")
    formats.import_labels(b, fmt, tmp_path / "v1")
    a.update_box(moved, RotatedBox(50, 35, 20, 10, 10))  # the updated file: one box moved
    formats.export(a, fmt, tmp_path / "v2")
    merged_b = _project(tmp_path, "c")
    formats.import_labels(merged_b, fmt, tmp_path / "v1")
    assert formats.import_labels(merged_b, fmt, tmp_path / "v2").boxes_added == 1  # merge keeps both versions
    assert len(merged_b.load_labels(merged_b.images()[0].id, (120, 160)).boxes) == 3
    rep = formats.import_labels(b, fmt, tmp_path / "v2", replace=True)
    assert (rep.boxes_added, rep.boxes_present, rep.boxes_removed) == (1, 1, 1)
    got = sorted((round(x.cx, 2), round(x.cy, 2)) for x in b.load_labels(b.images()[0].id, (120, 160)).boxes.values())
    assert got == [(50, 35), (90, 60)]
