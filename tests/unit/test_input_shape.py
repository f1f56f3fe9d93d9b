"""features.input_size: one token grid shaped like the parts (median aspect of the training images),
fixed when training starts and carried by the checkpoint and the exported detector."""
from __future__ import annotations

import numpy as np
import pytest

from semirest.core.cli import main
from semirest.core.config import ConfigError, make_config
from semirest.core.data.datasets import load_images, load_mvtec_category
from semirest.core.data.demo import make_demo_dataset
from semirest.core.deploy import Detector
from semirest.core.features.patches import choose_input_size, model_input_size, shaped_input_size
from semirest.core.methods.patchcore import PatchCore
from semirest.core.methods.semirest import SemiREST
from semirest.core.train.checkpoint import load_checkpoint
from tests.unit.test_trainer import TINY


def test_shaped_input_size_follows_the_median_aspect_at_the_pixel_budget():
    assert shaped_input_size([(250, 630)] * 3, 256) == (160, 416)  # elongated parts: 20 x 52 tokens
    assert shaped_input_size([(320, 320)], 256) == (256, 256)  # square images stay square
    assert shaped_input_size([(630, 250)], 256) == (416, 160)
    # the median, not the mean: one odd image in ten does not reshape the grid of the others
    assert shaped_input_size([(100, 200)] * 9 + [(900, 100)], 256) == (192, 352)
    # images of many aspects (as magnetic_tile's) share no shape: the square
    assert shaped_input_size([(100, 200)] * 4 + [(900, 100)], 256) == (256, 256)
    assert shaped_input_size([(285, 122), (375, 265), (272, 219), (123, 286)] * 5, 256) == (256, 256)
    assert shaped_input_size([(10, 5000)], 256) == (32, 2048)  # never below one stride-32 cell
    assert shaped_input_size([], 256) == (256, 256)


def test_choose_input_size_fixes_the_field_once():
    cfg = make_config("fast", "un")
    assert cfg.features.input_size == "images" and model_input_size(cfg.features) == (256, 256)
    assert choose_input_size(cfg.features, [(250, 630)]) == (160, 416)
    assert cfg.features.input_size == "160x416"
    assert choose_input_size(cfg.features, [(320, 320)]) == (160, 416)  # fixed: later images do not change it
    square = make_config("fast", "un", ["features.input_size=\"square\""])
    assert choose_input_size(square.features, [(250, 630)]) == (256, 256) and square.features.input_size == "256x256"


@pytest.mark.parametrize("value, message", [("100x200", "multiple of 32"), ("wide", "images, square or HxW"),
                                            ("0x64", "multiple of 32")])
def test_bad_input_size_is_one_clear_line(value, message):
    with pytest.raises(ConfigError, match=message):
        make_config("fast", "un", [f"features.input_size=\"{value}\""])


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Demo images cut to 64 x 128 (wide parts) and a run trained on them."""
    root = tmp_path_factory.mktemp("wide")
    make_demo_dataset(root, seed=0, n_train=8, n_test_good=2, n_per_defect=1, size=128)
    cat = load_mvtec_category(root, "demo")
    train = [im[32:96] for im in load_images(cat.train)]
    test = [im[32:96] for im in load_images(cat.test)]
    model = SemiREST(make_config("fast", "un", TINY + ["features.image_size=96"]), "cpu", cat)
    model.fit(train)
    return model, train, test, root


def test_semirest_trains_on_a_grid_shaped_like_the_parts(wide):
    model, train, test, _ = wide
    assert model.cfg.features.input_size == "64x128"  # 96**2 pixels at aspect 1:2
    assert tuple(model.data.normal.features.shape[1:3]) == (8, 16)  # stride 8: 8 x 16 tokens, not 12 x 12
    maps = model.predict(test)
    assert [m.shape for m in maps] == [im.shape[:2] for im in test]
    assert all(np.isfinite(m).all() for m in maps)


def test_checkpoint_and_exported_detector_keep_the_input_size(wide, tmp_path):
    model, _, test, _ = wide
    path = tmp_path / "run" / "model.safetensors"
    model.save(path)
    assert load_checkpoint(path).config.features.input_size == "64x128"
    # a config whose size is still to be chosen matches the size training chose
    load_checkpoint(path, make_config("fast", "un", TINY + ["features.image_size=96"]))
    loaded = SemiREST.load(path)
    assert loaded.extractor.input_size == (64, 128)
    np.testing.assert_allclose(np.stack(loaded.predict(test)), np.stack(model.predict(test)), atol=1e-5)

    out = tmp_path / "detector.onnx"
    assert main(["export-model", "--run", str(path.parent), "--out", str(out)]) == 0
    det = Detector(out)
    assert det.metadata["input_size"] == "64x128"
    onnx_maps, onnx_scores, _ = det.detect(test)
    maps, scores = loaded.detect(test)
    assert onnx_maps.shape == maps.shape == (len(test), 64, 128)
    assert np.abs(onnx_maps - maps).max() <= 1e-4 and np.abs(onnx_scores - scores).max() <= 1e-4


def test_old_checkpoints_read_as_square(wide, tmp_path):
    """A checkpoint written before features.input_size existed was trained on the square input."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model, _, _, _ = wide
    path = tmp_path / "model.safetensors"
    model.save(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    cfg = json.loads(meta["config"])
    del cfg["features"]["input_size"]
    meta["config"] = json.dumps(cfg)
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata=meta)
    assert load_checkpoint(old).config.features.input_size == "square"
    assert SemiREST.load(old).extractor.input_size == (96, 96)


def test_patchcore_uses_the_same_shaped_grid(wide):
    _, train, test, _ = wide
    cfg = make_config("fast", "un", TINY + ["features.image_size=96"])
    from semirest.core.features.extractor import FeatureExtractor

    pc = PatchCore(FeatureExtractor(cfg.features, "cpu"), cfg.bank, cfg.eval.sigma)
    pc.fit(train)
    assert cfg.features.input_size == "64x128"
    assert pc.token_scores(test[:1]).shape == (1, 8, 16)
