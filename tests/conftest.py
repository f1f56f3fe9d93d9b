"""Shared fixtures: small synthetic projects and the real benchmark data (skipped when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The device of the tests marked `cuda` (their `device` fixture): cpu unless set, so the default
# run never needs a GPU; tests/benchmarks/gpu_check.py runs `-m cuda` with it set to cuda.
TEST_DEVICE_ENV = "SEMIREST_TEST_DEVICE"

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SCREW = DATA / "mvtec"


@pytest.fixture(scope="session")
def device():
    """The torch device named by SEMIREST_TEST_DEVICE (default cpu). A CUDA device that is asked
    for but absent is an error, not a skip: a GPU run that silently ran nothing would read as passed."""
    import torch

    spec = os.environ.get(TEST_DEVICE_ENV, "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        pytest.fail(f"{TEST_DEVICE_ENV}={spec!r} is not a torch device (expected cpu, cuda or cuda:N)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"{TEST_DEVICE_ENV}={spec} but torch sees no CUDA device")
    return dev


@pytest.fixture
def real_mvtec() -> Path:
    if not (SCREW / "screw" / "train" / "good").is_dir():
        pytest.skip("real data not found at ../shared/data/mvtec/screw (it sits beside the repository)")
    return SCREW


def make_images(folder: Path, sizes=((120, 160), (100, 130), (64, 96))) -> list[Path]:
    """Small textured grayscale PNGs, deterministic."""
    from semirest.core.data.images import write_png

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        img = (rng.integers(90, 160, size=(h, w)) + 40 * np.sin(np.arange(w) / 7.0)).clip(0, 255).astype(np.uint8)
        p = folder / f"img{i:02d}.png"
        write_png(p, img)
        paths.append(p)
    return paths


def label_rows(project: Path, times: bool = True) -> tuple:
    """Every stored label row of a project (tiles, cells, boxes with ids and, with ``times``, when
    each box was written), for "nothing changed"."""
    import sqlite3

    con = sqlite3.connect(f"file:{project}?mode=ro", uri=True)
    try:
        return tuple(tuple(con.execute(q).fetchall()) for q in (
            "SELECT image_id, tile_row, tile_col, hex(png), pixel_count FROM pixel_tiles ORDER BY 1, 2, 3",
            "SELECT image_id, grid, row, col FROM blocks ORDER BY 1, 2, 3, 4",
            "SELECT id, image_id, cx, cy, width, height, angle" + (", updated_at" if times else "") + " FROM boxes ORDER BY id",
        ))
    finally:
        con.close()


@pytest.fixture
def small_project(tmp_path):
    """A project over 3 small images (sizes not multiples of 16); the first has a reference mask."""
    from semirest.core.data.images import write_png
    from semirest.core.project.store import NewImage, ProjectStore

    paths = make_images(tmp_path / "images")
    ref = np.zeros((120, 160), dtype=bool)
    ref[40:60, 50:90] = True
    write_png(tmp_path / "images" / "ref0.png", ref)
    store = ProjectStore.create(tmp_path / "project.sqlite")
    store.add_images(
        [NewImage(p, p.stem, reference_mask_path=(tmp_path / "images" / "ref0.png") if i == 0 else None) for i, p in enumerate(paths)]
    )
    store.close()
    return tmp_path / "project.sqlite"


@pytest.fixture(scope="session")
def screw_root() -> Path:
    """Session-scoped root of the real screw category (for the core pipeline tests)."""
    if not (SCREW / "screw" / "train" / "good").is_dir():
        pytest.skip("real data not found at ../shared/data/mvtec/screw (it sits beside the repository)")
    return SCREW


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """The deterministic synthetic demo dataset, built once per test session."""
    from semirest.core.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, seed=0)
    return root


@pytest.fixture
def boxed_demo_project(tmp_path):
    """A project over a tiny demo category (all splits) with rotated boxes on two defect images,
    taken from their reference masks as an inspector would draw them."""
    from semirest.core.data.demo import make_demo_dataset
    from semirest.core.data.images import read_mask
    from semirest.core.project.formats import images_from_mvtec
    from semirest.core.project.store import ProjectStore
    from semirest.core.labels.boxes import boxes_from_mask

    root = tmp_path / "data"
    make_demo_dataset(root, seed=0, n_train=6, n_test_good=2, n_per_defect=1, size=64)
    path = tmp_path / "demo.sqlite"
    new = images_from_mvtec(root, "demo", split="all")
    with ProjectStore.create(path) as store:
        store.set_meta("source", f"mvtec {root} category demo split all")
        store.add_images(new)
        recs = [r for r in store.images() if r.defect_type not in (None, "good")]
        news = [n for n in new if n.defect_type not in (None, "good")]
        for rec, n in zip(recs[:2], news[:2]):
            for b in boxes_from_mask(read_mask(n.reference_mask_path)):
                store.add_box(rec.id, b)
    return path


def pytest_terminal_summary(terminalreporter):
    from tests.summary import LINES

    if LINES:
        terminalreporter.section("robustness summary")
        for line in LINES:
            terminalreporter.write_line(line)
