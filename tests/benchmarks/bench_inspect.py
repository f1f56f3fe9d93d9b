"""`semirest inspect` speed on the torch, the ONNX and (where openvino is installed) the OpenVINO path, and the calibrated threshold's real
false-alarm rate, in one run on one category.

A seeded part of train/good (``--holdout``) is kept out of training altogether; the rest trains a
model (calibrated at ``--false-alarm`` on leave-one-out scores of its own training images), which
is exported to ONNX (and to OpenVINO IR). The paths then inspect the same images (held-out normals, test/good and the
test defects) on the CPU, after one warm-up batch each; printed: images/s of each path, the largest
score difference between them, the false-alarm rate on the held-out normal images (train/good
part and test/good) against the requested one, and the miss rate on the test defects.

    python tests/benchmarks/bench_inspect.py --data ../shared/data/mvtec --category screw --steps 100
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--holdout", type=int, default=100, help="train/good images kept out of training")
    ap.add_argument("--false-alarm", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--work", default=None, help="folder for the run and the detector (default: temporary)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from semirest.core.config import make_config
    from semirest.core.data.datasets import load_mvtec_category
    from semirest.core.deploy import Detector
    from semirest.core.cli.inspect import Inspection, TorchDetector
    from semirest.core.data.datasets import load_images
    from semirest.core.train.export import export_detector, export_openvino
    from semirest.core.methods.semirest import SemiREST

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-inspect-"))
    cat = load_mvtec_category(args.data, args.category)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(cat.train))
    held = [cat.train[i] for i in sorted(order[:args.holdout])]
    train = [cat.train[i] for i in sorted(order[args.holdout:])]
    cfg = make_config(args.preset, "un", args.overrides + [f"train.steps={args.steps}", f"eval.false_alarm={args.false_alarm}",
                                                           'device="cpu"'])
    t0 = time.perf_counter()
    model = SemiREST(cfg, "cpu", cat)
    model.fit(load_images(train))
    fit_s = time.perf_counter() - t0
    ckpt = model.save(work / "run" / "model.safetensors")
    cal = model.calibration
    t0 = time.perf_counter()
    onnx_file = export_detector(SemiREST.load(ckpt), work / "detector.onnx")
    export_s = time.perf_counter() - t0
    detectors = [("torch", TorchDetector(ckpt, "cpu")), ("onnx", Detector(onnx_file))]
    if importlib.util.find_spec("openvino") is None:  # the optional extra: its row only where installed
        print("openvino is not installed: no OpenVINO row")
    else:
        detectors.append(("openvino", Detector(export_openvino(SemiREST.load(ckpt), work / "detector.xml"))))

    good_test = [s for s in cat.test if s.defect_type == "good"]
    defects = [s for s in cat.test if s.defect_type != "good"]
    paths = [s.path for s in held + good_test + defects]
    results = {}
    for name, det in detectors:
        for sub in ("warm", "inspect"):
            (work / f"{sub}_{name}").mkdir(parents=True, exist_ok=True)
        Inspection(det, work / f"warm_{name}", 0.5, False, args.batch).run(paths[:args.batch])
        job = Inspection(det, work / f"inspect_{name}", 0.5, False, args.batch)
        job.run(paths)
        scores = np.array([float(r[1]) for r in job.rows])
        results[name] = {"images_per_s": (job.n_ok + job.n_ng) / job.seconds, "scores": scores,
                         "ng": np.array([r[3] == "NG" for r in job.rows])}
    n_h, n_g = len(held), len(good_test)
    ng = results["onnx"]["ng"]
    far_held = float(ng[:n_h].mean())
    far_test_good = float(ng[n_h:n_h + n_g].mean())
    miss = float((~ng[n_h + n_g:]).mean()) if defects else float("nan")
    diff = float(np.abs(results["torch"]["scores"] - results["onnx"]["scores"]).max())
    summary = {
        "category": args.category, "preset": args.preset, "steps": args.steps, "train_images": len(train),
        "torch_threads": torch.get_num_threads(), "fit_s": round(fit_s, 1), "export_s": round(export_s, 1),
        "detector_mb": round(onnx_file.stat().st_size / 1e6, 1), "images": len(paths),
        "torch_images_per_s": round(results["torch"]["images_per_s"], 2),
        "onnx_images_per_s": round(results["onnx"]["images_per_s"], 2),
        "max_score_difference": diff,
        **({"openvino_images_per_s": round(results["openvino"]["images_per_s"], 2),
            "openvino_max_score_difference": float(np.abs(results["torch"]["scores"] - results["openvino"]["scores"]).max())}
           if "openvino" in results else {}),
        "requested_false_alarm": args.false_alarm, "threshold": cal.threshold, "calibration_images": cal.n_images,
        "calibration_unseen_by_swin": cal.n_unseen,
        "false_alarm_heldout_train_good": far_held, "heldout_train_good": n_h,
        "false_alarm_test_good": far_test_good, "test_good": n_g,
        "false_alarm_all_heldout": float(ng[:n_h + n_g].mean()),
        "miss_rate_test_defects": miss, "test_defects": len(defects),
    }
    print(f"[{args.category}] {args.preset} preset, {args.steps} steps, trained on {len(train)} images in {fit_s:.0f} s; "
          f"export {export_s:.0f} s, {summary['detector_mb']} MB")
    print(f"inspect on {len(paths)} images (CPU, {torch.get_num_threads()} threads): torch {summary['torch_images_per_s']:.2f} "
          f"images/s, ONNX {summary['onnx_images_per_s']:.2f} images/s; max |score difference| {diff:.2e}")
    if "openvino" in results:
        print(f"OpenVINO {summary['openvino_images_per_s']:.2f} images/s; max |score difference| to torch "
              f"{summary['openvino_max_score_difference']:.2e}")
    print(f"threshold {cal.threshold:.4f} calibrated for {args.false_alarm:.1%} false alarms on {cal.n_images} images "
          f"(leave-one-out); measured false alarms: {far_held:.1%} of {n_h} held-out train/good, {far_test_good:.1%} of "
          f"{n_g} test/good ({summary['false_alarm_all_heldout']:.1%} of both); misses {miss:.1%} of {len(defects)} test defects")
    if args.json:
        from semirest.core.files import write_json

        write_json(args.json, summary)


if __name__ == "__main__":
    main()
