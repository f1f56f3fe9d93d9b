"""How good are the guesses inside the boxes, and what does the semi stage make of them?

docs/experiments/2026-11-29-in-box-guesses.md. One category, the main table's split (10 labelled images, seed 0) and
un model (seed 0). Prints, for the tokens that Eq. 15 calls unknown (inside the boxes), how well two
signals rank the true defect tokens (sup's Eq. 14 positives): the un model's bagged probability and
the token's mean residual (PatchCore's score), and the precision / recall of simple rules. Then
trains semi variants from the same un model and scores them on the remaining test images:

* ``--variant NAME:guess=model|start|start_half|oracle|oracle_wide|residual[,init=un|scratch][,labels=boxes|exact][,schedule=semi|sup][,q=0.95]``
  with ``--set``-style overrides after a ``;``. ``guess=start`` is ``train.guess_with=start`` (the
  frozen un model guesses, also from scratch); ``guess=start_half``: fixed 0 / 1 guesses, 1 where
  the un model's bagged probability is above 0.5 (FixMatch-like hard labels); ``guess=oracle``: fixed
  guesses from the ground truth, 1 on sup's Eq. 14 positives, else 0 (a control: ResMixMatch's loss
  with perfect guesses); ``oracle_wide``: 1 also on the tokens Eq. 14 ignores (a defect share between
  eps- and eps+, the defect's border); ``guess=residual``: the guess is 1 where the token's
  mean residual is above the ``q``-quantile of the same image's outside-box tokens, else 0 (not in
  the paper); ``labels=exact``: the 10 images with sup's block labels through the fully supervised
  loss (a control); ``schedule=sup``: sup's steps, lr, b1 / b2 / b3 and window fraction.

``--cache DIR`` keeps the preparation and the un model between runs (pickles: only your own files);
a folder holding only ``CATEGORY_data.pt`` trains its un model with the ``--set`` overrides (a bigger
un stage on the same preparation: docs/experiments/2026-11-29-five-seeds-and-bigger-un.md). Each variant also prints ``unknown_share``: the share
of unknown tokens in a ResMixMatch batch, |U'| / N, i.e. how much Algorithm 1's 1/|U'| weighs them.

    python tests/benchmarks/probe_semi_labels.py --data ../shared/data/mvtec --category screw \\
        --cache /tmp/probe --variant "start, sup schedule:guess=start,schedule=sup" --json screw_probe.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from dataclasses import replace

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from semirest.core.config import apply_overrides, make_config, use_schedule_of
from semirest.core.data.datasets import load_mvtec_category, split_budget
from semirest.core.memory.knn import BankSearcher
from semirest.core.metrics import evaluate
from semirest.core.model.bagging import predict_bagged
from semirest.core.model.tokens import pcr_to_tokens
from semirest.core.data.datasets import load_images
from semirest.core.device import pick_device
from semirest.core.features.extractor import FeatureExtractor
from semirest.core.memory.bank import residual
from semirest.core.train.augment import scale_residual
from semirest.core.labels.blocks import IGNORE, NEGATIVE, NORMAL, POSITIVE, UNKNOWN
from semirest.core.train.trainer import Trainer, _pad, frozen_copy, predict_maps, prepare_training_data, relabel


def residual_token_maps(data, images) -> list[torch.Tensor]:
    """Per image the (h_t, w_t, d) residual tokens of the plain 1-NN match (rho = 1)."""
    bank = torch.from_numpy(data.bank.features)
    return [pcr_to_tokens(scale_residual(residual(images.features[i].float(), bank[images.neighbours[i, ..., 0]]),
                                         data.residual_scale), 1) for i in range(len(images))]


def mean_residual_maps(data, images) -> torch.Tensor:
    """(N, h_t, w_t) mean residual per token: PatchCore's score, squared."""
    return torch.stack([t.mean(-1) for t in residual_token_maps(data, images)])


def residual_guesses(data, real, q: float) -> torch.Tensor:
    """1 where a token's mean residual is above the q-quantile of its image's outside-box tokens."""
    s = mean_residual_maps(data, real)
    out = torch.zeros_like(s)
    for i in range(len(s)):
        out[i] = (s[i] > torch.quantile(s[i][real.labels[i] == NORMAL], q)).float()
    return out


class FixedGuessTrainer(Trainer):
    """ResMixMatch with per-token guesses fixed in advance (``guess=residual``) instead of predicted."""

    def __init__(self, *args, fixed: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed, self._picked = fixed, []
        trainer = self

        class Lookup(torch.nn.Module):  # a "model" whose probabilities are the fixed guesses
            def forward(self, copies):
                g = torch.cat(trainer._picked).clamp(1e-6, 1 - 1e-6)
                g = g.repeat(copies.shape[0] // g.shape[0], 1, 1)
                return torch.stack([torch.zeros_like(g), torch.logit(g)], -1)

        self.guess_model = Lookup()
        self.mix_params = replace(self.mix_params, sharpen_t=1.0)  # 0 / 1 guesses need no sharpening

    def _pick_windows(self, images, i, n_windows, labels):
        sel = super()._pick_windows(images, i, n_windows, labels)
        if images is self.data.real:
            g = _pad(self.fixed[i], self.mu, self.mu, 0.0)
            self._picked.append(torch.stack([g[r:r + self.mu, c:c + self.mu] for r, c in self.origins[sel].tolist()]))
        return sel

    def sample_semi(self):
        self._picked = []
        return super().sample_semi()


def parse_variant(spec: str):
    name, _, rest = spec.partition(":")
    opts, _, sets = rest.partition(";")
    v = dict(guess="model", init="un", labels="boxes", schedule="semi", q=0.95)
    for kv in filter(None, opts.split(",")):
        k, _, val = kv.partition("=")
        v[k.strip()] = float(val) if k.strip() == "q" else val.strip()
    return name, v, [s for s in sets.split(";") if s]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--cache", help="folder for the preparation and un model (reused when present)")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every stage")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    device = pick_device("auto")
    cfg = {s: make_config("fast", s, args.overrides) for s in ("un", "sup", "semi")}
    cat = load_mvtec_category(args.data, args.category)
    labelled, test_samples = split_budget(cat.test, 10, cfg["un"].seed)
    paths = [os.path.join(args.cache, f"{args.category}_{k}.pt") for k in ("data", "un")] if args.cache else None
    # our own cache files, never a received file; a folder holding only the preparation trains its
    # un model there (e.g. a bigger un stage through --set on the same preparation)
    torch.manual_seed(cfg["un"].seed)
    if paths and os.path.exists(paths[0]):
        data = torch.load(paths[0], weights_only=False)
    else:
        real = [(im, s.load_mask(im.shape[:2])) for s in labelled for im in [s.load_image()]]
        extractor = FeatureExtractor(cfg["un"].features, device)
        data = prepare_training_data(cfg["un"], extractor, load_images(cat.train), args.category, real=real)
    if paths and os.path.exists(paths[1]):
        un = torch.load(paths[1], weights_only=False)
    else:
        t0 = time.perf_counter()
        un = Trainer(cfg["un"], replace(data, real=None), device).run()
        print(f"un stage: {time.perf_counter() - t0:.0f} s", flush=True)
    if paths:
        os.makedirs(args.cache, exist_ok=True)
        for path, obj in zip(paths, (data, un)):
            if not os.path.exists(path):
                torch.save(obj, path)
    extractor = FeatureExtractor(cfg["un"].features, device)
    searcher = BankSearcher(data.bank, device)

    # 1. the signals inside the boxes against sup's labels
    exact = relabel(cfg["sup"], data.real).labels.numpy()
    boxes = relabel(cfg["semi"], data.real, semi=True).labels.numpy()
    tokens = residual_token_maps(data, data.real)
    score = np.stack([t.mean(-1).numpy() for t in tokens])
    prob = np.stack([predict_bagged(un, t, cfg["un"].model.mu, cfg["un"].model.step, 64).float().numpy()
                     for t in tokens])
    inside = (boxes == UNKNOWN) & (exact != IGNORE)
    y = exact[inside] == POSITIVE
    report = {"unknown_tokens": int((boxes == UNKNOWN).sum()), "positives": int((exact == POSITIVE).sum()),
              "positives_outside_boxes": int(((exact == POSITIVE) & (boxes != UNKNOWN)).sum()),
              "base_rate_inside": round(float(y.mean()), 3)}
    for label, v in (("mean_residual", score), ("un_probability", prob)):
        report[label] = {"auroc": round(float(roc_auc_score(y, v[inside])), 3),
                         "ap": round(float(average_precision_score(y, v[inside])), 3)}
    pred = (prob > 0.5)[inside]
    report["un_probability_above_0.5"] = {"precision": round(float(y[pred].mean()), 3), "recall": round(float(pred[y].mean()), 3)}
    rg = residual_guesses(data, relabel(cfg["semi"], data.real, semi=True), 0.95).numpy().astype(bool)[inside]
    report["residual_above_q0.95"] = {"precision": round(float(y[rg].mean()), 3), "recall": round(float(rg[y].mean()), 3)}
    print(json.dumps({"category": args.category, "inside_boxes": report}), flush=True)
    rows = [{"category": args.category, "inside_boxes": report}]

    # 2. semi variants from the same un model
    test = load_images(test_samples)
    masks = [s.load_mask(im.shape[:2]) for s, im in zip(test_samples, test)]
    for spec in args.variant:
        name, v, sets = parse_variant(spec)
        c = make_config("fast", "semi", args.overrides)
        if v["schedule"] == "sup":
            use_schedule_of(c, cfg["sup"].train)
        apply_overrides(c, sets)
        real = relabel(c, data.real, semi=True)
        if v["labels"] == "exact":
            c.setting, real = "sup", relabel(cfg["sup"], data.real)
        d = replace(data, synthetic=relabel(c, data.synthetic), real=real)
        start = copy.deepcopy(un).train() if v["init"] == "un" else None
        t0 = time.perf_counter()
        if v["guess"] in ("residual", "start_half", "oracle", "oracle_wide"):
            fixed = {"residual": lambda: residual_guesses(data, real, v["q"]),
                     "start_half": lambda: torch.from_numpy(prob > 0.5).float(),
                     "oracle": lambda: torch.from_numpy(exact == POSITIVE).float(),
                     "oracle_wide": lambda: torch.from_numpy(exact != NEGATIVE).float()}[v["guess"]]()
            tr = FixedGuessTrainer(c, d, device, model=start, fixed=fixed)
        else:
            tr = Trainer(c, d, device, model=start)
            if v["guess"] == "start":
                tr.guess_model = frozen_copy(un)  # also from scratch
        model = tr.run()
        fit = time.perf_counter() - t0
        maps = predict_maps(c, model, extractor, searcher, data.residual_scale, test)
        g = np.array(tr.guess_means, dtype=float)
        r = {"category": args.category, "variant": name, **v, "overrides": sets, "fit_s": round(fit, 1),
             "metrics": {k: round(100 * float(x), 2) for k, x in evaluate(maps, masks).items()}}
        if len(g) and not np.isnan(g).all():
            r |= {"guess_mean_first": round(float(np.nanmean(g[:20])), 3), "guess_mean_last": round(float(np.nanmean(g[-20:])), 3)}
        if tr.unknown_shares:
            u = np.array(tr.unknown_shares)
            r |= {"unknown_share_mean": round(float(u.mean()), 4), "unknown_share_median": round(float(np.median(u)), 4)}
        print(json.dumps(r), flush=True)
        rows.append(r)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
