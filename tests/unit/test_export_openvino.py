"""The OpenVINO IR export (`export-model --format openvino`) scores as the torch checkpoint and the
ONNX detector do, keeps the metadata, and fails with one clear line where openvino is absent."""
from __future__ import annotations

import csv
import shutil
import sys

import numpy as np
import pytest

from semirest.core.cli import main
from semirest.core.data.images import read_image
from semirest.core.deploy import OPENVINO_MISSING, Detector, DetectorError
from semirest.core.methods.semirest import SemiREST

from .test_export import _real_images


@pytest.fixture(scope="module")
def openvino_detector(tiny_run, tmp_path_factory):
    pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("ov")
    out = folder / "detector.xml"
    assert main(["export-model", "--run", str(tiny_run.run_dir), "--out", str(out), "--format", "openvino"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["detector.bin", "detector.xml"]  # no temp left
    return out


def test_openvino_detector_equals_checkpoint_and_onnx(tiny_run, tiny_detector, openvino_detector, tmp_path):
    paths = _real_images(tiny_run, tmp_path)
    images = [read_image(p) for p in paths]
    ov_maps, ov_scores, ov_norm = Detector(openvino_detector).detect(images)
    onnx_maps, onnx_scores, onnx_norm = Detector(tiny_detector).detect(images)
    model = SemiREST.load(tiny_run.run_dir / "model.safetensors")
    maps, scores = model.detect(images)
    assert ov_maps.shape == maps.shape == (len(paths), 64, 64)
    assert np.abs(ov_maps - maps).max() <= 1e-4 and np.abs(ov_scores - scores).max() <= 1e-4
    assert np.abs(ov_maps - onnx_maps).max() <= 1e-4 and np.abs(ov_scores - onnx_scores).max() <= 1e-4
    np.testing.assert_allclose(ov_norm, onnx_norm, atol=1e-4)
    assert scores.std() > 1e-3


def test_openvino_metadata_round_trip(tiny_detector, openvino_detector):
    ov, onnx = Detector(openvino_detector), Detector(tiny_detector)
    assert ov.metadata == onnx.metadata
    assert ov.input_size == onnx.input_size and ov.threshold == onnx.threshold
    assert ov.calibrated and ov.metadata["preset"] == "fast" and ov.metadata["training_date"]


def test_inspect_on_openvino_gives_the_onnx_verdicts(tiny_run, tiny_detector, openvino_detector, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, p in enumerate(s.path for s in tiny_run.category.test):
        shutil.copy(p, inputs / f"{i}_{p.parent.name}.png")
    rows = {}
    for name, model in (("onnx", tiny_detector), ("ov", openvino_detector)):
        out = tmp_path / name
        main(["inspect", "--model", str(model), str(inputs), "--out", str(out), "--quiet"])
        with open(out / "verdicts.csv", newline="") as fh:
            rows[name] = {r["file"]: r for r in csv.DictReader(fh)}
    assert rows["ov"].keys() == rows["onnx"].keys() and len(rows["ov"]) == len(tiny_run.category.test)
    assert {k: r["verdict"] for k, r in rows["ov"].items()} == {k: r["verdict"] for k, r in rows["onnx"].items()}
    assert {r["verdict"] for r in rows["ov"].values()} == {"OK", "NG"}
    for k, r in rows["ov"].items():
        assert float(r["score"]) == pytest.approx(float(rows["onnx"][k]["score"]), abs=1e-4)


def test_without_openvino_the_export_and_the_xml_fail_with_the_install_line(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    out = tmp_path / "detector.xml"
    code = main(["export-model", "--run", str(tiny_run.run_dir), "--out", str(out), "--format", "openvino"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'pip install "semirest-studio[openvino]"' in err[0]
    assert list(tmp_path.iterdir()) == []
    out.write_text("<net/>")
    with pytest.raises(DetectorError, match=r"semirest-studio\[openvino\]") as info:
        Detector(out)
    assert str(info.value) == OPENVINO_MISSING
