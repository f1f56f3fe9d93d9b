"""Defect classes in the project file: the list (add, rename, colour), a class on every label, and
training that still sees every class as "defect"."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from semirest.core.labels.boxes import RotatedBox
from semirest.core.labels.image_labels import ImageLabels
from semirest.core.project.store import NewImage, ProjectError, ProjectStore
from tests.conftest import make_images


@pytest.fixture
def store(tmp_path):
    paths = make_images(tmp_path / "images")
    s = ProjectStore.create(tmp_path / "p.sqlite")
    s.add_images([NewImage(p, p.stem) for p in paths])
    yield s
    s.close()


def test_a_new_project_has_the_default_class_and_classes_can_be_added_renamed_and_coloured(store):
    (d,) = store.classes()
    assert (d.id, d.name, d.position) == (1, "defect", 0)
    s = store.add_class("scratch")
    dent = store.add_class("dent", "#00FF00")
    assert [(k.id, k.name, k.position) for k in store.classes()] == [(1, "defect", 0), (2, "scratch", 1), (3, "dent", 2)]
    assert dent.colour == "#00ff00" and s.colour != d.colour  # the palette's next colour
    store.rename_class(s.id, "deep-scratch")
    store.set_class_colour(1, "#123456")
    assert [(k.name, k.colour) for k in store.classes()][:2] == [("defect", "#123456"), ("deep-scratch", s.colour)]
    store.rename_class(s.id, "Deep-Scratch")  # its own name in other letters is fine


@pytest.mark.parametrize("name, message", [
    ("", "cannot be empty"), ("big scratch", "space"), ("a\tb", "space"), ("x" * 65, "longer than 64"),
    ("DEFECT", "already in the project"),
])
def test_bad_class_names_are_refused_with_the_reason(store, name, message):
    with pytest.raises(ProjectError, match=message):
        store.add_class(name)
    assert len(store.classes()) == 1


def test_bad_colour_and_unknown_class_are_refused(store):
    with pytest.raises(ProjectError, match="#rrggbb"):
        store.set_class_colour(1, "red")
    with pytest.raises(ProjectError, match="no class with id 9"):
        store.rename_class(9, "x")


def test_every_label_carries_its_class_through_the_store(store):
    rec = store.images()[0]
    k = store.add_class("scratch").id
    store.set_blocks(rec.id, 8, on=[(0, 0)])
    store.set_blocks(rec.id, 8, on=[(1, 1)], class_id=k)
    box = store.add_box(rec.id, RotatedBox(40, 40, 10, 6, 0), class_id=k)
    plain = store.add_box(rec.id, RotatedBox(80, 40, 10, 6, 0))
    mask = np.zeros((120, 160), np.uint8)
    mask[5:10, 5:10] = 1
    mask[20:30, 20:30] = k
    store.save_pixel_region(rec.id, mask)
    got = store.load_labels(rec.id, (120, 160))
    assert got.block_class(8, (0, 0)) == 1 and got.block_class(8, (1, 1)) == k
    assert got.box_class(box) == k and got.box_class(plain) == 1
    assert np.array_equal(got.pixels, mask) and got.class_ids() == {1, k}
    store.set_blocks(rec.id, 8, on=[(0, 0)], class_id=k)  # a cell turned on again takes the new class
    assert store.load_labels(rec.id, (120, 160)).block_class(8, (0, 0)) == k
    # a whole-image write keeps every class
    store.replace_labels(rec.id, got)
    again = store.load_labels(rec.id, (120, 160))
    assert again.box_classes == {i: k for i in again.boxes if again.boxes[i].cx == 40}
    assert np.array_equal(again.pixels, mask)
    # training's masks are the union of every class
    assert np.array_equal(again.union_mask(("pixel",)), mask > 0)
    assert np.array_equal(again.type_mask("pixel", k), mask == k)


def test_a_tile_value_that_names_no_class_reads_as_the_default_class(store):
    rec = store.images()[0]
    mask = np.zeros((120, 160), np.uint8)
    mask[0:4, 0:4] = 200
    store.save_pixel_region(rec.id, mask)
    assert set(np.unique(store.load_labels(rec.id, (120, 160)).pixels)) == {0, 1}


def test_classes_survive_a_reopen_and_the_migration_record(store, tmp_path):
    store.add_class("scratch")
    store.close()
    with ProjectStore.open(tmp_path / "p.sqlite") as s:
        assert [k.name for k in s.classes()] == ["defect", "scratch"] and s.schema_version() == 3
    con = sqlite3.connect(tmp_path / "p.sqlite")
    cols = {r[1] for r in con.execute("PRAGMA table_info(boxes)")}
    con.close()
    assert "class_id" in cols and "category" not in cols
