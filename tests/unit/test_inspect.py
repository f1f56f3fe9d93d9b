"""`semirest inspect`: verdicts, exit codes, unique output names, nothing written outside --out,
the ONNX path without torch and the torch path agreeing, and --watch stopped by Ctrl+C."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semirest.core.cli import main
from semirest.core.files import csv_uncell
from tests.unit.test_export import BLOCKED


@pytest.fixture
def detector_file(tiny_detector):
    return tiny_detector


@pytest.fixture
def inputs(tiny_run, tmp_path):
    """Two folders of demo test images; both hold a file called same.png (different images)."""
    a, b = tmp_path / "in" / "lineA", tmp_path / "in" / "lineB"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    tests = [s.path for s in tiny_run.category.test]
    for i, p in enumerate(tests[:3]):
        shutil.copy(p, a / f"{i}_{p.parent.name}.png")
    shutil.copy(tests[3], a / "same.png")
    shutil.copy(tests[4], b / "same.png")
    return tmp_path / "in"


def read_rows(out: Path) -> list[dict]:
    with open(out / "verdicts.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def tree(root: Path, skip: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if skip not in p.parents and p != skip}


def test_verdicts_follow_the_calibrated_threshold_and_names_never_collide(tiny_run, detector_file, inputs, tmp_path):
    out = tmp_path / "out"
    before = tree(tmp_path, out)
    code = main(["inspect", "--model", str(detector_file), str(inputs), "--out", str(out), "--all-overlays", "--quiet"])
    rows = read_rows(out)
    assert len(rows) == 5
    cal = tiny_run.model.calibration
    for r in rows:
        s, n = float(r["score"]), float(r["normalised_score"])
        assert r["verdict"] == ("NG" if s > cal.threshold else "OK")
        assert n == pytest.approx(cal.normalise(s), abs=1e-4)
        assert float(r["threshold"]) == 0.5 and float(r["score_threshold"]) == pytest.approx(cal.threshold, abs=1e-6)
    assert code == (1 if any(r["verdict"] == "NG" for r in rows) else 0)
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert len(overlays) == 5 and {"same.png", "lineB_same.png"} <= set(overlays)
    assert len({r["overlay"] for r in rows}) == 5
    assert tree(tmp_path, out) == before  # nothing written outside --out


def test_threshold_override_sets_the_exit_code_and_overlays_are_for_ng_only(detector_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["inspect", "--model", str(detector_file), str(inputs), "--out", str(out), "--threshold", "1", "--quiet"]) == 0
    assert {r["verdict"] for r in read_rows(out)} == {"OK"}
    assert not (out / "overlays").exists()
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("5 images: 5 OK, 0 NG;") and "images/s" in summary
    assert main(["inspect", "--model", str(detector_file), str(inputs), "--out", str(out), "--threshold", "0", "--quiet"]) == 1
    assert {r["verdict"] for r in read_rows(out)} == {"NG"}
    assert len(list((out / "overlays").iterdir())) == 5


def test_torch_and_onnx_paths_agree(tiny_run, detector_file, inputs, tmp_path):
    main(["inspect", "--model", str(detector_file), str(inputs), "--out", str(tmp_path / "o1"), "--quiet"])
    main(["inspect", "--run", str(tiny_run.run_dir), str(inputs), "--out", str(tmp_path / "o2"), "--quiet", "--device", "cpu"])
    a, b = read_rows(tmp_path / "o1"), read_rows(tmp_path / "o2")
    assert [r["file"] for r in a] == [r["file"] for r in b]
    assert np.abs(np.array([float(r["score"]) for r in a]) - [float(r["score"]) for r in b]).max() <= 1e-4
    assert [r["verdict"] for r in a] == [r["verdict"] for r in b]


def test_usage_errors_exit_2_and_unreadable_images_exit_3(detector_file, inputs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["inspect", "--model", str(detector_file), str(empty), "--out", str(out)]) == 2
    assert main(["inspect", "--model", str(detector_file), str(tmp_path / "nope.png"), "--out", str(out)]) == 2
    assert main(["inspect", "--model", str(tmp_path / "no.onnx"), str(inputs), "--out", str(out)]) == 2
    assert main(["inspect", "--model", str(detector_file), str(inputs), "--out", str(out), "--threshold", "2"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(inputs), "--out", str(out)])
    assert exc.value.code == 2
    assert not out.exists()  # a usage error writes nothing
    # a file a spreadsheet would run as a formula, and one that is not an image
    monkeypatch.chdir(tmp_path)
    (tmp_path / "=cmd.png").write_bytes(b"broken")
    code = main(["inspect", "--model", str(detector_file), "=cmd.png", "--out", "out", "--threshold", "1", "--quiet"])
    assert code == 3
    text = (out / "verdicts.csv").read_text()
    assert "'=cmd.png" in text
    row = read_rows(out)[0]
    assert csv_uncell(row["file"]) == "=cmd.png" and row["verdict"] == "ERROR" and row["message"]


def test_watch_scores_new_files_and_stops_cleanly_on_ctrl_c_without_torch(detector_file, tiny_run, tmp_path):
    watched, out = tmp_path / "watched", tmp_path / "out"
    watched.mkdir()
    tests = [s.path for s in tiny_run.category.test]
    shutil.copy(tests[0], watched / "first.png")
    code = BLOCKED + "from semirest.core.cli import main; sys.exit(main(sys.argv[1:]))"
    home = tmp_path / "home"  # onnxruntime would write telemetry files under ~/.cache
    home.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), HOME=str(home))
    env.pop("ORT_DISABLE_TELEMETRY", None)
    proc = subprocess.Popen([sys.executable, "-c", code, "inspect", "--model", str(detector_file), str(watched),
                             "--out", str(out), "--watch", "--poll", "0.2", "--quiet", "--threshold", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def wait_rows(n: int) -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "verdicts.csv").exists() and len(read_rows(out)) >= n:
                return
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        raise AssertionError(f"no {n} rows in time")

    try:
        wait_rows(1)
        shutil.copy(tests[1], watched / "second.png")
        wait_rows(2)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stdout.strip().splitlines()[-1].startswith("2 images: 2 OK, 0 NG;")
    assert [Path(r["file"]).name for r in read_rows(out)] == ["first.png", "second.png"]
    assert not any(home.iterdir())  # nothing written outside --out
