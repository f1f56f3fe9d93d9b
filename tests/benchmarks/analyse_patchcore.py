"""PatchCore per defect type, and a sweep of input size / aspect / position code / bank ratio /
smoothing on one category.

Prints, for each variant, the pooled metrics and the pixel AUROC of every defect type (that
type's images plus all good test images). The bank is built from ``--bank-images`` training
images drawn with a fixed seed (all of them with 0), so variants are compared on the same bank
images; everything else is the fast preset and the same metric code as ``semirest benchmark``.

    python tests/benchmarks/analyse_patchcore.py --data ../shared/data/magnetic_tile \
        --category magnetic_tile --bank-images 256 --size 256 --size 192 --lambda-pe 0.1 --lambda-pe 0

``--input-scale S`` adds variants with every image at its own aspect scaled by S
(features.input_scale; ``--size`` is then ignored for them); ``--ratio`` sets coreset ratios.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from semirest.core.config import make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.metrics import evaluate
from semirest.core.maps import upsample_and_smooth
from semirest.core.data.datasets import load_images
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.memory.fit import fit_memory_bank_rows, rows_and_sources


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
    ap.add_argument("--input-scale", type=float, action="append", default=[],
                    help="also each image at its own aspect, scaled by this factor (repeatable)")
    ap.add_argument("--ratio", type=float, action="append", help="coreset ratios (default: the preset's)")
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
    shapes = [("size", size) for size in args.size or [base.features.image_size]]
    shapes += [("input_scale", x) for x in args.input_scale]
    for kind, value in shapes:
        for lam in args.lambda_pe or [base.features.lambda_pe]:
            t0 = time.perf_counter()
            over = [f"features.lambda_pe={lam}"]
            over.append(f"features.image_size={value}" if kind == "size" else f"features.input_scale={value}")
            cfg = make_config("fast", "un", over)
            ext = FeatureExtractor(cfg.features, "cpu")
            rows, ids = rows_and_sources(ext.extract_each(train))
            test_feats = ext.extract_each(test)
            for ratio in args.ratio or [base.bank.coreset_ratio]:
                cfg.bank.coreset_ratio = ratio
                bank = fit_memory_bank_rows(rows, ids, cfg.bank, cfg.seed)
                scores = [bank.search(f.reshape(-1, f.shape[-1]), k=1).distances[:, 0].reshape(f.shape[:2])
                          for f in test_feats]
                for sigma in args.sigma or [4.0, 8.0]:
                    maps = [upsample_and_smooth(sc, m.shape, sigma) for sc, m in zip(scores, masks)]
                    per_type = {}
                    for t in sorted(set(types) - {"good"}):
                        idx = good + [i for i, tt in enumerate(types) if tt == t]
                        per_type[t] = pct(evaluate([maps[i] for i in idx], [masks[i] for i in idx]))["pixel_auroc"]
                    print(f"{kind} {value} lambda_pe {lam} ratio {ratio} (bank {len(bank)}) sigma {sigma}: "
                          f"{pct(evaluate(maps, masks))} pixel AUROC per type {per_type} "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
