"""Outputs named after inputs: two inputs never share an output file."""
from __future__ import annotations

import json

import numpy as np

from semirest.core import files
from semirest.core.cli import main as cli_main
from semirest.core.data.images import write_png

TINY = ["features.image_size=64", "features.d_f=32", "features.batch_size=4", "model.embed_dim=32", "model.depth=2",
        "model.num_heads=2", "model.window_size=4", "model.mu=4", "model.step=2"]


def test_unique_names_resolve_clashes_by_the_full_key():
    names = files.unique_names([("a/b/y", "a__b__y"), ("a__b/y", "a__b__y"), ("A/b/y", "A__b__y"), ("c/y", "c__y")])
    assert names["c/y"] == "c__y"
    assert len({n.casefold() for n in names.values()}) == 4
    again = files.unique_names([("a__b/y", "a__b__y"), ("a/b/y", "a__b__y")])
    assert again["a/b/y"] == names["a/b/y"] and again["a__b/y"] == names["a__b/y"]  # order does not matter
    assert files.safe_file_name("../x") == ".._x" and files.safe_file_name("..") == "_.._"
    assert len(files.safe_file_name("é" * 400).encode()) <= files.MAX_NAME_BYTES


def test_predict_writes_one_output_per_image_when_file_names_repeat_in_a_batch(tmp_path, capsys):
    from semirest.core.config import make_config
    from semirest.core.memory.bank import MemoryBank
    from semirest.core.train.checkpoint import save_checkpoint
    from semirest.core.train.trainer import build_model

    cfg = make_config("fast", "un", TINY)
    bank = MemoryBank(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32), np.repeat(np.arange(4), 16))
    ckpt = save_checkpoint(tmp_path / "model.safetensors", cfg, build_model(cfg), bank, 1.0)
    rng = np.random.default_rng(1)
    imgs = tmp_path / "imgs"
    for sub in ("a", "b", "c"):  # three 000.png in one batch of four
        (imgs / sub).mkdir(parents=True)
        write_png(imgs / sub / "000.png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    write_png(imgs / "001.png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert cli_main(["predict", "--run", str(ckpt), str(imgs), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert "wrote 4 overlays" in capsys.readouterr().err
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    maps = sorted(p.name for p in (out / "maps").iterdir())
    assert len(overlays) == 4 and len(maps) == 4 and "001.png" in overlays
    scores = json.loads((out / "scores.json").read_text())
    assert len({s["stem"] for s in scores}) == 4 and {s["image"] for s in scores} == {str(p) for p in imgs.rglob("*.png")}


def test_demo_heatmaps_get_one_file_each():
    from pathlib import Path

    from semirest.core.cli.benchmark import heatmap_names
    from semirest.core.data.datasets import Sample

    samples = [Sample(Path("demo/test/a_b/c.png"), "a_b", None), Sample(Path("demo/test/a/b_c.png"), "a", None),
               Sample(Path("demo/test/good/000.png"), "good", None)]
    names = heatmap_names(samples)
    assert len(set(names.values())) == 3 and names["demo/test/good/000.png"] == "good_000"
