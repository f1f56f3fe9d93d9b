"""Image-score candidates of a trained checkpoint on a category's validation part (``split_validation``,
seed 0, half of each defect type): image AUROC of each, from one pass of detector maps.

Candidates: the maximum of the map at the image's own size (what ``semirest benchmark`` and
``predict`` report), the maximum of the map at the model's input size (the calibrated score of
``inspect`` and the exported detector), the mean of the top-k map values, the maximum with a
border band left out, and PatchCore's score of the same bank (the largest nearest-neighbour
distance of the image's features), alone and multiplied with the map maximum.

    python tests/benchmarks/probe_image_score.py --run RUN_DIR --data ../shared/data/mvtec --category screw
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--part", choices=["val", "test"], default="val")
    args = ap.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from semirest.core.data.datasets import load_mvtec_category, split_validation
    from semirest.core.data.images import read_image
    from semirest.core.methods.semirest import SemiREST
    from semirest.core.maps import detector_maps

    run = Path(args.run)
    model = SemiREST.load(run / "model.safetensors" if run.is_dir() else run, "cpu")
    cat = load_mvtec_category(args.data, args.category)
    val, test = split_validation(cat.test, 0.5, 0)
    samples = val if args.part == "val" else test
    labels = np.array([s.is_anomalous for s in samples])
    maps, nn_max, own_max = [], [], []
    for i in range(0, len(samples), 8):
        images = [read_image(s.path) for s in samples[i:i + 8]]
        own_max += [float(m.max()) for m in model.predict(images)]
        maps.append(detector_maps(model.cfg, model.model, model.extractor, model.searcher, model.residual_scale, images))
        feats = model.extractor(images)
        for f in feats:
            q = f.reshape(-1, f.shape[-1])
            rows = model.searcher.search(q, 1)[:, 0]
            nn_max.append(float(((q - model.searcher.features[rows]) ** 2).sum(-1).sqrt().max()))
    maps = np.concatenate(maps)
    flat = maps.reshape(len(maps), -1)
    h, w = maps.shape[1:]
    cands = {"map max at the image's size": np.array(own_max), "map max at the input size": flat.max(1)}
    for frac in (0.001, 0.01, 0.05):
        k = max(1, int(round(frac * flat.shape[1])))
        cands[f"top {frac:.1%} mean"] = np.sort(flat, 1)[:, -k:].mean(1)
    for band in (8, 16):
        cands[f"max, {band} px border left out"] = maps[:, band:h - band, band:w - band].reshape(len(maps), -1).max(1)
    nn_max = np.array(nn_max)
    cands["PatchCore (max NN distance)"] = nn_max
    cands["map max x PatchCore"] = flat.max(1) * nn_max
    print(f"[{args.category}] {args.part} part: {labels.sum()} defective, {(~labels).sum()} good; torch threads {torch.get_num_threads()}")
    for name, s in cands.items():
        print(f"  {name:32s} image AUROC {100 * roc_auc_score(labels, s):.1f}")


if __name__ == "__main__":
    main()
