"""Projects written by every released schema version open in the current one, labels intact.

tests/fixtures/projects/schema_vN.sqlite is a project as schema version N wrote it (made by
make_fixtures.py there, never rewritten). Each is copied to a temporary folder, opened with the
current store (which applies the newer migrations) and read back exactly."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from semirest.core.project.store import MIGRATIONS, SCHEMA_VERSION, ProjectStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "projects"
sys.path.insert(0, str(FIXTURES))
from make_fixtures import CLASSES_SINCE, EXPECTED, EXPECTED_CLASSES, SCRATCH  # noqa: E402

VERSIONS = sorted(int(re.match(r"schema_v(\d+)\.sqlite$", p.name).group(1)) for p in FIXTURES.glob("schema_v*.sqlite"))


def test_there_is_a_fixture_for_every_schema_version():
    missing = [m.version for m in MIGRATIONS if m.version not in VERSIONS]
    assert not missing, (f"no fixture project for schema version(s) {missing}: run "
                         "`python tests/fixtures/projects/make_fixtures.py` and commit the new file")
    assert VERSIONS[0] == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_opens_in_the_current_schema_with_its_labels(version, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(FIXTURES, work, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = work / f"schema_v{version}.sqlite"
    with ProjectStore.open(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.integrity_check() == "ok"
        recs = {r.key: r for r in store.images()}
        assert set(recs) == set(EXPECTED)
        totals = store.time_totals()
        for key, e in EXPECTED.items():
            rec = recs[key]
            assert rec.hw == e["hw"]
            assert store.image_path(rec).is_file()  # relative path resolved in the new folder
            labels = store.load_labels(rec.id, e["hw"])
            want = np.zeros(e["hw"], bool)
            for y, x in e["pixels"]:
                want[y, x] = True
            assert np.array_equal(labels.pixels.astype(bool), want)
            assert labels.blocks[8] == e["block8"] and labels.blocks[16] == e["block16"]
            got = sorted((b.cx, b.cy, b.width, b.height, b.angle) for b in labels.boxes.values())
            assert got == sorted(e["boxes"])
            assert totals.get(rec.id, {}) == pytest.approx(e["seconds"])
        # classes: an older project's labels are all "defect"; a version-3 one keeps its second class
        classes = store.classes()
        assert [(k.name, k.colour) for k in classes] == (EXPECTED_CLASSES if version >= CLASSES_SINCE else EXPECTED_CLASSES[:1])
        assert classes[0].id == 1
        scratch = classes[1].id if version >= CLASSES_SINCE else None
        for key, e in EXPECTED.items():
            labels = store.load_labels(recs[key].id, e["hw"])
            marked = SCRATCH.get(key, {}) if version >= CLASSES_SINCE else {}
            for y, x in e["pixels"]:
                assert labels.pixels[y, x] == (scratch if (y, x) in marked.get("pixels", ()) else 1)
            for c in e["block8"]:
                assert labels.block_class(8, c) == (scratch if c in marked.get("block8", ()) else 1)
            assert all(labels.box_class(i) == (scratch if marked.get("boxes") else 1) for i in labels.boxes)
        ref = store.reference_mask(recs["part_a"].id, EXPECTED["part_a"]["hw"])
        assert ref.sum() == 200
        # and it is writable in the current schema
        store.set_blocks(recs["part_b"].id, 8, on=[(2, 2)])
    with ProjectStore.open(path, read_only=True) as store:
        assert (2, 2) in store.load_labels(recs["part_b"].id, EXPECTED["part_b"]["hw"]).blocks[8]


def test_committed_fixtures_are_untouched_by_the_tests():
    import sqlite3

    for v in VERSIONS:
        con = sqlite3.connect(f"file:{FIXTURES / f'schema_v{v}.sqlite'}?mode=ro", uri=True)
        try:
            assert con.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == v
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        finally:
            con.close()
