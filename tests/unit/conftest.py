"""A tiny trained SemiREST run shared by the calibration, export and inspect tests (one fit, ~20 s)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class TinyRun:
    run_dir: Path  # holds model.safetensors, as `semirest train` writes it
    data_root: Path  # the demo dataset (MVTec layout)
    model: object  # the fitted SemiREST
    train_images: list
    category: object


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    from semirest.core.config import make_config
    from semirest.core.data.datasets import load_mvtec_category
    from semirest.core.data.demo import make_demo_dataset
    from semirest.core.data.datasets import load_images
    from semirest.core.cli.train import CHECKPOINT_NAME
    from semirest.core.methods.semirest import SemiREST
    from tests.unit.test_trainer import TINY

    root = tmp_path_factory.mktemp("tiny_run")
    make_demo_dataset(root / "data", seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=64)
    cat = load_mvtec_category(root / "data", "demo")
    train = load_images(cat.train)
    model = SemiREST(make_config("fast", "un", TINY), "cpu", cat)
    model.fit(train)
    model.save(root / "run" / CHECKPOINT_NAME)
    return TinyRun(root / "run", root / "data", model, train, cat)


@pytest.fixture(scope="session")
def tiny_detector(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported with `semirest export-model` (one export for the export and inspect tests)."""
    from semirest.core.cli import main

    out = tmp_path_factory.mktemp("tiny_detector") / "detector.onnx"
    assert main(["export-model", "--run", str(tiny_run.run_dir), "--out", str(out)]) == 0
    return out
