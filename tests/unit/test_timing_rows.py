"""The timing export (timing.csv, the per-image chart and Fig. 6's means) counts an image for a
label type only if the image holds a label of that type: time spent on labels that were erased
again, or on a type never drawn there, is left out."""
import csv

import numpy as np
import pytest

from semirest.core.labels.boxes import RotatedBox
from semirest.core.project import formats
from semirest.core.project.store import LabelSummary, ProjectStore, TimeSpan


def span(image_id, label_type, seconds):
    return TimeSpan(image_id, label_type, "alice", seconds, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:30+00:00")


def test_label_summary_holds_each_type():
    s = LabelSummary(pixel_count=5, block8=0, block16=2, boxes=0)
    assert [t for t in ("pixel", "block8", "block16", "box") if s.holds(t)] == ["pixel", "block16"]
    assert not LabelSummary().holds("box")
    with pytest.raises(ValueError, match="polygon"):
        s.holds("polygon")


def test_timing_rows_count_only_images_holding_the_type(small_project, tmp_path):
    with ProjectStore.open(small_project) as store:
        a, b, c = (r.id for r in store.images())
        mask = np.zeros((120, 160), dtype=bool)
        mask[10:20, 10:30] = True
        store.save_pixel_region(a, mask)
        store.set_blocks(c, 8, on=[(1, 1), (2, 2)])
        box_id = store.add_box(b, RotatedBox(40, 30, 20, 10, 0))
        store.delete_box(box_id)  # drawn, then deleted: image b holds no box
        for sp in (span(a, "pixel", 12.0), span(a, "box", 5.0), span(b, "box", 7.0),
                   span(c, "block8", 9.0), span(c, "block8", 1.0), span(c, "block16", 3.0)):
            store.add_time_span(sp)
        rows = formats.timing_rows(store)
        assert [(r["image_key"], r["label_type"], r["seconds"], r["spans"]) for r in rows] == [
            ("img00", "pixel", 12.0, 1), ("img02", "block8", 10.0, 2)]
        assert formats.mean_seconds_per_image(rows) == {"pixel": 12.0, "block8": 10.0}
        paths = formats.export_timing(store, tmp_path / "out")
        written = list(csv.DictReader(open(paths[0])))
        assert [(x["image_key"], x["label_type"]) for x in written] == [("img00", "pixel"), ("img02", "block8")]
        with pytest.raises(formats.ProjectError, match="box"):  # no image holds a box: no box time for Fig. 6
            formats.export_timing(store, tmp_path / "fig6", benchmark={"box": {"ap": 0.8}}, overwrite=True)
