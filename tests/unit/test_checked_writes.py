"""Every file write is checked, synced and atomic: a full disk is an error with nothing replaced.

A full disk is simulated two ways: the write call failing with ENOSPC (monkeypatched), and a real
write limit on a child process (RLIMIT_FSIZE, so the kernel refuses the bytes as a full disk
would) while it exports masks over an earlier export.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from semirest.core import files
from semirest.core.data.images import write_png


def test_write_failure_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    target.write_text("old and good")
    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[: max(1, len(data) // 2)])  # a short write first

    monkeypatch.setattr(files.os, "write", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        files.write_atomic(target, "x" * 10_000)
    assert target.read_text() == "old and good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_short_writes_are_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real_write(fd, bytes(data)[:7]))
    files.write_atomic(tmp_path / "a.bin", bytes(range(256)) * 3)
    assert (tmp_path / "a.bin").read_bytes() == bytes(range(256)) * 3


def test_fsync_happens_before_the_rename(tmp_path, monkeypatch):
    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(files.os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b)))
    write_png(tmp_path / "m.png", np.ones((4, 4), bool))
    assert order[:2] == ["fsync", "replace"]


def test_strict_json_has_no_bare_nan():
    text = files.to_json({"score": float("nan"), "ok": [1.0, float("inf")], "n": 3})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"score": None, "ok": [1.0, None], "n": 3}


@pytest.mark.parametrize("cell,want", [("=1+2", "'=1+2"), ("+x", "'+x"), ("-y", "'-y"), ("@z", "'@z"), ("ok", "ok")])
def test_csv_cells_cannot_start_a_formula(cell, want):
    assert files.csv_cell(cell) == want
    assert files.csv_uncell(files.csv_cell(cell)) == cell


EXPORT_UNDER_LIMIT = textwrap.dedent("""
    import resource, signal, sys
    from semirest.core.project import formats
    from semirest.core.project.store import ProjectStore
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG, as ENOSPC would
    with ProjectStore.open(sys.argv[1]) as store:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60, 60))
        try:
            formats.export(store, "masks", sys.argv[2], overwrite=True)
        except OSError as exc:
            print("error:", exc)
            sys.exit(2)
    print("reported success")
""")


def test_full_disk_during_a_masks_export_over_an_earlier_one_replaces_nothing(small_project, tmp_path):
    from semirest.core.project import formats
    from semirest.core.project.store import ProjectStore

    with ProjectStore.open(small_project) as store:
        rec = store.images()[0]
        labels = store.load_labels(rec.id, (120, 160))
        labels.pixels[10:50, 20:90] = True
        store.replace_labels(rec.id, labels)
        out = tmp_path / "export"
        formats.export(store, "masks", out)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(name.endswith("_mask.png") and len(data) > 60 for name, data in before.items())
    r = subprocess.run([sys.executable, "-c", EXPORT_UNDER_LIMIT, str(small_project), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith("error:") and "File too large" in r.stdout
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
