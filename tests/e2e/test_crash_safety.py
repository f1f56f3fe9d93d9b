"""No label is ever lost: the studio and `semirest train` killed with SIGKILL at random moments.

The studio runs in a subprocess on a real project with ``--script``: edits go through the tools,
the document, the session and the store exactly as mouse input does, and the studio prints
``ack <id>`` after each edit is committed. The test kills it at a seeded random moment (during
start-up, between edits or in the middle of a commit), reopens the project as the studio would,
and checks that SQLite's integrity check passes and that every acknowledged edit of every run so
far is in the file. Each run edits its own image, so later runs cannot undo earlier edits.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from semirest.core.data.images import write_png
from semirest.core.project.store import NewImage, ProjectStore
from tests.summary import report

KILLS = 24
SEED = 20261128
SIZE = 128  # images are SIZE x SIZE
EDITS_PER_RUN = 64


def _env() -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    return env


def _edit_ops(run: int, n: int) -> tuple[list[dict], dict[str, tuple]]:
    """Script lines for one run (on image ``run``) and what each edit must leave in the project."""
    ops: list[dict] = [{"op": "goto", "index": run}, {"op": "brush_size", "size": 3}]
    expect: dict[str, tuple] = {}
    counters = {"brush": 0, "block8": 0, "block16": 0, "box": 0}
    kinds = ("brush", "block8", "block16", "box")
    tool = None
    for j in range(n):
        kind = kinds[j % 4]
        k = counters[kind]
        counters[kind] += 1
        eid = f"{run}:{j}"
        if kind != tool:
            ops.append({"op": "tool", "name": kind})
            tool = kind
        if kind == "brush":  # a short stroke on a 12-pixel lattice
            x, y = 6 + 12 * (k % 10), 6 + 12 * (k // 10)
            ops.append({"op": "drag", "id": eid, "points": [[x, y], [x + 2, y]]})
            expect[eid] = ("pixel", y, x + 1)
        elif kind == "block8":
            r, c = divmod(k, SIZE // 8)
            ops.append({"op": "drag", "id": eid, "points": [[c * 8 + 4, r * 8 + 4]]})
            expect[eid] = ("block", 8, r, c)
        elif kind == "block16":
            r, c = divmod(k, SIZE // 16)
            ops.append({"op": "drag", "id": eid, "points": [[c * 16 + 8, r * 16 + 8]]})
            expect[eid] = ("block", 16, r, c)
        else:  # small boxes on a 4x4 lattice of 32 px, far from each other's handles
            cx, cy = 16 + 32 * (k % 4), 16 + 32 * (k // 4)
            ops.append({"op": "drag", "id": eid, "points": [[cx - 6, cy - 4], [cx, cy], [cx + 6, cy + 4]]})
            expect[eid] = ("box", cx, cy)
        ops.append({"op": "sleep", "seconds": 0.005})
    ops.append({"op": "sleep", "seconds": 60})  # stay alive: every run ends with a kill
    return ops, expect


def _present(store: ProjectStore, image_id: int, what: tuple, labels) -> bool:
    if what[0] == "pixel":
        return bool(labels.pixels[what[1], what[2]])
    if what[0] == "block":
        return (what[2], what[3]) in labels.blocks[what[1]]
    return any(abs(b.cx - what[1]) < 0.01 and abs(b.cy - what[2]) < 0.01 for b in labels.boxes.values())


def _read_acks(proc: subprocess.Popen, acks: list[str]) -> None:
    for line in proc.stdout:
        if line.startswith("ack "):
            acks.append(line.split()[1])


def _noise_images(folder: Path, n: int, rng: np.random.Generator, key) -> list[NewImage]:
    """``n`` grey noise PNGs in a new ``folder``, as project images keyed by ``key(i, stem)``."""
    folder.mkdir()
    new = []
    for i in range(n):
        p = folder / f"teil_{i:02d}.png"
        write_png(p, rng.integers(70, 180, size=(SIZE, SIZE), dtype=np.uint8))
        new.append(NewImage(p, key(i, p.stem)))
    return new


@pytest.fixture
def crash_project(tmp_path) -> Path:
    new = _noise_images(tmp_path / "bilder mit leerzeichen", KILLS, np.random.default_rng(0), lambda i, stem: stem)
    project = tmp_path / "crash.sqlite"
    with ProjectStore.create(project) as store:
        store.add_images(new)
    return project


@pytest.mark.timeout(300)
def test_studio_killed_at_random_moments_loses_no_committed_edit(crash_project, tmp_path):
    rnd = random.Random(SEED)
    all_expect: dict[str, tuple[int, tuple]] = {}  # acked edit id -> (image index, expectation)
    acked_total = 0
    killed_in_startup = killed_editing = killed_after_edits = finished_before_kill = 0
    with ProjectStore.open(crash_project) as store:
        image_ids = [r.id for r in store.images()]
    t_start = time.monotonic()
    for run in range(KILLS):
        ops, expect = _edit_ops(run, EDITS_PER_RUN)
        script = tmp_path / f"run{run:02d}.jsonl"
        script.write_text("\n".join(json.dumps(o) for o in ops) + "\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "semirest.app.main", str(crash_project), "--script", str(script), "--annotator", "crash-test"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
        )
        acks: list[str] = []
        reader = threading.Thread(target=_read_acks, args=(proc, acks), daemon=True)
        reader.start()
        if run % 4 == 0:  # during start-up: imports, opening the project, the first image
            time.sleep(rnd.uniform(0.05, 1.0))
        else:  # while editing: a moment after the first acknowledgement (start-up time varies with load)
            end = time.monotonic() + 60
            while not acks and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.005)
            time.sleep(rnd.uniform(0.0, 1.0))
        n_before = len(acks)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        else:
            finished_before_kill += 1
        proc.wait(timeout=30)
        reader.join(timeout=30)
        if proc.returncode == 0:
            pass  # counted above: the script had ended and the window closed by itself
        elif not acks:
            killed_in_startup += 1
        elif len(acks) < EDITS_PER_RUN:
            killed_editing += 1
        else:
            killed_after_edits += 1
        assert n_before <= len(acks)
        for eid in acks:
            all_expect[eid] = (run, expect[eid])
        acked_total += len(acks)
        # reopen as the studio does (write mode: WAL recovery, migrations) and check everything
        with ProjectStore.open(crash_project) as store:
            assert store.integrity_check() == "ok", f"integrity check failed after kill {run + 1}"
            lost = []
            cache = {}
            for eid, (img, what) in all_expect.items():
                if img not in cache:
                    cache[img] = store.load_labels(image_ids[img], (SIZE, SIZE))
                if not _present(store, image_ids[img], what, cache[img]):
                    lost.append(eid)
            assert not lost, f"after kill {run + 1}: acknowledged edits missing from the project: {lost}"
    elapsed = time.monotonic() - t_start
    report(
        f"crash safety (studio): {KILLS - finished_before_kill} SIGKILLs ({killed_in_startup} during start-up, {killed_editing} while editing, "
        f"{killed_after_edits} after the last edit; {finished_before_kill} runs had ended by themselves); {acked_total} committed edits acknowledged, 0 lost; "
        f"PRAGMA integrity_check ok after every kill; {elapsed:.1f} s"
    )
    assert KILLS - finished_before_kill >= 20
    assert killed_editing >= KILLS // 3, "too few kills landed while edits were being made; the timing needs adjusting"
    assert acked_total > 0


TINY = [
    "features.image_size=64", "features.d_f=32", "features.batch_size=4",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.window_size=4", "model.mlp_ratio=2.0",
    "model.mu=4", "model.step=2", "train.steps=400", "train.b1=2", "train.b2=2", "train.synthetic_pool=6",
    "train.ema_decay=0.9", "bank.coreset_ratio=0.25",
]


@pytest.mark.timeout(300)
def test_training_killed_midway_leaves_a_loadable_checkpoint(tmp_path):
    from semirest.core.data.demo import make_demo_dataset
    from semirest.core.train.checkpoint import load_checkpoint
    from semirest.core.cli.periodic import PARTIAL_NAME

    make_demo_dataset(tmp_path / "data", seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    # a project next to the run, with a committed edit, must open after the kill as well
    project = tmp_path / "demo.sqlite"
    from semirest.core.project.formats import images_from_mvtec

    with ProjectStore.create(project) as store:
        ids = store.add_images(images_from_mvtec(tmp_path / "data", "demo"))
        store.set_blocks(ids[0], 8, on=[(1, 2)])
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "semirest.core.cli", "train", "--data", str(tmp_path / "data"), "--category", "demo",
           "--setting", "un", "--preset", "fast", "--out", str(run), "--quiet", "--checkpoint-every", "5", "--device", "cpu"]
    for s in TINY:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    partial = run / PARTIAL_NAME
    checkpoints_seen = 0
    deadline = time.monotonic() + 240
    for line in proc.stderr:  # "checkpoint: step N of M in ..." after each complete write
        if line.startswith("checkpoint: step"):
            checkpoints_seen += 1
            if checkpoints_seen >= 3:
                time.sleep(random.Random(SEED).uniform(0.0, 0.3))  # somewhere in the next steps
                break
        if time.monotonic() > deadline:
            break
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert checkpoints_seen >= 3, "training wrote no periodic checkpoints"
    assert killed, "training ended before it could be killed; raise train.steps"
    assert not (run / "model.safetensors").exists()
    ck = load_checkpoint(partial)
    assert ck.config.features.d_f == 32
    from safetensors import safe_open

    with safe_open(str(partial), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["partial"] == "true" and int(meta["step"]) % 5 == 0
    with ProjectStore.open(project) as store:
        assert store.integrity_check() == "ok"
        assert (1, 2) in store.load_labels(ids[0], (64, 64)).blocks[8]
    report(f"crash safety (training): SIGKILL after {checkpoints_seen} periodic checkpoints; {partial.name} "
          f"(step {meta['step']} of {meta['steps']}) loads; the project passes integrity_check with its edit")


IO_KILLS = 10
IO_IMAGES = 40


@pytest.fixture
def io_projects(tmp_path):
    """A labelled source project and an unlabelled copy of it over the same IO_IMAGES images."""
    from semirest.core.labels.image_labels import ImageLabels
    from semirest.core.labels.boxes import RotatedBox

    rng = np.random.default_rng(1)
    new = _noise_images(tmp_path / "images", IO_IMAGES, rng, lambda i, stem: f"line{i % 3}/{stem}")
    for name in ("source", "target"):
        with ProjectStore.create(tmp_path / f"{name}.sqlite") as store:
            store.add_images(new)
    with ProjectStore.open(tmp_path / "source.sqlite") as store:
        labels = {}
        for rec in store.images():
            lab = ImageLabels((SIZE, SIZE))
            for _ in range(3):
                y, x = rng.integers(0, SIZE - 20, 2)
                lab.pixels[y:y + 12, x:x + 16] = 1
            lab.blocks[8] = {(int(r), int(c)) for r, c in rng.integers(0, SIZE // 8, (4, 2))}
            lab.boxes = {-1: RotatedBox(float(rng.uniform(30, 90)), float(rng.uniform(30, 90)), 20.0, 12.0, float(rng.uniform(-80, 80)))}
            labels[rec.id] = lab
        store.replace_labels_many(labels)
    return tmp_path / "source.sqlite", tmp_path / "target.sqlite"


def _kill_runs(cmd: list[str], rnd: random.Random, window: float, after_each) -> tuple[int, int]:
    """Run ``cmd`` IO_KILLS times, SIGKILLing it at a random moment of ``window`` seconds; returns
    (killed, finished before the kill)."""
    killed = finished = 0
    for run in range(IO_KILLS):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
        time.sleep(rnd.uniform(0.0, window))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        else:
            finished += 1
            assert proc.returncode == 0, proc.stderr.read()
        proc.wait(timeout=60)
        proc.stderr.close()
        after_each(run)
    return killed, finished


@pytest.mark.timeout(600)
def test_import_and_export_killed_at_random_moments_leave_all_or_nothing(io_projects, tmp_path):
    import shutil

    from tests.conftest import label_rows

    source, target = io_projects
    cli = [sys.executable, "-m", "semirest.core.cli"]
    r = subprocess.run(cli + ["project", "export", str(source), "--format", "coco", "--out", str(tmp_path / "coco")],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    pristine = tmp_path / "pristine.sqlite"
    shutil.copy(target, pristine)
    before = label_rows(target, times=False)
    done_copy = tmp_path / "done.sqlite"
    shutil.copy(target, done_copy)
    t0 = time.monotonic()
    r = subprocess.run(cli + ["project", "import", str(done_copy), "--format", "coco", "--from", str(tmp_path / "coco")],
                       capture_output=True, text=True, env=_env(), timeout=300)
    import_s = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    after = label_rows(done_copy, times=False)
    assert after != before
    rnd = random.Random(SEED + 1)
    outcomes = {"as before": 0, "fully imported": 0}

    def check_import(run):
        state = label_rows(target, times=False)
        assert state in (before, after), f"import kill {run + 1}: the project holds part of the import"
        outcomes["as before" if state == before else "fully imported"] += 1
        with ProjectStore.open(target) as store:
            assert store.integrity_check() == "ok"
        for suffix in ("", "-wal", "-shm"):  # the next run starts from the unlabelled project again
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copy(pristine, target)

    imp = _kill_runs(cli + ["project", "import", str(target), "--format", "coco", "--from", str(tmp_path / "coco")],
                     rnd, import_s * 1.2, check_import)
    assert outcomes["as before"] >= 2, outcomes  # kills landed before the commit, not all after the end

    out = tmp_path / "masks"
    t0 = time.monotonic()
    r = subprocess.run(cli + ["project", "export", str(source), "--format", "masks", "--out", str(out)],
                       capture_output=True, text=True, env=_env(), timeout=300)
    export_s = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    shutil.rmtree(out)
    labels_before = label_rows(source)
    partial = {"no manifest": 0, "complete": 0}

    def check_export(run):
        from semirest.core.data.images import read_mask

        masks = [p for p in out.rglob("*.png") if not p.name.startswith(".")]
        for p in masks:  # every file that has its name is whole (written aside, then renamed)
            assert read_mask(p, expected_hw=(SIZE, SIZE)).any(), p
        if (out / "manifest.csv").is_file():
            partial["complete"] += 1
        else:
            partial["no manifest"] += 1
        assert label_rows(source) == labels_before

    exp = _kill_runs(cli + ["project", "export", str(source), "--format", "masks", "--out", str(out), "--overwrite"],
                     rnd, export_s * 1.2, check_export)
    shutil.rmtree(out)
    r = subprocess.run(cli + ["project", "export", str(source), "--format", "masks", "--out", str(out)],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0 and len(list(out.rglob("*_mask.png"))) == IO_IMAGES, r.stderr
    report(f"crash safety (import, export): {imp[0]} SIGKILLs during `project import` of {IO_IMAGES} images "
           f"({outcomes['as before']} left the project as before, {outcomes['fully imported']} fully imported, none part of it); "
           f"{exp[0]} SIGKILLs during `project export --format masks` ({partial['no manifest']} left no manifest, every "
           f"mask file whole); the re-runs succeed")
