"""The exported ONNX detector gives the torch checkpoint's maps and scores, run where torch and
faiss cannot be imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semirest.core.cli import main
from semirest.core.data.images import read_image
from semirest.core.methods.semirest import SemiREST

ROOT = Path(__file__).resolve().parents[2]
SCREW_TEST = ROOT / ".." / "shared" / "data" / "mvtec" / "screw" / "test"

# A child interpreter in which importing torch or faiss fails, as on a line PC without them.
BLOCKED = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "faiss", "torchvision", "timm"):
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
"""

RUNTIME = BLOCKED + r"""
import json, numpy as np
from semirest.core.deploy import Detector
from semirest.core.data.images import read_image
det = Detector(sys.argv[1])
paths = json.loads(open(sys.argv[2]).read())
maps, scores, normalised = det.detect([read_image(p) for p in paths])
np.savez(sys.argv[3], maps=maps, scores=scores, normalised=normalised)
assert not any(m.split(".")[0] in ("torch", "faiss") for m in sys.modules)
print(json.dumps({"metadata": det.metadata, "threshold": det.threshold}))
"""


@pytest.fixture
def exported(tiny_detector):
    return tiny_detector


def _real_images(tiny_run, tmp_path) -> list[Path]:
    """Demo test images (64 px, the input size) and, when the real data is there, screw images
    (1024 px, grayscale files: the resizing and colour conversion path)."""
    paths = [s.path for s in tiny_run.category.test]
    screw = sorted(SCREW_TEST.glob("*/000.png"))[:3]
    return paths + screw


def test_onnx_detector_equals_checkpoint_without_torch(tiny_run, exported, tmp_path):
    paths = _real_images(tiny_run, tmp_path)
    list_file = tmp_path / "paths.json"
    list_file.write_text(json.dumps([str(p) for p in paths]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", RUNTIME, str(exported), str(list_file), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    got = np.load(tmp_path / "out.npz")

    model = SemiREST.load(tiny_run.run_dir / "model.safetensors")
    maps, scores = model.detect([read_image(p) for p in paths])
    assert got["maps"].shape == maps.shape == (len(paths), 64, 64)
    assert np.abs(got["maps"] - maps).max() <= 1e-4
    assert np.abs(got["scores"] - scores).max() <= 1e-4
    np.testing.assert_allclose(got["normalised"], model.calibration.normalise(scores), atol=1e-4)
    assert scores.std() > 1e-3  # the images are told apart: the comparison is not of constants

    meta = info["metadata"]
    assert float(meta["threshold"]) == pytest.approx(model.calibration.threshold)
    assert meta["input_size"] == "64x64" and meta["preset"] == "fast" and meta["calibrated"] == "true"
    assert meta["training_date"] == model.metadata["trained_at"]
    assert meta["semirest_version"] and json.loads(meta["config"])["features"]["image_size"] == 64


def test_runtime_refuses_other_files_clearly(tmp_path):
    from semirest.core.deploy import Detector, DetectorError

    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(DetectorError, match="x.onnx: not a readable ONNX file"):
        Detector(bad)
    with pytest.raises(DetectorError, match="no such detector"):
        Detector(tmp_path / "missing.onnx")


def test_export_model_usage_errors(tiny_run, tmp_path, capsys):
    assert main(["export-model", "--run", str(tmp_path), "--out", str(tmp_path / "d.onnx")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["export-model", "--run", str(tiny_run.run_dir), "--out", str(tmp_path / "d.txt")]) == 2
    assert not (tmp_path / "d.txt").exists() and not (tmp_path / "d.onnx").exists()
