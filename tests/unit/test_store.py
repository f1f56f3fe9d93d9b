import os
import sqlite3
import stat

import numpy as np
import pytest

from semirest.core.labels.image_labels import ImageLabels
from semirest.core.project.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    NewerSchemaError,
    NotAProjectError,
    ProjectError,
    ProjectLockedError,
    ProjectReadOnlyError,
    ProjectStore,
    TimeSpan,
)
from semirest.core.labels.boxes import RotatedBox


def test_new_project_is_wal_and_versioned(small_project):
    with ProjectStore.open(small_project) as s:
        assert s.schema_version() == SCHEMA_VERSION
        with s._engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_images_are_referenced_relative_and_never_touched(small_project, tmp_path):
    img = tmp_path / "images" / "img00.png"
    before = (img.read_bytes(), img.stat().st_mtime_ns)
    with ProjectStore.open(small_project) as s:
        recs = s.images()
        assert [r.key for r in recs] == ["img00", "img01", "img02"]
        assert recs[0].path == "images/img00.png"
        assert s.image_path(recs[0]) == img
        s.set_image_size(recs[0].id, 160, 120)
        lab = s.load_labels(recs[0].id, (120, 160))
        lab.pixels[:] = 1
        s.save_pixel_region(recs[0].id, lab.pixels)
    assert (img.read_bytes(), img.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["project.sqlite"] or all(
        p.suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm") for p in tmp_path.iterdir() if p.is_file()
    )


def test_project_moved_alone_still_finds_images_by_absolute_path(small_project, tmp_path):
    moved = tmp_path / "elsewhere" / "p.sqlite"
    moved.parent.mkdir()
    os.replace(small_project, moved)
    with ProjectStore.open(moved) as s:
        rec = s.images()[0]
        assert s.image_path(rec) == tmp_path / "images" / "img00.png"


def test_labels_survive_reopen_exactly(small_project):
    rng = np.random.default_rng(1)
    hw = (517, 300)  # not a multiple of the 256 tile
    with ProjectStore.open(small_project) as s:
        iid = s.images()[1].id
        lab = s.load_labels(iid, hw)
        lab.pixels[:] = rng.random(hw) > 0.7
        s.save_pixel_region(iid, lab.pixels)
        s.set_blocks(iid, 8, on=[(0, 0), (3, 4), (64, 37)])
        s.set_blocks(iid, 16, on=[(1, 1)])
        s.set_blocks(iid, 8, off=[(3, 4)])
        b1 = s.add_box(iid, RotatedBox(10.5, 20.25, 30, 12, 33.3))
        b2 = s.add_box(iid, RotatedBox(100, 100, 5, 6, -80))
        s.update_box(b1, RotatedBox(11, 21, 31, 13, 34))
        s.delete_box(b2)
        expected = lab.pixels.copy()
    with ProjectStore.open(small_project) as s:
        got = s.load_labels(iid, hw)
        assert np.array_equal(got.pixels, expected)
        assert got.blocks == {8: {(0, 0), (64, 37)}, 16: {(1, 1)}}
        assert got.boxes == {b1: RotatedBox(11, 21, 31, 13, 34)}
        summ = s.summaries()[iid]
        assert (summ.pixel_count, summ.block8, summ.block16, summ.boxes) == (int(expected.sum()), 2, 1, 1)


def test_erasing_a_tile_removes_its_row(small_project):
    with ProjectStore.open(small_project) as s:
        iid = s.images()[0].id
        m = np.zeros((300, 300), np.uint8)
        m[10:20, 10:20] = 1
        m[280, 280] = 1
        s.save_pixel_region(iid, m)
        with s._engine.connect() as c:
            assert c.exec_driver_sql("SELECT COUNT(*) FROM pixel_tiles").scalar() == 2
        m[:] = 0
        s.save_pixel_region(iid, m, (0, 0, 50, 50))  # only the first tile is rewritten
        with s._engine.connect() as c:
            assert c.exec_driver_sql("SELECT tile_row, tile_col FROM pixel_tiles").all() == [(1, 1)]


def test_replace_labels_keeps_given_box_ids(small_project):
    with ProjectStore.open(small_project) as s:
        iid = s.images()[0].id
        lab = ImageLabels((120, 160))
        lab.pixels[5:9, 5:9] = 1
        lab.blocks[16] = {(2, 3)}
        lab.boxes = {7: RotatedBox(50, 50, 10, 10, 0), -1: RotatedBox(20, 20, 4, 4, 10)}
        ids = s.replace_labels(iid, lab)
        assert ids[7] == 7 and ids[-1] not in (7, -1)
        got = s.load_labels(iid, (120, 160))
        assert np.array_equal(got.pixels, lab.pixels) and got.blocks[16] == {(2, 3)}
        assert set(got.boxes) == {7, ids[-1]}


def test_time_spans_and_totals(small_project):
    with ProjectStore.open(small_project) as s:
        a, b = (r.id for r in s.images()[:2])
        s.add_time_span(TimeSpan(a, "pixel", "ann", 12.5, "2026-01-01T00:00:00", "2026-01-01T00:00:12"))
        s.add_time_span(TimeSpan(a, "pixel", "ann", 2.5, "2026-01-01T00:01:00", "2026-01-01T00:01:02"))
        s.add_time_span(TimeSpan(b, "box", "other", 4.0, "2026-01-01T00:02:00", "2026-01-01T00:02:04"))
        assert s.time_totals() == {a: {"pixel": 15.0}, b: {"box": 4.0}}
        assert s.summaries()[a].seconds == 15.0
        with pytest.raises(ValueError):
            s.add_time_span(TimeSpan(a, "polygon", "ann", 1, "x", "y"))


def test_not_a_project(tmp_path):
    p = tmp_path / "notes.sqlite"
    p.write_text("hello, I am a text file")
    with pytest.raises(NotAProjectError, match="not an SQLite database"):
        ProjectStore.open(p)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(NotAProjectError, match="not a SemiREST project"):
        ProjectStore.open(other)
    with pytest.raises(ProjectError, match="no such project"):
        ProjectStore.open(tmp_path / "missing.sqlite")
    with pytest.raises(ProjectError, match="already exists"):
        ProjectStore.create(other)


def test_newer_schema_is_refused(small_project):
    con = sqlite3.connect(small_project)
    con.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'now')")
    con.commit()
    con.close()
    with pytest.raises(NewerSchemaError, match="schema version 99"):
        ProjectStore.open(small_project)


def test_migration_adds_a_table_and_keeps_data(small_project):
    def add_runs(conn):
        conn.exec_driver_sql("CREATE TABLE later_runs (id INTEGER PRIMARY KEY, status TEXT)")
        conn.exec_driver_sql("INSERT INTO later_runs (status) VALUES ('created by migration 2')")

    nxt = SCHEMA_VERSION + 1
    v2 = MIGRATIONS + [Migration(nxt, "a later table", add_runs)]
    with ProjectStore.open(small_project, migrations=v2) as s:
        assert s.schema_version() == nxt
        assert len(s.images()) == 3
        with s._engine.connect() as c:
            assert c.exec_driver_sql("SELECT status FROM later_runs").scalar() == "created by migration 2"
            assert [r[0] for r in c.exec_driver_sql("SELECT version FROM schema_migrations ORDER BY version")] == list(range(1, nxt + 1))
    with ProjectStore.open(small_project, migrations=v2) as s:  # applied once only
        with s._engine.connect() as c:
            assert c.exec_driver_sql("SELECT COUNT(*) FROM later_runs").scalar() == 1
    with pytest.raises(NewerSchemaError):  # the old software refuses the upgraded file
        ProjectStore.open(small_project)


def test_failed_migration_rolls_back(small_project):
    def broken(conn):
        conn.exec_driver_sql("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ProjectStore.open(small_project, migrations=MIGRATIONS + [Migration(SCHEMA_VERSION + 1, "broken", broken)])
    with ProjectStore.open(small_project) as s:
        assert s.schema_version() == SCHEMA_VERSION
        with s._engine.connect() as c:
            assert c.exec_driver_sql("SELECT COUNT(*) FROM sqlite_master WHERE name='half_done'").scalar() == 0


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="file permissions are not enforced for root")
def test_read_only_project_opens_and_refuses_writes(small_project):
    os.chmod(small_project, stat.S_IRUSR)
    try:
        with ProjectStore.open(small_project) as s:
            assert s.read_only
            assert len(s.images()) == 3
            with pytest.raises(ProjectReadOnlyError, match="read-only"):
                s.set_blocks(s.images()[0].id, 8, on=[(0, 0)])
    finally:
        os.chmod(small_project, stat.S_IRUSR | stat.S_IWUSR)


def test_unwritable_project_opens_read_only(small_project, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with ProjectStore.open(small_project) as s:
        assert s.read_only
        with pytest.raises(ProjectReadOnlyError, match="read-only"):
            s.set_blocks(s.images()[0].id, 8, on=[(0, 0)])


def test_explicit_read_only_open(small_project):
    with ProjectStore.open(small_project, read_only=True) as s:
        assert s.read_only and len(s.images()) == 3
        with pytest.raises(ProjectReadOnlyError):
            s.add_box(1, RotatedBox(1, 1, 1, 1, 0))


def test_locked_project_gives_clear_error_then_works(small_project):
    with ProjectStore.open(small_project) as s:
        iid = s.images()[0].id
        other = sqlite3.connect(small_project, timeout=0.1)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(ProjectLockedError, match="locked by another program"):
                s.set_blocks(iid, 8, on=[(1, 1)])
        finally:
            other.rollback()
            other.close()
        s.set_blocks(iid, 8, on=[(1, 1)])
        assert s.load_labels(iid, (120, 160)).blocks[8] == {(1, 1)}


def test_real_mvtec_import_keeps_reference_apart(real_mvtec, tmp_path):
    from semirest.core.project.formats import images_from_mvtec

    with ProjectStore.create(tmp_path / "screw.sqlite") as s:
        s.add_images(images_from_mvtec(real_mvtec, "screw"))
        recs = s.images()
        assert len(recs) == 160
        defective = [r for r in recs if r.defect_type != "good"]
        assert len(defective) == 119 and all(s.has_reference(r.id) for r in defective)
        assert not any(s.has_reference(r.id) for r in recs if r.defect_type == "good")
        ref = s.reference_mask(defective[0].id, (320, 320))
        assert ref.dtype == bool and ref.any()
        assert s.load_labels(defective[0].id, (320, 320)).is_empty()  # reference is not a label
        assert not recs[0].path.startswith("/")
