"""PatchCore per defect type, and a sweep of input size / position code / smoothing on one category.

Prints, for each variant, the pooled metrics and the pixel AUROC of every defect type (that
type's images plus all good test images). The bank is built from ``--bank-images`` training
images drawn with a fixed seed (all of them with 0), so variants are compared on the same bank
images; everything else is the fast preset and the same metric code as ``semirest benchmark``.

    python tests/benchmarks/analyse_patchcore.py --data ../shared/data/magnetic_tile \
        --category magnetic_tile --bank-images 256 --size 256 --size 192 --lambda-pe 0.1 --lambda-pe 0
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from semirest.core.config import make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.metrics import evaluate
from semirest.core.pipeline import FeatureExtractor, fit_memory_bank, load_images, to_image_maps


def pct(m: dict) -> dict:
    return {k: round(100 * float(v), 1) for k, v in m.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--bank-images", type=int, default=0, help="training images for the bank (0: all)")
    ap.add_argument("--size", type=int, action="append", help="input sizes (default: the preset's)")
    ap.add_argument("--lambda-pe", type=float, action="append", help="position code weights (default: the preset's)")
    ap.add_argument("--sigma", type=float, action="append", help="smoothing sigmas (default 4 and 8)")
    args = ap.parse_args()
    base = make_config("fast", "un")
    cat = load_mvtec_category(args.data, args.category)
    train_samples = cat.train
    if 0 < args.bank_images < len(train_samples):
        pick = np.sort(np.random.default_rng(0).choice(len(train_samples), args.bank_images, replace=False))
        train_samples = [train_samples[i] for i in pick]
    train, test = load_images(train_samples), load_images(cat.test)
    masks = [s.load_mask(im.shape[:2]) for s, im in zip(cat.test, test)]
    types = [s.defect_type for s in cat.test]
    good = [i for i, t in enumerate(types) if t == "good"]
    for size in args.size or [base.features.image_size]:
        for lam in args.lambda_pe or [base.features.lambda_pe]:
            t0 = time.perf_counter()
            cfg = make_config("fast", "un", [f"features.image_size={size}", f"features.lambda_pe={lam}"])
            ext = FeatureExtractor(cfg.features, "cpu")
            bank = fit_memory_bank(ext.extract_all(train), cfg.bank, cfg.seed)
            scores = [bank.search(f.reshape(-1, f.shape[-1]), k=1).distances[:, 0].reshape(f.shape[:2])
                      for f in ext.extract_all(test)]
            for sigma in args.sigma or [4.0, 8.0]:
                maps = to_image_maps(np.stack(scores), [m.shape for m in masks], sigma)
                per_type = {}
                for t in sorted(set(types) - {"good"}):
                    idx = good + [i for i, tt in enumerate(types) if tt == t]
                    per_type[t] = pct(evaluate([maps[i] for i in idx], [masks[i] for i in idx]))["pixel_auroc"]
                print(f"size {size} lambda_pe {lam} sigma {sigma}: {pct(evaluate(maps, masks))} "
                      f"pixel AUROC per type {per_type} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
