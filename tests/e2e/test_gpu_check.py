"""tests/benchmarks/gpu_check.py --dry-run end to end: every stage runs on the CPU at toy sizes and
leaves its figures (or a skip note) in results.json, and results.md is written. A GPU is lent to
this project only now and then; this keeps the prepared script working in between."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--budget", "170"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=290)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


@pytest.mark.slow
def test_dry_run_leaves_every_stage_s_figures(dry_run):
    out, r, log = dry_run
    assert r["meta"]["dry_run"] is True and r["meta"]["device"] == "cpu"
    assert r["meta"]["elapsed_s"] <= 170 + 15
    st = r["stages"]
    assert set(st) == {"env", "speed", "dist", "accuracy"}
    assert not [name for name, s in st.items() if "error" in s], {n: s.get("error") for n, s in st.items()}

    env = st["env"]
    assert env["torch"] and env["python"] and env["cuda_available"] in (True, False)
    t = env["tests"]
    assert t["device"] == "cpu" and t["returncode"] == 0 and t["counts"].get("passed", 0) >= 3 and not t["failed"]
    assert (out / "tests.log").is_file()

    for preset in ("paper", "fast"):
        s = st["speed"][preset]
        if "skipped" in s:
            continue
        assert s["pcr_ms"] > 0 and s["swin_bagged_ms_fp32"] > 0 and s["swin_bagged_ms_bf16"] > 0
        assert s["swin_single_ms_fp32"] > 0 and s["batched_images_per_s_fp32"] > 0 and s["batched_images_per_s_bf16"] > 0
        assert s["windows_per_image"] == 9 and s["bank_entries"] > 0  # 8 x 8 tokens, mu 4, step 2

    d = st["dist"]
    if "skipped" not in d:
        assert d["train_returncode"] == 0 and d["backend"] == "gloo" and d["trained_steps"] == d["steps"] == 3
        assert d["losses_finite"] and d["wrote_checkpoint"]
        assert d["collective"]["backend"] == "gloo" and d["collective"]["all_reduce_ok"] is True
        assert "skipped" in d["faiss_gpu"] or d["faiss_gpu"]["same_1nn_share"] > 0.99

    a = st["accuracy"]
    assert "skipped" in a["magnetic_tile"]
    screw = a["screw"]
    if "rows" in screw:
        assert [row["setting"] for row in screw["rows"]] == ["un", "sup", "semi"]
        assert screw["labelled"] == 10 and screw["n_test"] >= 3
        for row in screw["rows"]:
            if "skipped" in row:
                continue
            assert row["steps"] >= 1 and row["steps"] <= row["planned_steps"]
            assert all(0 <= row[k] <= 100 for k in ("pixel_auroc", "pro", "ap"))
        assert f"{screw['steps']['un']} steps un and sup" in log  # the step counts are printed
    else:
        assert screw["skipped"]


@pytest.mark.slow
def test_dry_run_writes_the_markdown_table(dry_run):
    out, r, _ = dry_run
    md = (out / "results.md").read_text()
    assert md.startswith("# GPU check (dry run")
    for heading in ("## env", "## speed", "## dist", "## accuracy"):
        assert heading in md
    screw = r["stages"]["accuracy"]["screw"]
    if "rows" in screw:  # the demo category stands in where the real data is absent (CI)
        name = "screw" if screw["category"] == "screw" else f"{screw['category']} (for screw)"
        assert f"| {name} | un |" in md and f"| {name} | semi |" in md
