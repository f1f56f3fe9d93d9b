"""labelme JSON: export and import round trip, files as labelme's own reader loads them, other
tools' files (polygons, rectangles, oriented rectangles, circles, masks), and bad files refused
with one line, the project unchanged."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semirest.core.cli import main as cli_main
from semirest.core.labels.boxes import RotatedBox
from semirest.core.labels.image_labels import ImageLabels
from semirest.core.project import formats
from semirest.core.project.store import NewImage, ProjectStore
from tests.conftest import label_rows, make_images


def _project(tmp_path, name):
    paths = sorted((tmp_path / "images").glob("img*.png")) or make_images(tmp_path / "images")
    s = ProjectStore.create(tmp_path / f"{name}.sqlite")
    s.add_images([NewImage(p, p.stem) for p in paths])
    return s


def _label(store):
    """Every label type, with the shapes that need care: a region with a hole, two pixels touching
    only at a corner, a partial edge cell, an upright and a rotated box."""
    for rec in store.images():
        lab = ImageLabels(store.image_hw(rec))
        lab.pixels[10:30, 20:45] = 1
        lab.pixels[15:20, 25:30] = 0  # a hole
        lab.pixels[50:52, 5:90] = 1
        lab.pixels[60, 60] = lab.pixels[61, 61] = 1
        lab.blocks[8] = {(0, 0), (1, 1), (7, 11)}
        lab.blocks[16] = {(2, 2)}
        lab.boxes = {-1: RotatedBox(40.5, 30.25, 20, 10, 30), -2: RotatedBox(70, 50, 12.5, 30, 0)}
        store.replace_labels(rec.id, lab)


def _same_labels(a, b):
    for ra, rb in zip(a.images(), b.images()):
        la, lb = a.load_labels(ra.id, ra.hw), b.load_labels(rb.id, rb.hw)
        assert np.array_equal(la.pixels, lb.pixels), ra.key
        assert la.blocks == lb.blocks, ra.key
        assert len(la.boxes) == len(lb.boxes)
        assert all(any(formats.same_box(x, y) for y in lb.boxes.values()) for x in la.boxes.values()), ra.key


def test_round_trip_every_label_type_and_import_twice_changes_nothing(tmp_path):
    a = _project(tmp_path, "a")
    _label(a)
    written = formats.export(a, "labelme", tmp_path / "lm")
    assert sorted(p.name for p in written) == ["img00.json", "img01.json", "img02.json"]
    doc = json.loads((tmp_path / "lm" / "img00.json").read_text())
    assert doc["imageData"] is None and (doc["imageHeight"], doc["imageWidth"]) == (120, 160)
    assert (tmp_path / "lm" / doc["imagePath"]).resolve() == (tmp_path / "images" / "img00.png").resolve()
    kinds = sorted((s["shape_type"], s[formats.LABELME_TYPE_KEY]) for s in doc["shapes"])
    assert kinds.count(("mask", "pixel")) == 1  # the region with a hole
    assert ("oriented_rectangle", "box") in kinds and ("rectangle", "box") in kinds
    b = _project(tmp_path, "b")
    rep = formats.import_labels(b, "labelme", tmp_path / "lm")
    assert rep.images == 3 and rep.boxes_added == 6
    _same_labels(a, b)
    before = label_rows(b.path)
    again = formats.import_labels(b, "labelme", tmp_path / "lm")
    assert again.changed == 0 and label_rows(b.path) == before


_READER = r"""
import json, sys
import numpy as np
from labelme import LabelFile
from labelme.utils.shape import shapes_to_label
out = {}
for f in sys.argv[1:]:
    lf = LabelFile(f)  # reads imagePath's image and checks imageHeight / imageWidth against it
    out[f] = {"shapes": [(s["shape_type"], s["label"], len(s["points"]), s["other_data"]) for s in lf.shapes],
              "image_bytes": len(lf.image_data)}
    masks = [s for s in lf.shapes if s["shape_type"] == "mask"]
    if masks:
        from PIL import Image
        import io
        h, w = Image.open(io.BytesIO(lf.image_data)).size[::-1]
        cls, _ = shapes_to_label((h, w), masks, {"defect": 1})
        out[f]["mask_pixels"] = [[int(y), int(x)] for y, x in zip(*np.nonzero(cls))]
print(json.dumps(out))
"""


def _labelme_reader_env():
    """labelme's reader needs PyQt5 and more; it runs in its own process so it never meets this
    process's Qt. Skipped where labelme is not installed."""
    probe = subprocess.run([sys.executable, "-c", "import labelme"], capture_output=True, env=os.environ.copy())
    if probe.returncode != 0:
        pytest.skip("labelme is not installed")


@pytest.mark.parametrize("images", ["none", "copy"])
def test_labelme_own_reader_loads_the_export(tmp_path, images):
    _labelme_reader_env()
    a = _project(tmp_path, "a")
    _label(a)
    written = [p for p in formats.export(a, "labelme", tmp_path / "lm", images=images) if p.suffix == ".json"]
    if images == "copy":
        assert sorted(p.name for p in (tmp_path / "lm").glob("*.png")) == ["img00.png", "img01.png", "img02.png"]
    res = subprocess.run([sys.executable, "-c", _READER, *map(str, written)], capture_output=True, text=True,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    for p in written:
        doc = json.loads(p.read_text())
        g = got[str(p)]
        assert g["image_bytes"] > 0
        assert [(s[0], s[1], s[2]) for s in g["shapes"]] == [(s["shape_type"], "defect", len(s["points"])) for s in doc["shapes"]]
        assert all(s[3] == {formats.LABELME_TYPE_KEY: d[formats.LABELME_TYPE_KEY]} for s, d in zip(g["shapes"], doc["shapes"]))
        # labelme's own rasterisation of the mask shape is exactly the ring we labelled
        rec = next(r for r in a.images() if r.key == p.stem)
        ring = np.zeros(rec.hw, bool)
        ring[10:30, 20:45] = True
        ring[15:20, 25:30] = False
        assert {tuple(v) for v in g["mask_pixels"]} == {tuple(v) for v in np.argwhere(ring)}


def _write(folder: Path, name: str, doc) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def _other_tools_file(image_path: str, shapes: list) -> dict:
    """A file as labelme itself writes it."""
    return {"version": "5.5.0", "flags": {}, "shapes": [{"group_id": None, "description": "", "flags": {}, "mask": None, **s}
                                                       for s in shapes],
            "imagePath": image_path, "imageData": None, "imageHeight": 120, "imageWidth": 160}


def test_another_tools_shapes_become_pixels_and_boxes(tmp_path):
    b = _project(tmp_path, "b")
    src = tmp_path / "theirs"
    _write(src, "anything.json", _other_tools_file("../images/img00.png", [  # matched by imagePath
        {"label": "scratch", "points": [[10, 10], [30, 10], [30, 20], [10, 20]], "shape_type": "polygon"},
        {"label": "dent", "points": [[50, 40], [70, 60]], "shape_type": "rectangle"},
        {"label": "dent", "points": [[100, 50], [120, 50], [120, 60], [100, 60]], "shape_type": "oriented_rectangle"},
        {"label": "pit", "points": [[80.5, 90.5], [83.5, 90.5]], "shape_type": "circle"},
    ]))
    rep = formats.import_labels(b, "labelme", src)
    assert rep.images == 1 and rep.boxes_added == 2
    rec = b.images()[0]
    lab = b.load_labels(rec.id, rec.hw)
    want = np.zeros((120, 160), bool)
    want[10:20, 10:30] = True  # pixel centres inside the polygon
    yy, xx = np.mgrid[0:120, 0:160]
    want |= (xx + 0.5 - 80.5) ** 2 + (yy + 0.5 - 90.5) ** 2 <= 9
    assert np.array_equal(lab.pixels.astype(bool), want)
    boxes = sorted(lab.boxes.values(), key=lambda x: x.cx)
    assert formats.same_box(boxes[0], RotatedBox(60, 50, 20, 20, 0)) and formats.same_box(boxes[1], RotatedBox(110, 55, 20, 10, 0))


def test_files_are_matched_by_manifest_image_path_or_name(tmp_path):
    b = _project(tmp_path, "b")
    src = tmp_path / "theirs"
    shape = {"label": "x", "points": [[10, 10], [20, 20]], "shape_type": "rectangle"}
    _write(src, "img01.json", _other_tools_file("elsewhere/img01.png", [shape]) | {"imageHeight": 100, "imageWidth": 130})
    _write(src, "nothing_like_it.json", _other_tools_file("nope.png", [shape]))
    rep = formats.import_labels(b, "labelme", src)
    assert rep.images == 1 and rep.unmatched == ["nothing_like_it.json"]
    assert len(b.load_labels(b.images()[1].id, (100, 130)).boxes) == 1


BAD = {
    "not JSON": ("{not json", "not a labelme JSON file"),
    "no shapes": ({"imagePath": "../images/img00.png"}, 'expected an object with a "shapes" list'),
    "a line": (_other_tools_file("../images/img00.png", [{"label": "x", "points": [[1, 1], [5, 5]], "shape_type": "line"}]),
               "shapes[0]: shape_type 'line' has no area; expected one of polygon"),
    "wrong size": (_other_tools_file("../images/img00.png", []) | {"imageHeight": 10}, "imageHeight and imageWidth say 10x160"),
    "bad points": (_other_tools_file("../images/img00.png", [{"label": "x", "points": [[1, "a"]], "shape_type": "polygon"}]),
                   "shapes[0]: expected a number"),
    "NaN": (_other_tools_file("../images/img00.png", [{"label": "x", "points": [[1, 1], [float("nan"), 3]],
                                                       "shape_type": "rectangle"}]), "not finite"),
    "polygon of two points": (_other_tools_file("../images/img00.png", [{"label": "x", "points": [[1, 1], [5, 5]],
                                                                         "shape_type": "polygon"}]), "at least 3 points"),
    "no label": (_other_tools_file("../images/img00.png", [{"points": [[1, 1], [5, 5]], "shape_type": "rectangle"}]),
                 "expected an object with a label string"),
    "box outside": (_other_tools_file("../images/img00.png", [{"label": "x", "points": [[900, 900], [910, 910]],
                                                               "shape_type": "rectangle"}]), "outside the 160x120 image"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_with_one_line_and_nothing_changes(tmp_path, capsys, case):
    b = _project(tmp_path, "b")
    b.close()
    src = tmp_path / "theirs"
    good = _other_tools_file("../images/img01.png", [{"label": "x", "points": [[10, 10], [20, 20]], "shape_type": "rectangle"}])
    _write(src, "a_good.json", good | {"imageHeight": 100, "imageWidth": 130})  # read first, yet not kept
    doc, want = BAD[case]
    bad = _write(src, "img00.json", doc)
    before = label_rows(b.path)
    rc = cli_main(["project", "import", str(b.path), "--format", "labelme", "--from", str(src)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(bad) in err and want in err and len(err.splitlines()) == 1, err
    assert label_rows(b.path) == before


def test_cli_export_and_replace_import(tmp_path, capsys):
    a = _project(tmp_path, "a")
    _label(a)
    a.close()
    out = tmp_path / "lm"
    assert cli_main(["project", "export", str(a.path), "--format", "labelme", "--out", str(out), "--images", "link"]) == 0
    assert (out / "img00.png").is_symlink() and json.loads((out / "img00.json").read_text())["imagePath"] == "img00.png"
    b = _project(tmp_path, "b")
    rec = b.images()[0]
    b.add_box(rec.id, RotatedBox(100, 100, 8, 8, 0))  # not in the file: --replace removes it
    b.close()
    assert cli_main(["project", "import", str(b.path), "--format", "labelme", "--from", str(out), "--replace"]) == 0
    assert "1 removed" in capsys.readouterr().out
    with ProjectStore.open(a.path) as a, ProjectStore.open(b.path) as b:
        _same_labels(a, b)
