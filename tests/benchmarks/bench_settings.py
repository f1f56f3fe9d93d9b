"""PatchCore and SemiREST un / sup / semi side by side, one preparation per category.

For each category: the 10-image labelled budget is drawn once (``split_budget``, seeded, across
defect types) and removed from the test set; every row below is scored on the same remaining test
images. The PCFs, memory bank, k-NN rows and synthetic pool are prepared once (with the labelled
images' PCFs and neighbours) and shared:

* ``patchcore``: nearest-bank-entry distance on the same bank (PatchCore of core/methods/patchcore.py);
* ``un``: trained on normal + synthetic images only (paper 4.2, un hyper-parameters);
* ``sup``: trained from scratch with the 10 real images' Eq. 14 block labels (b3 real images);
* ``semi``: starts from the un model, Eq. 15 labels from one rotated box per defect region
  (``boxes_from_mask``), ResMixMatch (Algorithm 1);
* ``semi (jittered boxes)`` (``--jitter``): boxes as a person draws them: every box 25 % larger,
  its centre moved by up to 10 % of its size and its angle by up to 10 degrees (seeded);
* ``semi, no MixMatch`` (``--mixmatch-ablation``): ResMixMatch with ``train.mixmatch=false``.

Selection without peeking: the test images left after the budget are split once, seeded and by
defect type (``split_validation``), into a validation part and a test part; every row is scored on
both, and the ``part`` column says which figure is which. Design choices are made on ``val``;
BENCHMARKS.md reports ``test``. ``--no-validation-split`` scores the whole remainder as ``all``.

Fit time of a row = its training time; the shared preparation time is printed once per category.
``--train-seed`` (repeatable) trains the SemiREST rows once per seed on the same preparation, to
see how far a row moves with the training seed alone.

    python tests/benchmarks/bench_settings.py --data ../shared/data/mvtec --category screw \
        --data ../shared/data/magnetic_tile --category magnetic_tile --json out/settings.json
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace

import numpy as np
import torch

from semirest.core.benchmark import machine_description
from semirest.core.config import make_config, use_schedule_of
from semirest.core.data.datasets import load_images, load_mvtec_category, split_budget, split_validation
from semirest.core.device import pick_device
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.features.patches import choose_input_size
from semirest.core.labels.blocks import POSITIVE, block_labels
from semirest.core.labels.boxes import RotatedBox, boxes_from_mask
from semirest.core.memory.bank import BankSearcher
from semirest.core.methods.patchcore import PatchCore
from semirest.core.metrics import evaluate
from semirest.core.maps import predict_maps
from semirest.core.labels.blocks import UNKNOWN, block_fractions
from semirest.core.train.box_targets import nn_distances
from semirest.core.train.trainer import Trainer, box_target_set, prepare_training_data, relabel


def pct(m: dict) -> dict:
    return {k: round(100 * float(v), 1) for k, v in m.items()}


def annotation_counts(cfg, masks, grid) -> dict:
    """What an inspector would have drawn: positive 8x8 / 16x16 image blocks (Eq. 14 at the
    setting's eps on each image's own pixels) and rotated boxes (one per 8-connected region)."""
    out = {"images": len(masks), "boxes": 0, "blocks_8": 0, "blocks_16": 0, "positive_tokens": 0}
    for m in masks:
        out["boxes"] += len(boxes_from_mask(m))
        for b in (8, 16):
            g = (max(1, m.shape[0] // b), max(1, m.shape[1] // b))
            out[f"blocks_{b}"] += int((block_labels(m, g, cfg.train.eps_plus, cfg.train.eps_minus) == POSITIVE).sum())
        out["positive_tokens"] += int((block_labels(m, grid, cfg.train.eps_plus, cfg.train.eps_minus) == POSITIVE).sum())
    return out


def jittered(boxes: list[RotatedBox], rng: np.random.Generator) -> list[RotatedBox]:
    """Boxes as a person draws them: 25 % larger, centre moved by up to 10 % of the box's size along
    each image axis, angle by up to 10 degrees."""
    out = []
    for b in boxes:
        size = max(b.width, b.height)
        out.append(RotatedBox(b.cx + rng.uniform(-0.1, 0.1) * size, b.cy + rng.uniform(-0.1, 0.1) * size,
                              b.width * 1.25, b.height * 1.25, b.angle + rng.uniform(-10.0, 10.0)))
    return out


def box_target_quality(d, quantile: float) -> dict:
    """How good the bank-distance teacher of ``train.semi_method = "box_targets"`` is inside the
    boxes (truth: a token holds a defect pixel): the in-box token AUROC of the distances, and the
    precision / recall of the positives it makes."""
    from sklearn.metrics import roc_auc_score

    bank = torch.from_numpy(d.bank.features)
    targets = box_target_set(d, quantile).labels
    scores, truth, pos = [], [], []
    for i, m in enumerate(d.real.masks):
        unknown = (d.real.labels[i] == UNKNOWN).numpy()
        defect = block_fractions(m > 0, unknown.shape) > 0
        scores.append(nn_distances(d.real.features[i], d.real.neighbours[i], bank).numpy()[unknown])
        truth.append(defect[unknown])
        pos.append((targets[i] == POSITIVE).numpy()[unknown])
    s, t, p = (np.concatenate(x) for x in (scores, truth, pos))
    return {"inbox_token_auroc": round(float(roc_auc_score(t, s)), 4) if 0 < t.sum() < len(t) else None,
            "box_positives": int(p.sum()), "positive_precision": round(float(t[p].mean()), 3) if p.any() else None,
            "positive_recall": round(float(p[t].mean()), 3) if t.any() else None, "inbox_tokens": int(len(t))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--category", action="append", required=True)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--mixmatch-ablation", action="store_true", help="also semi with train.mixmatch=false")
    ap.add_argument("--jitter", action="store_true", help="also semi with boxes as a person draws them")
    ap.add_argument("--no-validation-split", action="store_true",
                    help="score the whole test remainder (part 'all') instead of validation and test parts")
    ap.add_argument("--semi-variant", action="append", default=[], metavar="NAME:KEY=VALUE[;KEY=VALUE]",
                    help="also semi with these overrides, from the same un model (repeatable)")
    ap.add_argument("--only", action="append", help="rows to run (patchcore, patchcore-preset, un, sup, semi); default all")
    ap.add_argument("--no-default-semi", action="store_true",
                    help="with --semi-variant: train only the variants, not the preset's own semi row")
    ap.add_argument("--diagnostic", action="append", default=[], choices=["exact-labels", "semi-scratch"],
                    help="extra semi rows (docs/experiments/2026-11-29-semi-stage-levers.md): exact-labels = the semi stage from the un model "
                         "with sup's block labels, no MixMatch; semi-scratch = semi (boxes, ResMixMatch) trained from "
                         "scratch on sup's schedule")
    ap.add_argument("--train-seed", type=int, action="append",
                    help="train every row with this seed (repeatable: one set of rows per seed); the split, "
                         "bank and synthetic pool keep the configuration's seed. Default: the configuration's")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    if len(args.data) != len(args.category):
        ap.error("give one --data per --category")
    rows = []
    want = set(args.only or ["patchcore", "patchcore-preset", "un", "sup", "semi"])
    for root, name in zip(args.data, args.category):
        cfg = {s: make_config(args.preset, s, args.overrides) for s in ("un", "sup", "semi")}
        device = pick_device(cfg["un"].device)
        torch.manual_seed(cfg["un"].seed)
        cat = load_mvtec_category(root, name)
        labelled, rest = split_budget(cat.test, 10, cfg["un"].seed)
        parts = {"all": rest} if args.no_validation_split else dict(zip(("val", "test"), split_validation(rest, 0.5, cfg["un"].seed)))
        test_samples = [s for p in parts.values() for s in p]
        part_of = np.array([p for p, ss in parts.items() for _ in ss])
        train = load_images(cat.train)
        real = []
        for s in labelled:
            im = s.load_image()
            real.append((im, s.load_mask(im.shape[:2])))
        sizes = [im.shape[:2] for im in train]
        for c in cfg.values():
            choose_input_size(c.features, sizes)
        extractor = FeatureExtractor(cfg["un"].features, device)
        t0 = time.perf_counter()
        data = prepare_training_data(cfg["un"], extractor, train, name, real=real)
        prep_s = time.perf_counter() - t0
        del train
        test = load_images(test_samples)
        masks = [s.load_mask(im.shape[:2]) for s, im in zip(test_samples, test)]
        searcher = BankSearcher(data.bank, device)
        grid = tuple(data.normal.labels.shape[1:])
        print(f"{name}: preparation {prep_s:.0f} s, bank {len(data.bank.features)} entries, "
              f"{len(test)} test images ({len(labelled)} drawn for sup/semi)", flush=True)

        def score(method, setting, fit_s, predict, extra=None):
            t1 = time.perf_counter()
            maps = predict(test)
            per_img = (time.perf_counter() - t1) / len(test)
            for part in parts:
                sel = np.flatnonzero(part_of == part)
                r = {"category": name, "method": method, "setting": setting, "part": part,
                     "backbone": cfg["un"].features.backbone, "image_size": cfg["un"].features.image_size, "input_size": cfg["un"].features.input_size,
                     "metrics": {k: float(v) for k, v in evaluate([maps[i] for i in sel], [masks[i] for i in sel]).items()},
                     "timing_s": {"fit": round(fit_s, 1), "predict_per_image": round(per_img, 4), "shared_preparation": round(prep_s, 1)},
                     "device": str(device), "n_test": len(sel), "preset": args.preset, "machine": machine_description(),
                     **(extra or {})}
                rows.append(r)
                print(json.dumps({k: r[k] for k in ("category", "method", "setting", "part")} | pct(r["metrics"]) | r["timing_s"]
                                 | {k: r[k] for k in ("train_seed", "guess_mean_first", "guess_mean_last", "inbox_token_auroc",
                                                     "positive_precision", "positive_recall") if k in r}), flush=True)
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)

        if "patchcore" in want:
            pc = PatchCore(extractor, cfg["un"].bank, cfg["un"].eval.sigma, cfg["un"].seed)
            pc.bank = data.bank
            score("patchcore", "un", prep_s, pc.predict)
        if "patchcore-preset" in want:  # the baseline with its own preset (own aspect x 0.75, 10 % bank)
            own = make_config("patchcore", "un")
            pc_own = PatchCore(FeatureExtractor(own.features, device), own.bank, own.eval.sigma, own.seed)
            t1 = time.perf_counter()
            pc_own.fit(load_images(cat.train))
            score("patchcore", "un (patchcore preset)", time.perf_counter() - t1, pc_own.predict)
            del pc_own

        def predictor(c, m):
            return lambda ims: predict_maps(c, m, extractor, searcher, data.residual_scale, ims)

        def run_seed(seed: int) -> None:
            def train(c, d, model=None):
                """(EMA model, seconds, the semi rows' mean guess inside the boxes over the first and
                last 20 steps; empty without ResMixMatch)."""
                t1 = time.perf_counter()
                c = copy.deepcopy(c)
                c.seed = seed
                stats = []
                tr = Trainer(c, d, device, model=model, on_step=stats.append)
                m = tr.run()
                fit_s = time.perf_counter() - t1
                g = np.array([st["guess_mean"] for st in stats if "guess_mean" in st], dtype=float)
                guesses = {}
                if len(g) and not np.isnan(g).all():
                    guesses = dict(guess_mean_first=round(float(np.nanmean(g[:20])), 3),
                                   guess_mean_last=round(float(np.nanmean(g[-20:])), 3))
                return m, fit_s, guesses

            un_model = None
            if "semi-scratch" in args.diagnostic:
                c = copy.deepcopy(cfg["semi"])
                use_schedule_of(c, cfg["sup"].train)
                d = replace(data, synthetic=relabel(c, data.synthetic), real=relabel(c, data.real, semi=True))
                m, s, guesses = train(c, d)
                score("semirest", "semi from scratch (sup's schedule; boxes, ResMixMatch)", s, predictor(c, m),
                      {"train_seed": seed, **guesses})
            if want & {"un", "semi"}:
                un_data = replace(data, real=None)
                un_model, s, _ = train(cfg["un"], un_data)
                if "un" in want:
                    score("semirest", "un", s, predictor(cfg["un"], un_model), {"train_seed": seed})
            if "sup" in want:
                c = cfg["sup"]
                d = replace(data, synthetic=relabel(c, data.synthetic), real=relabel(c, data.real))
                m, s, _ = train(c, d)
                score("semirest", "sup", s, predictor(c, m), {"annotation": annotation_counts(c, [mk for _, mk in real], grid),
                                                                   "train_seed": seed})
            if "semi" in want:
                variants = [] if args.no_default_semi else [("semi", cfg["semi"])]
                if args.jitter:
                    variants.append(("semi (jittered boxes)", cfg["semi"]))
                if args.mixmatch_ablation:
                    nomix = copy.deepcopy(cfg["semi"])
                    nomix.train.mixmatch = False
                    variants.append(("semi (no MixMatch)", nomix))
                for spec in args.semi_variant:
                    label, _, sets = spec.partition(":")
                    variants.append((f"semi ({label})", make_config(args.preset, "semi", args.overrides + [x for x in sets.split(";") if x])))
                if "exact-labels" in args.diagnostic:
                    exact = copy.deepcopy(cfg["semi"])
                    exact.setting = "sup"  # the real images go through the fully supervised loss
                    variants.append(("semi stage, sup's exact block labels (no MixMatch)", exact))
                for label, c in variants:
                    exact_labels = c.setting == "sup"  # the exact-labels diagnostic: sup's Eq. 14 blocks
                    boxes = None
                    if label == "semi (jittered boxes)":
                        rng = np.random.default_rng(1000 + seed)
                        boxes = [jittered(boxes_from_mask(mk), rng) for _, mk in real]
                    d = replace(data, synthetic=relabel(c, data.synthetic),
                                real=relabel(cfg["sup"], data.real) if exact_labels else relabel(c, data.real, semi=True, boxes=boxes))
                    guesses = {}
                    if c.train.semi_method == "box_targets" and not exact_labels:
                        guesses = box_target_quality(d, c.train.box_quantile)
                        print(label, guesses, flush=True)
                    m, s, g = train(c, d, model=copy.deepcopy(un_model).train())
                    guesses = {**guesses, **g}
                    score("semirest", label, s, predictor(c, m), {"annotation": annotation_counts(c, [mk for _, mk in real], grid),
                                                                  "train_seed": seed, **guesses})

        for seed in args.train_seed or [cfg["un"].seed]:
            run_seed(seed)

    print("\n| category | method | setting | part | seed | pixel AUROC | PRO | AP | image AUROC | fit (s) | predict (s/img) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m = pct(r["metrics"])
        print(f"| {r['category']} | {r['method']} | {r['setting']} | {r['part']} | {r.get('train_seed', '')} | {m['pixel_auroc']} | "
              f"{m['pro']} | {m['ap']} | {m['image_auroc']} | {r['timing_s']['fit']} | {r['timing_s']['predict_per_image']} |")


if __name__ == "__main__":
    main()
