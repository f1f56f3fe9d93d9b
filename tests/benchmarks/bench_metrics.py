"""One-off timing of the metrics (not collected by pytest): python tests/benchmarks/bench_metrics.py [n] [size]."""
import sys
import time

import cv2
import numpy as np

from semirest.core.maps import upsample_and_smooth
from semirest.core.metrics import evaluate, pixel_auroc, pro_score


def make_set(n: int, size: int, seed: int = 0):
    """Realistic-looking maps: smoothed token maps, a third of the images with blob defects."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        if i % 3 == 0:
            for _ in range(rng.integers(1, 4)):
                c = rng.integers(0, size, 2)
                cv2.circle(mask, (int(c[0]), int(c[1])), int(rng.integers(3, size // 8)), 1, -1)
        token = rng.random((size // 8, size // 8)).astype(np.float32)
        m = upsample_and_smooth(token, (size, size)) + mask.astype(np.float32) * 0.2
        maps.append(m)
        masks.append(mask)
    return maps, masks


def best_of(f, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = f()
        times.append(time.perf_counter() - t0)
    return min(times), r


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 320
    maps, masks = make_set(n, size)
    print(f"{n} images of {size}x{size} = {n * size * size / 1e6:.1f} Mpixels, float32")
    t, r = best_of(lambda: pro_score(maps, masks))
    print(f"pro_score   {t * 1000:8.1f} ms  -> {r:.6f}")
    t, r = best_of(lambda: pixel_auroc(maps, masks))
    print(f"pixel_auroc {t * 1000:8.1f} ms  -> {r:.6f}")
    t, r = best_of(lambda: evaluate(maps, masks))
    print(f"evaluate    {t * 1000:8.1f} ms  -> {r}")
    if "--sklearn" in sys.argv:
        from sklearn.metrics import roc_auc_score
        y = np.concatenate([g.ravel() for g in masks])
        s = np.concatenate([m.ravel() for m in maps])
        t, r = best_of(lambda: roc_auc_score(y, s), 1)
        print(f"sklearn roc_auc_score {t * 1000:8.1f} ms  -> {r:.6f}")
