"""`semirest benchmark` and `semirest demo` end to end, on the deterministic demo dataset."""
from __future__ import annotations

import json

import pytest

from semirest.core.cli import main


@pytest.mark.slow
def test_benchmark_patchcore_on_demo(demo_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["benchmark", "--data", str(demo_root), "--category", "demo", "--method", "patchcore", "--quiet",
               "--set", "features.image_size=128", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r) >= {"category", "method", "setting", "backbone", "image_size", "metrics", "timing_s", "device"}
    assert (r["category"], r["method"], r["setting"], r["image_size"]) == ("demo", "patchcore", "un", 128)
    assert set(r["metrics"]) == {"pixel_auroc", "pro", "ap", "image_auroc"}
    assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
    # real defects on a regular texture: the baseline must find them
    assert r["metrics"]["pixel_auroc"] > 0.9 and r["metrics"]["image_auroc"] > 0.9
    assert r["timing_s"]["fit"] > 0 and r["timing_s"]["predict_per_image"] > 0
    table = capsys.readouterr().out
    assert "demo" in table and "patchcore" in table


def test_benchmark_wrong_layout_is_one_clear_line(tmp_path, capsys):
    rc = main(["benchmark", "--data", str(tmp_path / "none"), "--category", "x", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "semirest: error:" in err and "none: dataset folder does not exist" in err and "Traceback" not in err


def test_unknown_override_is_refused(tmp_path, capsys):
    rc = main(["benchmark", "--data", str(tmp_path), "--set", "model.nope=1", "--quiet"])
    assert rc == 2 and "unknown config field 'model.nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_heatmaps_and_metrics(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--set", "features.image_size=128"]) == 0
    heatmaps = sorted((out / "heatmaps").glob("*.png"))
    assert len(heatmaps) == 42
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["pixel_auroc"] > 0.9
    assert "pixAUROC" in (out / "metrics.txt").read_text()
