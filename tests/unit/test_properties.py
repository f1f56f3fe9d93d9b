"""Property-based tests (hypothesis): every importer, the checkpoint loader and ``--set`` on 1000
generated inputs each. Each input either works or is refused with one line of the project's own
error types; a refused import changes nothing, an accepted one gives the same project when
imported again. The counts appear in pytest's robustness summary."""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from semirest.core.config import ConfigError, make_config, validate_config
from semirest.core.data.images import ImageReadError, write_png
from semirest.core.project import formats
from semirest.core.labels.image_labels import LABEL_TYPES, ImageLabels
from semirest.core.project.store import NewImage, ProjectError, ProjectStore
from tests.conftest import label_rows
from tests.summary import report

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "semirest-hypothesis")  # no .hypothesis/ in the checkout
CASES = 1000
SETTINGS = settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
SIZES = {"img_a": (40, 50), "sub/img_b": (33, 20)}  # key -> (h, w)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    new = []
    for key, (h, w) in SIZES.items():
        p = root / "images" / f"{key.replace('/', '_')}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_png(p, np.random.default_rng(len(key)).integers(0, 255, (h, w), dtype=np.uint8))
        new.append(NewImage(p, key, defect_type="scratch" if "sub" in key else None))
    with ProjectStore.create(root / "p.sqlite") as store:
        store.add_images(new)
    store = ProjectStore.open(root / "p.sqlite")
    yield store
    store.close()


class Tally:
    def __init__(self, name: str):
        self.name, self.accepted, self.refused = name, 0, 0

    def report(self, what: str) -> None:
        report(f"property test ({self.name}): {self.accepted + self.refused} generated cases, {self.accepted} {what}, "
               f"{self.refused} refused with one line of the project's own error; no traceback, no partial write")


def _one_line(exc: Exception) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg, repr(msg)


def _clear(store: ProjectStore) -> None:
    store.replace_labels_many({r.id: ImageLabels(SIZES[r.key]) for r in store.images()})


def _import_property(store: ProjectStore, fmt: str, src: Path, tally: Tally, as_type: str = "pixel") -> None:
    """Import ``src``: refused -> nothing changed; accepted -> importing it again changes nothing."""
    before = label_rows(store.path)
    try:
        rep = formats.import_labels(store, fmt, src, as_type=as_type)
    except (ProjectError, ImageReadError) as exc:
        _one_line(exc)
        assert label_rows(store.path) == before, "a refused import changed the project"
        tally.refused += 1
        return
    once = label_rows(store.path)
    again = formats.import_labels(store, fmt, src, as_type=as_type)
    assert again.changed == 0 and again.boxes_added == 0 and label_rows(store.path) == once, "not idempotent"
    assert rep.images <= len(SIZES)
    for r in store.images():  # what went in is finite and inside the image
        for b in store.load_labels(r.id, SIZES[r.key]).boxes.values():
            assert all(math.isfinite(v) for v in (b.cx, b.cy, b.width, b.height, b.angle))
            assert 0 <= b.cx <= SIZES[r.key][1] and 0 <= b.cy <= SIZES[r.key][0]
    tally.accepted += 1
    if once != before:
        _clear(store)


# -- generated values --------------------------------------------------------------------------
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-5, max_value=60),
    st.integers(min_value=-10, max_value=70),
    st.integers(min_value=-2**70, max_value=2**70),
)
number_text = st.one_of(
    numbers.map(repr), numbers.map(str), st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "", "1,5", "१२"]),
    st.text(max_size=6),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def _box_line(yolo: bool):
    fields = st.lists(number_text, min_size=0, max_size=11)
    corners = st.lists(st.floats(min_value=-0.2, max_value=1.2) if yolo else st.floats(min_value=-5, max_value=60),
                       min_size=8, max_size=8).map(lambda v: " ".join(f"{x:.4f}" for x in v))
    good = corners.map(lambda c: f"0 {c}" if yolo else f"{c} defect 0")
    return st.one_of(good, fields.map(" ".join), st.sampled_from(["imagesource:x", "gsd:1", "# note", ""]))


def _box_files(yolo: bool):
    folder = "labels" if yolo else "labelTxt"
    names = st.one_of(st.sampled_from(["img_a", "sub__img_b", "nope"]), st.text("abc_/.", min_size=1, max_size=6))
    content = st.one_of(st.lists(_box_line(yolo), max_size=6).map(lambda ls: "\n".join(ls).encode()),
                        st.binary(max_size=40))
    return folder, st.dictionaries(names, content, max_size=3)


def _write_tree(root: Path, folder: str, tree: dict[str, bytes]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, data in tree.items():
        safe = name.replace("/", "_").replace(".", "_") or "_"
        (root / folder / f"{safe}.txt").write_bytes(data)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fmt", ["dota", "yolo-obb"])
def test_box_importers_on_generated_files(project, fmt):
    tally = Tally(f"{fmt} importer")
    folder, files_ = _box_files(fmt == "yolo-obb")

    @SETTINGS
    @given(tree=files_, manifest=st.booleans())
    def check(tree, manifest):
        src = Path(tempfile.mkdtemp())
        try:
            _write_tree(src, folder, tree)
            if manifest:
                (src / "manifest.csv").write_text("name,image_key,image_path\n" + "".join(
                    f"{folder}/{n}.txt,{k},x\n" for n, k in zip(["img_a", "nope"], ["sub/img_b", "img_a"])))
            _import_property(project, fmt, src, tally)
        finally:
            shutil.rmtree(src)

    check()
    tally.report("imported (each imported twice gave the same project)")


def _coco_docs():
    image_ids = st.one_of(st.integers(0, 3), st.text(max_size=2), st.none(), st.floats(), st.lists(st.integers(), max_size=1))
    image = st.fixed_dictionaries({"id": image_ids}, optional={
        "semirest_key": st.one_of(st.sampled_from(list(SIZES)), st.text(max_size=4), numbers),
        "file_name": st.one_of(st.sampled_from(["images/img_a.png", "../x.png", "/etc/passwd", ""]), st.text(max_size=5)),
        "width": numbers, "height": numbers})
    poly = st.lists(st.one_of(st.floats(min_value=-3, max_value=55), numbers, st.text(max_size=2)), min_size=0, max_size=12)
    rle = st.fixed_dictionaries({}, optional={
        "size": st.one_of(st.sampled_from([[40, 50], [33, 20], [100000, 100000], [0, 5]]), json_values),
        "counts": st.one_of(st.lists(st.integers(-5, 2100), max_size=6), st.just([2000]), st.just([0, 660]),
                            st.text(max_size=4), json_values)})
    ann = st.fixed_dictionaries({}, optional={
        "id": st.integers(0, 9), "image_id": image_ids,
        "segmentation": st.one_of(st.lists(poly, max_size=3), rle, json_values),
        "attributes": st.one_of(st.fixed_dictionaries({}, optional={
            "label_type": st.one_of(st.sampled_from(LABEL_TYPES), st.text(max_size=3)),
            "rotated_box": st.one_of(st.lists(st.one_of(st.floats(min_value=-5, max_value=60), numbers), min_size=5, max_size=5),
                                     json_values)}), json_values)})
    doc = st.fixed_dictionaries({}, optional={"images": st.one_of(st.lists(image, max_size=3), json_values),
                                              "annotations": st.one_of(st.lists(ann, max_size=4), json_values)})
    return st.one_of(doc.map(lambda d: json.dumps(d, allow_nan=True)), json_values.map(json.dumps),
                     st.text(max_size=30))


@pytest.mark.timeout(300)
def test_coco_importer_on_generated_files(project):
    tally = Tally("COCO importer")

    @SETTINGS
    @given(text=_coco_docs())
    def check(text):
        src = Path(tempfile.mkdtemp())
        try:
            (src / "annotations.json").write_text(text, encoding="utf-8", errors="surrogateescape")
            _import_property(project, "coco", src, tally)
        finally:
            shutil.rmtree(src)

    check()
    tally.report("imported (each imported twice gave the same project)")


def _labelme_docs():
    import base64

    point = st.one_of(st.lists(st.one_of(st.floats(min_value=-3, max_value=55), numbers), min_size=2, max_size=2), json_values)
    mask = st.one_of(st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(0, 99)).map(
        lambda t: base64.b64encode(_png(np.random.default_rng(t[2]).integers(0, 2, t[:2], dtype=np.uint8) * 255)).decode()),
        st.text(max_size=6), json_values)
    shape = st.fixed_dictionaries({}, optional={
        # few distinct names: the module's one project would otherwise fill up with classes
        "label": st.one_of(st.sampled_from(["defect", "scratch", "Scratch", "deep scratch", "", " \t"]), json_values),
        "points": st.one_of(st.lists(point, max_size=6), json_values),
        "shape_type": st.one_of(st.sampled_from(list(formats.LABELME_AREA_SHAPES) + ["line", "point", "linestrip", None]),
                                st.text(max_size=4), json_values),
        formats.LABELME_TYPE_KEY: st.one_of(st.sampled_from(LABEL_TYPES), st.text(max_size=3), json_values),
        "mask": mask, "group_id": json_values})
    doc = st.fixed_dictionaries({}, optional={
        "version": st.text(max_size=5), "shapes": st.one_of(st.lists(shape, max_size=4), json_values),
        "imagePath": st.one_of(st.sampled_from(["../images/img_a.png", "img_a.png", "C:\\x\\img_a.png", "/etc/passwd", ""]),
                               st.text(max_size=5), json_values),
        "imageData": st.one_of(st.none(), st.text(max_size=4)),
        "imageHeight": st.one_of(st.sampled_from([40, 33]), numbers, json_values),
        "imageWidth": st.one_of(st.sampled_from([50, 20]), numbers, json_values)})
    return st.one_of(doc.map(lambda d: json.dumps(d, allow_nan=True)), json_values.map(json.dumps), st.text(max_size=30))


@pytest.mark.timeout(300)
def test_labelme_importer_on_generated_files(project):
    tally = Tally("labelme importer")

    @SETTINGS
    @given(docs=st.dictionaries(st.sampled_from(["img_a.json", "sub_img_b.json", "nope.json", "sub/x.json"]), _labelme_docs(),
                                min_size=1, max_size=2))
    def check(docs):
        src = Path(tempfile.mkdtemp())
        try:
            for name, text in docs.items():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                (src / name).write_text(text, encoding="utf-8", errors="surrogateescape")
            _import_property(project, "labelme", src, tally)
        finally:
            shutil.rmtree(src)

    check()
    tally.report("imported (each imported twice gave the same project)")


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    return buf.tobytes()


def _mask_files():
    shape = st.one_of(st.sampled_from([(40, 50), (33, 20), (20, 33), (1, 1)]), st.tuples(st.integers(1, 60), st.integers(1, 60)))
    arrays = st.tuples(shape, st.sampled_from([None, 3, 4]), st.sampled_from([np.uint8, np.uint16]), st.integers(0, 2**16)).map(
        lambda t: np.random.default_rng(t[3]).integers(0, 2, t[0] + ((t[1],) if t[1] else ()), dtype=np.uint8).astype(t[2])
        * (255 if t[2] == np.uint8 else 65535))
    content = st.one_of(arrays.map(_png), st.binary(max_size=30), arrays.map(lambda a: _png(a)[: len(_png(a)) // 2]))
    names = st.sampled_from(["labelled/img_a_mask.png", "scratch/img_b_mask.png", "labelled/x_mask.png", "a/b/c.png",
                             "scratch/sub__img_b_mask.png"])
    return st.dictionaries(names, content, max_size=3)


@pytest.mark.timeout(300)
def test_masks_importer_on_generated_files(project):
    tally = Tally("masks importer")

    @SETTINGS
    @given(tree=_mask_files(), as_type=st.sampled_from(["pixel", "block8", "block16"]),
           manifest=st.lists(st.tuples(st.text(max_size=8), st.one_of(st.sampled_from(list(SIZES)), st.text(max_size=5))),
                             max_size=2))
    def check(tree, as_type, manifest):
        src = Path(tempfile.mkdtemp())
        try:
            for name, data in tree.items():
                p = src / "ground_truth" / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            (src / "ground_truth").mkdir(exist_ok=True)
            if manifest:
                buf = io.StringIO()
                w = csv.writer(buf)
                w.writerow(["name", "image_key", "image_path"])
                w.writerows([[f"ground_truth/{n}", k, "x"] for n, k in manifest])
                (src / "manifest.csv").write_text(buf.getvalue())
            _import_property(project, "masks", src, tally, as_type=as_type)
        finally:
            shutil.rmtree(src)

    check()
    tally.report("imported (each imported twice gave the same project)")


# -- --set ---------------------------------------------------------------------------------------
def _field_names() -> list[str]:
    cfg = make_config()
    out = []
    for k, v in cfg.to_dict().items():
        out += [f"{k}.{f}" for f in v] if isinstance(v, dict) else [k]
    return out


@pytest.mark.timeout(120)
def test_set_overrides_on_generated_values():
    tally = Tally("--set")
    names = _field_names()
    plausible = st.one_of(st.integers(1, 64).map(str), st.floats(0.001, 1).map(repr), st.sampled_from(["true", "false"]))
    values = st.one_of(plausible, plausible, number_text, json_values.map(json.dumps),
                       st.sampled_from(["null", "true", "false", '"x"', "[]", "{}"]))
    keys = st.one_of(st.sampled_from(names), st.text(max_size=10), st.sampled_from(["train", "train.", ".lr", "train.lr.x"]))
    item = st.one_of(st.tuples(st.sampled_from(names), values).map(lambda kv: f"{kv[0]}={kv[1]}"),
                     st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"), st.text(max_size=12))

    @SETTINGS
    @given(overrides=st.lists(item, min_size=1, max_size=2), preset=st.sampled_from(["fast", "paper", "patchcore"]),
           setting=st.sampled_from(["un", "sup", "semi"]))
    def check(overrides, preset, setting):
        try:
            cfg = make_config(preset, setting, overrides)
        except ConfigError as exc:
            _one_line(exc)
            tally.refused += 1
            return
        validate_config(cfg)
        assert cfg.train.steps >= 1 and math.isfinite(cfg.train.lr) and cfg.train.lr > 0
        tally.accepted += 1

    check()
    tally.report("gave a valid configuration")


# -- checkpoint loader ---------------------------------------------------------------------------------
TINY = ["features.image_size=32", "features.d_f=8", "model.embed_dim=8", "model.depth=1", "model.num_heads=1",
        "model.window_size=2", "model.mu=4", "model.step=2", "model.mlp_ratio=1.0"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from semirest.core.memory.bank import MemoryBank
    from semirest.core.train.checkpoint import save_checkpoint
    from semirest.core.train.trainer import build_model

    cfg = make_config("fast", "un", TINY)
    bank = MemoryBank(np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32), np.repeat(np.arange(4), 8))
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "model.safetensors", cfg, build_model(cfg), bank, 1.0)


@pytest.mark.timeout(300)
def test_checkpoint_loader_on_generated_files(tiny_checkpoint):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    from semirest.core.train.checkpoint import CheckpointError, load_checkpoint

    with safe_open(str(tiny_checkpoint), framework="pt") as fh:
        meta0 = fh.metadata()
    tensors0 = load_file(str(tiny_checkpoint))
    conf0 = json.loads(meta0["config"])
    names = _field_names()
    tally = Tally("checkpoint loader")
    tensor_names = sorted(tensors0)

    plausible = st.one_of(st.integers(0, 64), st.floats(0, 1), st.sampled_from([True, False, "cpu", "pca", "ivf", 8, 16]))
    config_edit = st.tuples(st.sampled_from(names + ["unknown.x", "train", "seed"]), st.one_of(plausible, json_values))
    tensor_edit = st.tuples(st.sampled_from(tensor_names), st.sampled_from(["drop", "nan", "shape", "int", "empty", "scalar"]))
    tensor_edits_ = st.one_of(st.just([]), st.lists(tensor_edit, max_size=2))

    @SETTINGS
    @given(config_edits=st.lists(config_edit, max_size=2), tensor_edits=tensor_edits_,
           meta_edit=st.sampled_from([None, None, None, "format", "version", "config-text", "no-config"]),
           garbage=st.binary(max_size=64), garbled=st.integers(0, 9))
    def check(config_edits, tensor_edits, meta_edit, garbage, garbled):
        garbage = garbage if garbled == 0 else None  # one case in ten: not a safetensors file at all
        conf = json.loads(json.dumps(conf0))
        for dotted, v in config_edits:
            section, _, field = dotted.partition(".")
            if field and isinstance(conf.get(section), dict):
                conf[section][field] = v
            else:
                conf[section] = v
        meta = dict(meta0, config=json.dumps(conf, allow_nan=True))
        if meta_edit == "format":
            meta["format"] = "something else"
        elif meta_edit == "version":
            meta["version"] = "99"
        elif meta_edit == "config-text":
            meta["config"] = "{not json"
        elif meta_edit == "no-config":
            del meta["config"]
        tensors = dict(tensors0)
        for name, how in tensor_edits:
            t = tensors.get(name)
            if t is None:
                continue
            if how == "drop":
                del tensors[name]
            elif how == "nan" and t.dtype.is_floating_point:
                tensors[name] = torch.full_like(t, float("nan"))
            elif how == "shape":
                tensors[name] = torch.zeros(tuple(s + 1 for s in t.shape) or (2,), dtype=t.dtype)
            elif how == "int":
                tensors[name] = t.to(torch.int32)
            elif how == "empty":
                tensors[name] = torch.zeros((0,) + tuple(t.shape[1:]), dtype=t.dtype)
            elif how == "scalar":
                tensors[name] = torch.tensor(3.0)
        with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
            f.write(garbage if garbage is not None else save(tensors, metadata=meta))
        try:
            ck = load_checkpoint(f.name)
        except CheckpointError as exc:
            _one_line(exc)
            tally.refused += 1
            return
        finally:
            Path(f.name).unlink()
        assert not ck.config.features.allow_download and math.isfinite(ck.residual_scale) and ck.residual_scale > 0
        tally.accepted += 1

    check()
    tally.report("loaded")
