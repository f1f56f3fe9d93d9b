"""Image-score candidates of a trained checkpoint on a category's validation part (``split_validation``,
seed 0, half of each defect type): image AUROC of each, from one pass of detector outputs.

Candidates: the maximum of the map at the image's own size (what ``semirest benchmark`` and
``predict`` report), the maximum of the map at the model's input size (the calibrated score of
``inspect`` and the exported detector), the mean of the top-k map values, the maximum with a
border band left out, PatchCore's score of the same bank (the largest nearest-neighbour distance
of the image's features), and "+bank" combinations of a map component with that distance, each
standardised on leave-one-out calibration images of train/good exactly as the training's
calibration does (:func:`semirest.core.calibration.combine`).

    python tests/benchmarks/probe_image_score.py --run RUN_DIR --data ../shared/data/mvtec --category screw

``--part test`` reads the test part (to report a choice made on validation, never to make one).
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
    ap.add_argument("--calibration-images", type=int, default=100,
                    help="leave-one-out train/good images the '+bank' components are standardised on")
    args = ap.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from semirest.core.calibration import combine, component_stats
    from semirest.core.data.datasets import load_mvtec_category, split_validation
    from semirest.core.data.images import read_image
    from semirest.core.maps import detector_outputs
    from semirest.core.methods.semirest import SemiREST
    from semirest.core.train.calibrate import calibration_indices

    run = Path(args.run)
    model = SemiREST.load(run / "model.safetensors" if run.is_dir() else run, "cpu")
    cat = load_mvtec_category(args.data, args.category)
    val, test = split_validation(cat.test, 0.5, 0)
    samples = val if args.part == "val" else test
    labels = np.array([s.is_anomalous for s in samples])

    def outputs(paths, excludes=None, own_size=False):
        maps, bank, own_max = [], [], []
        for i in range(0, len(paths), 8):
            images = [read_image(p) for p in paths[i:i + 8]]
            if own_size:
                own_max += [float(m.max()) for m in model.predict(images)]
            m, b = detector_outputs(model.cfg, model.model, model.extractor, model.searcher, model.residual_scale,
                                    images, None if excludes is None else excludes[i:i + 8])
            maps.append(m)
            bank.append(b)
        return np.concatenate(maps), np.concatenate(bank), np.array(own_max)

    def map_components(maps):
        flat = maps.reshape(len(maps), -1)
        h, w = maps.shape[1:]
        out = {"max": flat.max(1)}
        for frac in (0.001, 0.01, 0.05):
            k = max(1, int(round(frac * flat.shape[1])))
            out[f"top {frac:.1%} mean"] = np.sort(flat, 1)[:, -k:].mean(1)
        for band in (8, 16):
            out[f"max, {band} px border left out"] = maps[:, band:h - band, band:w - band].reshape(len(maps), -1).max(1)
        return out

    ids, _ = calibration_indices(len(cat.train), None, args.calibration_images, model.cfg.seed)
    cal_maps, cal_bank, _ = outputs([cat.train[i].path for i in ids], ids)
    cal_comp = map_components(cal_maps)
    maps, bank, own_max = outputs([s.path for s in samples], own_size=True)
    comp = map_components(maps)
    cands = {"map max at the image's size": own_max}
    cands.update({f"map {k} (input size)": v for k, v in comp.items()})
    cands["PatchCore (max NN distance)"] = bank
    bank_stats = component_stats(cal_bank)
    for name in ("max", "top 1.0% mean", "max, 16 px border left out"):
        stats = {"map": component_stats(cal_comp[name]), "bank": bank_stats}
        cands[f"+bank: {name} with NN distance"] = combine(comp[name], bank, stats)
    print(f"[{args.category}] {args.part} part: {labels.sum()} defective, {(~labels).sum()} good; "
          f"{len(ids)} leave-one-out calibration images; torch threads {torch.get_num_threads()}")
    for name, s in cands.items():
        print(f"  {name:45s} image AUROC {100 * roc_auc_score(labels, s):.1f}")


if __name__ == "__main__":
    main()
