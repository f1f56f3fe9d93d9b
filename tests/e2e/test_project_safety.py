"""The project file under two programs at once, kills and odd file systems: nothing acknowledged
is lost, a second writer is told, a copy is self-contained, a stale run does not block.

The writer runs in a subprocess so it can be killed with SIGKILL; it prints ``ack N`` once edit N
is committed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from semirest.core.project.store import ProjectStore
from tests.summary import report

EDITS = 20


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semirest.core.cli", *args], capture_output=True, text=True,
                          env=_env(), timeout=120)


WRITER = textwrap.dedent("""
    import sys, time
    from semirest.core.project.store import ProjectStore
    path, edits = sys.argv[1], int(sys.argv[2])
    studio = ProjectStore.open(path)
    image_id = studio.images()[0].id
    studio.set_blocks(image_id, 8, on=[(0, 0)])
    print("ack 0", flush=True)
    worker = ProjectStore.open(path)  # the training worker's own open, in the same process
    worker.runs()
    print("second open", flush=True)
    sys.stdin.readline()  # the test lets another program read the project here
    for k in range(1, edits + 1):
        studio.set_blocks(image_id, 8, on=[(k // 8, k % 8)])
        print(f"ack {k}", flush=True)
    time.sleep(60)
""")


def test_second_open_in_process_then_a_reader_then_kill_loses_no_edit(small_project):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(small_project), str(EDITS)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    acks = []
    try:
        assert proc.stdout.readline().strip() == "ack 0"
        assert proc.stdout.readline().strip() == "second open"
        reader = _cli("project", "runs", str(small_project))
        assert reader.returncode == 0, reader.stderr
        proc.stdin.write("\n")
        proc.stdin.flush()
        for _ in range(EDITS):
            line = proc.stdout.readline().strip()
            assert line.startswith("ack "), line + proc.stderr.read()
            acks.append(int(line.split()[1]))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert acks == list(range(1, EDITS + 1))
    with ProjectStore.open(small_project) as store:
        assert store.integrity_check() == "ok"
        rec = store.images()[0]
        cells = store.load_labels(rec.id, rec.hw or (120, 160)).blocks[8]
    want = {(k // 8, k % 8) for k in range(EDITS + 1)}
    assert want <= cells, f"{len(want - cells)} of {EDITS + 1} acknowledged edits lost"
    report(f"crash safety (two processes): second open in-process, a reader process, {EDITS} more edits, SIGKILL: "
           f"{len(want & cells)} of {EDITS + 1} acknowledged edits present")


HOLDER = textwrap.dedent("""
    import sys, time
    from semirest.core.project.store import ProjectStore
    store = ProjectStore.open(sys.argv[1])
    rec = store.images()[0]
    print("writer" if not store.read_only else "read-only", flush=True)
    sys.stdin.readline()
    store.set_blocks(rec.id, 8, on=[(3, 3)])
    print("ack", flush=True)
    sys.stdin.readline()
""")


def test_a_second_writer_is_told_and_gets_a_read_only_view(small_project, tmp_path):
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(small_project)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert first.stdout.readline().strip() == "writer"
        second = ProjectStore.open(small_project)  # as a second studio would
        try:
            assert second.read_only
            assert "open for writing in another program (pid " in second.read_only_reason
            rec = second.images()[0]
            from semirest.core.project.store import ProjectReadOnlyError

            with pytest.raises(ProjectReadOnlyError, match="another program"):
                second.set_blocks(rec.id, 8, on=[(5, 5)])
            # a CLI writer is refused with one line; a reader works
            r = _cli("project", "import", str(small_project), "--format", "dota", "--from", str(tmp_path))
            assert r.returncode == 2 and "open for writing in another program" in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert _cli("project", "info", str(small_project)).returncode == 0
            first.stdin.write("\n")
            first.stdin.flush()
            assert first.stdout.readline().strip() == "ack"
            assert (3, 3) in second.load_labels(rec.id, (120, 160)).blocks[8]  # the reader sees the writer's edit
        finally:
            second.close()
    finally:
        first.stdin.close()
        first.wait(timeout=30)
    with ProjectStore.open(small_project) as store:  # the writer has gone: writable again
        assert not store.read_only
        assert (3, 3) in store.load_labels(store.images()[0].id, (120, 160)).blocks[8]
        assert (5, 5) not in store.load_labels(store.images()[0].id, (120, 160)).blocks[8]


def test_killed_writer_blocks_nothing_and_in_process_opens_share_the_lock(small_project):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(small_project)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "writer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    a = ProjectStore.open(small_project)
    b = ProjectStore.open(small_project)  # the training worker beside the studio
    assert not a.read_only and not b.read_only
    b.close()
    r = subprocess.run([sys.executable, "-c", HOLDER, str(small_project)], input="\n\n", capture_output=True,
                       text=True, env=_env(), timeout=60)
    assert r.stdout.splitlines()[0] == "read-only"  # a still holds the lock after b closed
    a.close()


def test_project_copy_while_the_studio_writes_is_one_self_contained_file(small_project, tmp_path):
    import shutil

    studio = ProjectStore.open(small_project)
    try:
        rec = studio.images()[0]
        for k in range(EDITS):
            studio.set_blocks(rec.id, 8, on=[(k // 8, k % 8)])
        assert Path(f"{small_project}-wal").stat().st_size > 0  # the edits sit in the WAL
        (tmp_path / "elsewhere").mkdir()
        dst = tmp_path / "elsewhere" / "copy.sqlite"
        r = _cli("project", "copy", str(small_project), str(dst))
        assert r.returncode == 0, r.stderr
        assert "one self-contained file" in r.stdout
        assert sorted(p.name for p in dst.parent.iterdir()) == ["copy.sqlite"]
    finally:
        studio.close()
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(dst, moved / "copy.sqlite")  # the file alone, as a user would mail it
    with ProjectStore.open(moved / "copy.sqlite") as copy:
        assert copy.integrity_check() == "ok"
        crec = copy.images()[0]
        assert copy.load_labels(crec.id, (120, 160)).blocks[8] == {(k // 8, k % 8) for k in range(EDITS)}
        assert copy.image_path(crec).resolve() == (tmp_path / "images" / "img00.png").resolve()
        assert copy.reference_mask(crec.id) is not None
    assert _cli("project", "copy", str(small_project), str(dst)).returncode == 2  # never over an existing file


def test_closing_the_studio_leaves_every_edit_in_the_project_file_itself(small_project, tmp_path):
    studio = ProjectStore.open(small_project)
    worker = ProjectStore.open(small_project)  # the training worker's open, still running
    try:
        rec = studio.images()[0]
        studio.set_blocks(rec.id, 16, on=[(1, 2)])
        studio.close()
        alone = tmp_path / "alone"
        alone.mkdir()
        (alone / "p.sqlite").write_bytes(small_project.read_bytes())  # the file without its -wal
        with ProjectStore.open(alone / "p.sqlite", read_only=True) as copy:
            assert (1, 2) in copy.load_labels(rec.id, (120, 160)).blocks[16]
    finally:
        worker.close()


RO_OPEN = textwrap.dedent("""
    import sys
    from semirest.core.project.store import ProjectStore
    with ProjectStore.open(sys.argv[1]) as store:
        rec = store.images()[0]
        print(store.read_only, sorted(store.load_labels(rec.id, (120, 160)).blocks[8]), store.read_only_reason)
""")


def test_a_project_on_a_read_only_file_system_opens_read_only_and_says_so(small_project, tmp_path):
    import shutil

    with ProjectStore.open(small_project) as store:
        store.set_blocks(store.images()[0].id, 8, on=[(2, 2)])
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to mount a read-only file system")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount -t tmpfs tmpfs {ro} && cp {small_project} {ro}/p.sqlite && mount -o remount,ro {ro} && "
              f"{sys.executable} -c '{RO_OPEN}' {ro}/p.sqlite && {sys.executable} -m semirest.core.cli project info {ro}/p.sqlite")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=_env(), timeout=120)
    if "mount" in r.stderr and ("permission denied" in r.stderr.lower() or "not permitted" in r.stderr.lower()):
        pytest.skip(f"cannot mount here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    first, *rest = r.stdout.splitlines()
    assert first.startswith("True [(2, 2)]") and "read-only file system" in first
    assert any("note:" in ln and "read-only" in ln for ln in rest), r.stdout


KILLED_AT = textwrap.dedent("""
    import os, signal, sys
    from semirest.core import cli
    from semirest.core.project.store import ProjectStore
    target, calls = sys.argv[1], int(sys.argv[2])
    owner, name = target.rsplit(".", 1)
    module = __import__(owner.rsplit(".", 1)[0], fromlist=["x"])
    cls = getattr(module, owner.rsplit(".", 1)[1])
    real = getattr(cls, name)
    seen = []
    def dying(*a, **k):
        seen.append(1)
        if len(seen) >= calls:
            os.kill(os.getpid(), signal.SIGKILL)  # as a user's kill -9 or a power cut, mid-way
        return real(*a, **k)
    setattr(cls, name, staticmethod(dying) if isinstance(cls.__dict__[name], staticmethod) else dying)
    sys.exit(cli.main(sys.argv[3:]))
""")


def _killed_at(target: str, calls: int, *args) -> subprocess.CompletedProcess:
    """Run a CLI command that is SIGKILLed on the ``calls``-th call of ``target`` (module.Class.method)."""
    r = subprocess.run([sys.executable, "-c", KILLED_AT, target, str(calls), *map(str, args)], capture_output=True,
                       text=True, env=_env(), timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    return r


def test_a_killed_create_import_or_train_blocks_no_rerun(small_project, tmp_path):
    from semirest.core.project import formats
    from semirest.core.labels.boxes import RotatedBox
    from tests.conftest import label_rows

    images = tmp_path / "images"
    # create: killed while the images go in; the re-run creates the project
    project = tmp_path / "new.sqlite"
    _killed_at("semirest.core.project.store.ProjectStore.set_image_size", 2,
               "project", "create", project, "--images", images)
    assert not project.exists()
    r = _cli("project", "create", str(project), "--images", str(images))
    assert r.returncode == 0, r.stderr
    assert "4 images" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # import: killed after the first of three images was written; nothing of it is in, the re-run imports all
    with ProjectStore.open(small_project) as src:
        for rec in src.images():
            src.add_box(rec.id, RotatedBox(30, 30, 12, 8, 10))
            src.set_blocks(rec.id, 8, on=[(1, 1)])
        formats.export(src, "coco", tmp_path / "coco")
    before = label_rows(project)
    _killed_at("semirest.core.project.store.ProjectStore._write_tiles", 2,
               "project", "import", project, "--format", "coco", "--from", tmp_path / "coco")
    assert label_rows(project) == before
    r = _cli("project", "import", str(project), "--format", "coco", "--from", str(tmp_path / "coco"))
    assert r.returncode == 0 and "3 changed" in r.stdout, r.stdout + r.stderr
    # train: killed once its run is recorded; the next writer marks it interrupted, and training can start again
    _killed_at("semirest.core.project.run.ProjectTrainingRun.run", 1, "project", "train", project, "--quiet",
               "--device", "cpu")
    with ProjectStore.open(project, read_only=True) as store:
        assert [r.state for r in store.runs()] == ["running"]  # a reader does not guess
    with ProjectStore.open(project, require_write=True) as store:
        run = store.runs()[0]
        assert run.state == "failed" and run.message.startswith("interrupted:") and run.finished_at
        second = ProjectStore.open(project)  # the studio's training worker: a run it starts is not touched
        try:
            rid = second.create_run("un", "fast", {}, {})
        finally:
            second.close()
    with ProjectStore.open(project, read_only=True) as store:
        assert store.run(rid).state == "running"
    r = _cli("project", "runs", str(project))
    assert r.returncode == 0 and "failed" in r.stdout
    report("crash safety (create, import, train): a SIGKILL in each left nothing that blocks the re-run; the killed "
           "import left the project as before, the killed run is marked interrupted by the next writer")
