import csv
import json

import numpy as np
import pytest

from semirest.core.cli import main as cli_main
from semirest.core.data.images import read_mask
from semirest.core.project import formats
from semirest.core.labels.image_labels import ImageLabels, blocks_from_mask, blocks_to_mask
from semirest.core.project.store import NewImage, ProjectStore, TimeSpan
from semirest.core.labels.boxes import RotatedBox
from tests.conftest import make_images


def _project(tmp_path, name):
    """A fresh project over the same three images (a second project is the import target)."""
    paths = sorted((tmp_path / "images").glob("img*.png")) or make_images(tmp_path / "images")
    s = ProjectStore.create(tmp_path / f"{name}.sqlite")
    s.add_images([NewImage(p, p.stem, defect_type="scratch" if i < 2 else None) for i, p in enumerate(paths)])
    return s


def _label(store, with_pixels=True, with_blocks=True, with_boxes=True):
    hws = {}
    for rec in store.images():
        hw = store.image_hw(rec)
        hws[rec.id] = hw
        lab = ImageLabels(hw)
        if with_pixels:
            lab.pixels[10:30, 20:45] = 1
            lab.pixels[50:52, 5:90] = 1
        if with_blocks:
            lab.blocks[8] = {(0, 0), (1, 1), (7, 11)}  # (7, 11) is a partial cell at the edge for some sizes
            lab.blocks[16] = {(2, 2)}
        if with_boxes:
            lab.boxes = {-1: RotatedBox(40.5, 30.25, 20, 10, 30), -2: RotatedBox(70, 50, 12.5, 30, -75.5)}
        store.replace_labels(rec.id, lab)
    return {r.id: store.load_labels(r.id, hws[r.id]) for r in store.images()}


def _same_boxes(a, b, tol=2e-3):
    ka = sorted((round(x.cx, 1), round(x.cy, 1)) for x in a)
    assert len(a) == len(b)
    for x in a:
        match = [y for y in b if np.abs(np.sort(x.corners(), axis=0) - np.sort(y.corners(), axis=0)).max() < tol]
        assert match, f"{x} not found in {b}"
    return ka


def test_rle_is_coco_column_major():
    m = np.array([[0, 1], [1, 1]], dtype=bool)  # column-major: 0, 1, 1, 1
    assert formats.rle_encode(m) == {"counts": [1, 3], "size": [2, 2]}
    m2 = np.array([[1, 0, 0]], dtype=bool)
    assert formats.rle_encode(m2)["counts"] == [0, 1, 2]
    rng = np.random.default_rng(0)
    big = rng.random((37, 53)) > 0.6
    assert np.array_equal(formats.rle_decode(formats.rle_encode(big)), big)


def test_blocks_mask_round_trip_with_partial_edge_cells():
    hw = (100, 130)
    cells = {(0, 0), (12, 16), (5, 3)}  # row 12 and col 16 are partial cells
    m = blocks_to_mask(cells, 8, hw)
    assert m[96:100, 128:130].all() and m.sum() == 64 + 64 + 4 * 2
    assert blocks_from_mask(m, 8) == cells


def test_masks_export_mvtec_layout_and_round_trip(tmp_path):
    a = _project(tmp_path, "a")
    labels = _label(a, with_blocks=False, with_boxes=False)
    written = formats.export_masks(a, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "ground_truth/labelled/img02_mask.png",
        "ground_truth/scratch/img00_mask.png",
        "ground_truth/scratch/img01_mask.png",
    ]
    m = read_mask(written[0])
    rec = a.images()[0]
    assert m.shape == (120, 160) and np.array_equal(m, labels[rec.id].pixels.astype(bool))
    b = _project(tmp_path, "b")
    assert formats.import_masks(b, tmp_path / "out").images == 3
    for ra, rb in zip(a.images(), b.images()):
        assert np.array_equal(b.load_labels(rb.id, rb.hw).pixels, labels[ra.id].pixels)


def test_masks_union_of_all_types_and_block_import(tmp_path):
    a = _project(tmp_path, "a")
    labels = _label(a, with_pixels=False, with_boxes=False)
    formats.export_masks(a, tmp_path / "out")
    b = _project(tmp_path, "b")
    formats.import_masks(b, tmp_path / "out", as_type="block8")
    rec_a, rec_b = a.images()[0], b.images()[0]
    got = b.load_labels(rec_b.id, rec_b.hw)
    # 16x16 cell (2,2) comes back as its four 8x8 cells: same pixels, expressed on the 8 grid
    assert got.blocks[8] == labels[rec_a.id].blocks[8] | {(4, 4), (4, 5), (5, 4), (5, 5)}
    assert np.array_equal(got.union_mask(), labels[rec_a.id].union_mask())


def test_coco_round_trip_all_label_types(tmp_path):
    a = _project(tmp_path, "a")
    labels = _label(a)
    p = formats.export_coco(a, tmp_path / "coco")
    doc = json.loads(p.read_text())
    assert {c["name"] for c in doc["categories"]} == {"defect"}
    types = {ann["attributes"]["label_type"] for ann in doc["annotations"]}
    assert types == {"pixel", "block8", "block16", "box"}
    box_ann = next(x for x in doc["annotations"] if x["attributes"]["label_type"] == "box")
    assert len(box_ann["segmentation"][0]) == 8 and len(box_ann["bbox"]) == 4
    b = _project(tmp_path, "b")
    assert formats.import_coco(b, tmp_path / "coco").images == 3
    for ra, rb in zip(a.images(), b.images()):
        want, got = labels[ra.id], b.load_labels(rb.id, rb.hw)
        assert np.array_equal(got.pixels, want.pixels)
        assert got.blocks == want.blocks
        _same_boxes(list(want.boxes.values()), list(got.boxes.values()))


@pytest.mark.parametrize("fmt", ["dota", "yolo-obb"])
def test_box_formats_round_trip(tmp_path, fmt):
    a = _project(tmp_path, "a")
    labels = _label(a, with_pixels=False, with_blocks=False)
    formats.export(a, fmt, tmp_path / fmt)
    b = _project(tmp_path, "b")
    assert formats.import_labels(b, fmt, tmp_path / fmt).images == 3
    for ra, rb in zip(a.images(), b.images()):
        _same_boxes(list(labels[ra.id].boxes.values()), list(b.load_labels(rb.id, rb.hw).boxes.values()), tol=0.01)


def test_dota_line_format_and_header_lines(tmp_path):
    a = _project(tmp_path, "a")
    rec = a.images()[0]
    a.add_box(rec.id, RotatedBox(50, 40, 20, 10, 0))
    formats.export_dota(a, tmp_path / "dota")
    line = (tmp_path / "dota" / "labelTxt" / "img00.txt").read_text().split()
    assert line[8:] == ["defect", "0"]
    assert [float(v) for v in line[:8]] == [40, 35, 60, 35, 60, 45, 40, 45]  # clockwise from top-left
    f = tmp_path / "dota" / "labelTxt" / "img00.txt"
    f.write_text("imagesource:GoogleEarth\ngsd:0.5\n" + f.read_text())
    b = _project(tmp_path, "b")
    formats.import_dota(b, tmp_path / "dota")
    assert list(b.load_labels(b.images()[0].id, (120, 160)).boxes.values()) == [RotatedBox(50, 40, 20, 10, 0)]
    f.write_text("1 2 3 defect\n")
    with pytest.raises(formats.FormatError, match="img00.txt:1"):
        formats.import_dota(b, tmp_path / "dota")


def test_yolo_obb_is_normalised(tmp_path):
    a = _project(tmp_path, "a")
    rec = a.images()[0]  # 160 x 120
    a.add_box(rec.id, RotatedBox(80, 60, 16, 12, 0))
    formats.export_yolo_obb(a, tmp_path / "y")
    vals = [float(v) for v in (tmp_path / "y" / "labels" / "train" / "img00.txt").read_text().split()]
    assert vals == pytest.approx([0, 0.45, 0.45, 0.55, 0.45, 0.55, 0.55, 0.45, 0.55])
    assert "names" in (tmp_path / "y" / "data.yaml").read_text()


def test_timing_csv_and_plots(tmp_path):
    a = _project(tmp_path, "a")
    _label(a)  # every image holds every label type: all time rows count
    r = a.images()
    for rec, t, s in [(r[0], "pixel", 30.0), (r[0], "pixel", 4.0), (r[1], "block8", 17.0), (r[2], "box", 5.0), (r[1], "box", 6.0)]:
        a.add_time_span(TimeSpan(rec.id, t, "alice", s, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:30+00:00"))
    bench = {"pixel": {"pixel_auroc": 0.98, "pro": 0.93, "ap": 0.80}, "block8": {"pixel_auroc": 0.985, "pro": 0.94, "ap": 0.83}, "box": {"pixel_auroc": 0.984, "pro": 0.935, "ap": 0.82}}
    paths = formats.export_timing(a, tmp_path / "t", benchmark=bench)
    assert [p.name for p in paths] == ["timing.csv", "timing.png", "annotation_time_vs_accuracy.png"]
    rows = list(csv.DictReader(open(paths[0])))
    assert [(x["image_key"], x["label_type"], float(x["seconds"]), int(x["spans"])) for x in rows] == [
        ("img00", "pixel", 34.0, 2), ("img01", "block8", 17.0, 1), ("img01", "box", 6.0, 1), ("img02", "box", 5.0, 1)
    ]
    assert all(x["annotator"] == "alice" for x in rows)
    assert formats.mean_seconds_per_image(rows) == {"pixel": 34.0, "block8": 17.0, "box": 5.5}
    for p in paths[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_cli_create_export_and_errors(tmp_path, capsys):
    make_images(tmp_path / "images")
    proj = tmp_path / "p.sqlite"
    assert cli_main(["project", "create", str(proj), "--images", str(tmp_path / "images")]) == 0
    assert "3 images" in capsys.readouterr().out
    with ProjectStore.open(proj) as s:
        s.add_box(s.images()[0].id, RotatedBox(30, 30, 10, 10, 0))
    for fmt in formats.FORMATS:
        assert cli_main(["project", "export", str(proj), "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
    assert (tmp_path / "dota" / "labelTxt" / "img00.txt").is_file()
    assert cli_main(["project", "create", str(proj), "--images", str(tmp_path / "images")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["project", "create", str(tmp_path / "q.sqlite"), "--images", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.sqlite").write_text("junk")
    assert cli_main(["project", "export", str(tmp_path / "junk.sqlite"), "--format", "coco", "--out", str(tmp_path / "x")]) == 2
    assert "not an SQLite database" in capsys.readouterr().err


def test_cli_mvtec_create_on_real_data(real_mvtec, tmp_path, capsys):
    proj = tmp_path / "screw.sqlite"
    assert cli_main(["project", "create", str(proj), "--mvtec", str(real_mvtec), "--category", "screw"]) == 0
    assert "160 images, 119 reference masks" in capsys.readouterr().out
    assert cli_main(["project", "create", str(tmp_path / "x.sqlite"), "--mvtec", str(real_mvtec), "--category", "bolt"]) == 2
    assert "categories found: screw" in capsys.readouterr().err
