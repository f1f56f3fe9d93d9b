"""One benchmark run: fit a method on a category's normal images, predict its test set, score it.

Methods register themselves in :data:`semirest.core.methods.METHODS` as factories
``(config, device, category) -> Method`` where a Method has ``fit(images, progress)`` and
``predict(images, progress) -> maps`` at each image's own resolution. The JSON written by the CLI
has one stable shape for every method and setting.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semirest.core import files
from semirest.core.config import Config
from semirest.core.data.datasets import Category, Sample, load_images, load_mvtec_category
from semirest.core.device import pick_device
from semirest.core.methods import METHODS
from semirest.core.metrics import evaluate
from semirest.core.progress import ProgressEvent, ProgressFn


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {platform.system()}"


@dataclass
class Evaluation:
    """A finished run: the JSON-ready result plus what was scored (for heatmaps)."""

    result: dict[str, Any]
    samples: list[Sample]
    images: list[np.ndarray]
    maps: list[np.ndarray]
    masks: list[np.ndarray]


def evaluate_category(cfg: Config, cat: Category, method: str = "patchcore", progress: ProgressFn | None = None) -> Evaluation:
    """Fit a method on a category's normal images, predict and score its test set."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if not cat.test:
        raise ValueError(f"category '{cat.name}' has no test set to evaluate")
    progress = progress or (lambda e: None)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = METHODS[method](cfg, device, cat)

    progress(ProgressEvent("load", 0, 1, {"what": "training images"}))
    train_images = load_images(cat.train)
    t0 = time.perf_counter()
    model.fit(train_images, progress)
    fit_s = time.perf_counter() - t0
    del train_images

    test_samples = getattr(model, "test_samples", None) or cat.test
    test_images = load_images(test_samples)
    masks = [s.load_mask(im.shape[:2]) for s, im in zip(test_samples, test_images)]
    t0 = time.perf_counter()
    maps = model.predict(test_images, progress)
    predict_s = (time.perf_counter() - t0) / max(1, len(test_images))
    metrics = evaluate(maps, masks)
    result = {
        "category": cat.name,
        "method": method,
        "setting": cfg.setting if method != "patchcore" else "un",
        "backbone": cfg.features.backbone,
        "image_size": cfg.features.image_size,
        "metrics": {k: float(metrics[k]) for k in ("pixel_auroc", "pro", "ap", "image_auroc")},
        "timing_s": {"fit": round(fit_s, 3), "predict_per_image": round(predict_s, 4)},
        "device": str(device),
        "n_train": len(cat.train),
        "n_test": len(test_samples),
        "preset": cfg.preset,
        "config": cfg.to_dict(),
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return Evaluation(result, list(test_samples), test_images, maps, masks)


def run_benchmark(
    cfg: Config,
    data_root: str | os.PathLike,
    category: str,
    method: str = "patchcore",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Load an MVTec-layout category, then :func:`evaluate_category`; returns the result dict."""
    return evaluate_category(cfg, load_mvtec_category(data_root, category), method, progress).result


def write_json(result: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, result)


def format_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table of results (one row per run), metrics in percent."""
    head = f"{'category':<16}{'method':<11}{'setting':<8}{'pixAUROC':>9}{'PRO':>7}{'AP':>7}{'imgAUROC':>9}{'fit s':>8}{'s/img':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        m = r["metrics"]
        lines.append(
            f"{r['category']:<16}{r['method']:<11}{r['setting']:<8}"
            f"{100 * m['pixel_auroc']:>9.1f}{100 * m['pro']:>7.1f}{100 * m['ap']:>7.1f}{100 * m['image_auroc']:>9.1f}"
            f"{r['timing_s']['fit']:>8.1f}{r['timing_s']['predict_per_image']:>7.3f}"
        )
    return "\n".join(lines)
