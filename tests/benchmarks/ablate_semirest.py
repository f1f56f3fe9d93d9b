"""Table 7 ablations of SemiREST-un on one category, sharing the expensive preparation.

Full model, no bagging, ABS residual and no k-NN augmentation use the same PCFs, bank, neighbours
and synthetic pool (only training and prediction differ), so they are prepared once; no PCF
(lambda_pe = 0) changes the features and is prepared separately. Every variant trains with the
same seed and number of steps and is scored by the same metrics as ``semirest benchmark``.

    python tests/benchmarks/ablate_semirest.py --data ../shared/data/mvtec --category screw \
        --steps 400 --json ablation.json
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from semirest.core.config import apply_overrides, make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.memory.bank import BankSearcher
from semirest.core.metrics import evaluate
from semirest.core.data.datasets import load_images
from semirest.core.device import pick_device
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.maps import predict_maps
from semirest.core.train.trainer import Trainer, prepare_training_data, residual_scale

VARIANTS = {
    "full": [],
    "no bagging": ["model.bagging=false"],
    "ABS": ['bank.residual="abs"'],
    "no k-NN aug": ["train.knn_aug=false"],
    "no PCF": ["features.lambda_pe=0.0"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--only", action="append", help="variant names to run (default: all)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    base = make_config("fast", "un", args.overrides + ([f"train.steps={args.steps}"] if args.steps else []))
    device = pick_device(base.device)
    cat = load_mvtec_category(args.data, args.category)
    train = load_images(cat.train)
    test = load_images(cat.test)
    masks = [s.load_mask(im.shape[:2]) for s, im in zip(cat.test, test)]
    results = []
    shared = None
    for name, extra in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        cfg = apply_overrides(copy.deepcopy(base), extra)
        t0 = time.perf_counter()
        extractor = FeatureExtractor(cfg.features, device)
        if name == "no PCF":
            data = prepare_training_data(cfg, extractor, train, args.category)
        else:
            if shared is None:
                shared = prepare_training_data(base, extractor, train, args.category)
            data = copy.copy(shared)
            data.residual_scale = residual_scale(cfg, data.normal, torch.from_numpy(data.bank.features))
        prep_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        model = Trainer(cfg, data, device).run()
        train_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        maps = predict_maps(cfg, model, extractor, BankSearcher(data.bank, device), data.residual_scale, test)
        pred_s = (time.perf_counter() - t2) / len(test)
        m = evaluate(maps, masks)
        row = {"variant": name, "overrides": extra, "steps": cfg.train.steps,
               "metrics": {k: float(m[k]) for k in ("pixel_auroc", "pro", "ap", "image_auroc")},
               "timing_s": {"prepare": round(prep_s, 1), "train": round(train_s, 1), "predict_per_image": round(pred_s, 3)}}
        results.append(row)
        print(json.dumps(row), flush=True)
        with open(args.json, "w") as fh:
            json.dump({"category": args.category, "results": results, "config": base.to_dict()}, fh, indent=2)


if __name__ == "__main__":
    main()
