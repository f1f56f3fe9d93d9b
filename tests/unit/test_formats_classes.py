"""Classes in every export and import: COCO categories, DOTA names, YOLO ids with data.yaml names,
labelme labels, a mask per class; an import names classes the project lacks and adds them in its
own transaction; training still sees one "defect"."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from semirest.core.labels.boxes import RotatedBox
from semirest.core.labels.image_labels import ImageLabels
from semirest.core.project import formats
from semirest.core.project.plan import labelled_image
from semirest.core.project.store import NewImage, ProjectStore
from tests.conftest import make_images


def _project(tmp_path, name, classes=()):
    paths = sorted((tmp_path / "images").glob("img*.png")) or make_images(tmp_path / "images")
    s = ProjectStore.create(tmp_path / f"{name}.sqlite")
    s.add_images([NewImage(p, p.stem) for p in paths])
    for c in classes:
        s.add_class(c)
    return s


def _label(store):
    """Every label type in two or three classes (ids: defect 1, scratch 2, dent 3)."""
    for rec in store.images():
        lab = ImageLabels(store.image_hw(rec))
        lab.pixels[10:30, 20:45] = 1
        lab.pixels[40:50, 60:80] = 2
        lab.blocks[8] = {(0, 0), (1, 1), (7, 11)}
        lab.block_classes = {(8, 1, 1): 3}
        lab.blocks[16] = {(3, 3)}
        lab.block_classes[(16, 3, 3)] = 2
        lab.boxes = {-1: RotatedBox(40.5, 30.25, 20, 10, 30), -2: RotatedBox(70, 40, 12.5, 30, 0), -3: RotatedBox(30, 50, 8, 8, 10)}
        lab.box_classes = {-1: 2, -3: 3}
        store.replace_labels(rec.id, lab)


def _named(store, rec):
    """An image's labels with class names instead of ids, comparable across projects."""
    names = {k.id: k.name for k in store.classes()}
    lab = store.load_labels(rec.id, rec.hw or store.image_hw(rec))
    pixels = {names[int(v)]: lab.pixels == v for v in np.unique(lab.pixels) if v}
    cells = {(g, c, names[lab.block_class(g, c)]) for g in (8, 16) for c in lab.blocks[g]}
    boxes = [(b, names[lab.box_class(i)]) for i, b in lab.boxes.items()]
    return pixels, cells, boxes


def _same(a, b, types=("pixel", "block", "box")):
    for ra, rb in zip(a.images(), b.images()):
        pa, ca, ba = _named(a, ra)
        pb, cb, bb = _named(b, rb)
        if "pixel" in types:
            assert pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa), ra.key
        if "block" in types:
            assert ca == cb, ra.key
        if "box" in types:
            assert len(ba) == len(bb)
            for box, name in ba:
                assert any(formats.same_box(box, x, tol=0.01) and n == name for x, n in bb), (ra.key, box, name, bb)


@pytest.mark.parametrize("fmt", ["coco", "labelme"])
def test_every_label_type_keeps_its_class_and_missing_classes_are_added(tmp_path, fmt):
    a = _project(tmp_path, "a", ["scratch", "dent"])
    _label(a)
    formats.export(a, fmt, tmp_path / fmt)
    b = _project(tmp_path, "b", ["dent"])  # the target has dent (as id 2) but not scratch
    formats.import_labels(b, fmt, tmp_path / fmt)
    assert [k.name for k in b.classes()] == ["defect", "dent", "scratch"]
    _same(a, b)
    rep = formats.import_labels(b, fmt, tmp_path / fmt)
    assert rep.changed == 0 and len(b.classes()) == 3


def test_coco_categories_are_the_class_list(tmp_path):
    a = _project(tmp_path, "a", ["scratch", "dent"])
    _label(a)
    doc = json.loads(formats.export_coco(a, tmp_path / "c").read_text())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "defect"), (2, "scratch"), (3, "dent")]
    per = {(x["attributes"]["label_type"], x["category_id"]) for x in doc["annotations"] if x["image_id"] == a.images()[0].id}
    assert per == {("pixel", 1), ("pixel", 2), ("block8", 1), ("block8", 3), ("block16", 2), ("box", 1), ("box", 2), ("box", 3)}


def test_dota_names_and_yolo_ids_with_names(tmp_path):
    a = _project(tmp_path, "a", ["scratch", "dent"])
    _label(a)
    formats.export(a, "dota", tmp_path / "dota")
    formats.export(a, "yolo-obb", tmp_path / "yolo")
    assert [line.split()[8] for line in (tmp_path / "dota" / "labelTxt" / "img00.txt").read_text().splitlines()] == [
        "scratch", "defect", "dent"]
    assert [line.split()[0] for line in (tmp_path / "yolo" / "labels" / "train" / "img00.txt").read_text().splitlines()] == [
        "1", "0", "2"]
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())["names"] == {0: "defect", 1: "scratch", 2: "dent"}
    for fmt in ("dota", "yolo"):
        b = _project(tmp_path, f"b-{fmt}")
        formats.import_labels(b, "dota" if fmt == "dota" else "yolo-obb", tmp_path / fmt)
        assert [k.name for k in b.classes()] == ["defect", "scratch", "dent"]
        _same(a, b, types=("box",))


def test_yolo_ids_without_data_yaml_follow_the_project_list_and_unknown_ids_are_refused(tmp_path):
    a = _project(tmp_path, "a", ["scratch"])
    (tmp_path / "y" / "labels").mkdir(parents=True)
    (tmp_path / "y" / "labels" / "img00.txt").write_text("1 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n")
    formats.import_labels(a, "yolo-obb", tmp_path / "y")
    lab = a.load_labels(a.images()[0].id, (120, 160))
    assert list(lab.box_classes.values()) == [2]
    (tmp_path / "y" / "labels" / "img00.txt").write_text("5 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n")
    with pytest.raises(formats.FormatError, match=r"img00.txt:1: class index 5 is not among the project's 2 classes"):
        formats.import_labels(a, "yolo-obb", tmp_path / "y")


def test_masks_per_class_beside_the_union(tmp_path):
    a = _project(tmp_path, "a", ["scratch", "dent"])
    _label(a)
    formats.export_masks(a, tmp_path / "m", label_types=("pixel", "block8", "block16"))
    got = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("img00_mask.png"))
    assert got == ["classes/defect/labelled/img00_mask.png", "classes/dent/labelled/img00_mask.png",
                   "classes/scratch/labelled/img00_mask.png", "ground_truth/labelled/img00_mask.png"]
    b = _project(tmp_path, "b")
    formats.import_labels(b, "masks", tmp_path / "m")
    assert [k.name for k in b.classes()] == ["defect", "dent", "scratch"]  # folder order
    # as pixels: every pixel with the class of its mask (cells became pixels of their class)
    for ra, rb in zip(a.images(), b.images()):
        la, lb = a.load_labels(ra.id, ra.hw), b.load_labels(rb.id, rb.hw)
        names_a = {k.id: k.name for k in a.classes()}
        names_b = {k.id: k.name for k in b.classes()}
        for k, name in names_a.items():
            want = la.union_mask(("pixel", "block8", "block16"), k)
            kb = next(i for i, n in names_b.items() if n == name)
            assert np.array_equal(lb.pixels == kb, want), (ra.key, name)


def test_a_single_class_project_writes_no_class_masks(tmp_path):
    a = _project(tmp_path, "a")
    _label(a)
    formats.export_masks(a, tmp_path / "m")
    assert not (tmp_path / "m" / "classes").exists()


def test_a_refused_import_adds_no_class(tmp_path):
    b = _project(tmp_path, "b")
    src = tmp_path / "lm"
    src.mkdir()
    good = {"shapes": [{"label": "pit", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"}], "imagePath": "../images/img00.png",
            "imageHeight": 120, "imageWidth": 160}
    (src / "img00.json").write_text(json.dumps(good))
    (src / "img01.json").write_text("{broken")
    with pytest.raises(formats.FormatError, match="img01.json"):
        formats.import_labels(b, "labelme", src)
    assert [k.name for k in b.classes()] == ["defect"]
    (src / "img01.json").unlink()
    formats.import_labels(b, "labelme", src)
    assert [k.name for k in b.classes()] == ["defect", "pit"]


def test_labels_with_spaces_become_class_names_with_underscores(tmp_path):
    b = _project(tmp_path, "b")
    src = tmp_path / "lm"
    src.mkdir()
    doc = {"shapes": [{"label": "deep  scratch", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"},
                      {"label": "  ", "points": [[20, 20], [29, 29]], "shape_type": "rectangle"}],
           "imagePath": "../images/img00.png", "imageHeight": 120, "imageWidth": 160}
    (src / "img00.json").write_text(json.dumps(doc))
    formats.import_labels(b, "labelme", src)
    assert [k.name for k in b.classes()] == ["defect", "deep_scratch"]
    lab = b.load_labels(b.images()[0].id, (120, 160))
    assert sorted(lab.box_class(i) for i in lab.boxes) == [1, 2]


def test_training_sees_every_class_as_defect(tmp_path):
    a = _project(tmp_path, "a", ["scratch", "dent"])
    _label(a)
    rec = a.images()[0]
    lab = a.load_labels(rec.id, rec.hw)
    item = labelled_image(rec.id, rec.key, a.image_path(rec), lab)
    assert item.mask.dtype == bool and item.mask[45, 70] and item.mask[20, 30]  # scratch and defect pixels alike
    assert len(item.boxes) == 3
