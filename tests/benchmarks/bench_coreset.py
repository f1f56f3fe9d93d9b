"""Coreset selection speed and quality on real screw features.

    python tests/benchmarks/bench_coreset.py [--data ../shared/data/mvtec] [--exact-full]

Prints, from one run on the same features: the textbook greedy loop's rate (points selected per
second, measured over a fixed number of steps and extrapolated), greedy selection (our fast exact
implementation) on PatchCore's 128-d random projection and on our 256 principal coordinates, and
the coverage radius (largest distance from any feature to its nearest selected one, in the full
feature space) of each, against exact greedy selection on the full features when --exact-full is
given (slow: minutes). All selections start from the same seeded point.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from semirest.core.config import make_config
from semirest.core.data.datasets import load_mvtec_category
from semirest.core.memory.coreset import coverage_radius, greedy_coreset, select_coreset
from semirest.core.data.datasets import load_images
from semirest.core.features.extractor import FeatureExtractor


def textbook_rate(x: np.ndarray, steps: int) -> float:
    """Selected points per second of the plain O(N k D) loop (anomalib's k-center greedy)."""
    xt = torch.from_numpy(x)
    dist = (xt - xt[0]).norm(dim=1)
    t0 = time.perf_counter()
    for _ in range(steps):
        c = int(torch.argmax(dist))
        dist = torch.minimum(dist, (xt - xt[c]).norm(dim=1))
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mvtec")
    ap.add_argument("--category", default="screw")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--exact-full", action="store_true", help="also run exact greedy on the full-dimensional features")
    args = ap.parse_args()

    cfg = make_config("fast")
    cat = load_mvtec_category(args.data, args.category)
    t0 = time.perf_counter()
    feats = FeatureExtractor(cfg.features).extract_all(load_images(cat.train))
    flat = feats.reshape(-1, feats.shape[-1])
    print(f"features: {flat.shape[0]} x {flat.shape[1]} ({cfg.features.backbone} @ {cfg.features.image_size}px) in {time.perf_counter() - t0:.1f} s")
    k = int(round(flat.shape[0] * args.ratio))
    print(f"selecting k = {k} ({100 * args.ratio:g} %), torch threads = {torch.get_num_threads()}")

    rate = textbook_rate(flat, 20)
    print(f"textbook greedy on {flat.shape[1]}-d features: {rate:.1f} points/s -> {k / rate / 60:.1f} min for the whole selection")

    rows = []
    for name, proj, dim in (
        ("PatchCore's choice: greedy on a 128-d random projection", "random", 128),
        ("ours (default): greedy on the top 256 principal coordinates", "pca", 256),
    ):
        r = select_coreset(flat, args.ratio, dim, seed=0, projection=proj)
        cov = coverage_radius(flat, r.indices)
        rows.append((name, r.seconds, cov))
        print(f"{name}: {r.seconds:.1f} s, coverage radius {cov:.3f}", flush=True)
    if args.exact_full:
        r = select_coreset(flat, args.ratio, 0, seed=0)
        rows.append(("exact greedy, full features", r.seconds, coverage_radius(flat, r.indices)))
        print(f"{rows[-1][0]}: {rows[-1][1]:.1f} s, coverage radius {rows[-1][2]:.3f}", flush=True)
    ref = rows[-1][2] if args.exact_full else rows[0][2]
    print("\n| selection | time (s) | coverage radius | vs exact greedy |")
    print("|---|---:|---:|---:|")
    for name, sec, cov in rows:
        print(f"| {name} | {sec:.1f} | {cov:.3f} | {cov / ref:.3f} |")


if __name__ == "__main__":
    main()
