"""Charts of the annotation-time study (paper Fig. 6), drawn with matplotlib's Agg backend.

Imported lazily by :mod:`semirest.core.project.formats` so that nothing else pays for matplotlib.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never a window; the studio embeds PNGs, the CLI writes files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semirest.core.files import save_figure  # noqa: E402
from semirest.core.labels.image_labels import LABEL_TYPES  # noqa: E402

TYPE_STYLE = {  # paper Fig. 6: pentagram = box, pentagon = block, circle = pixel
    "pixel": dict(marker="o", color="#d62728", label="pixel"),
    "block8": dict(marker="p", color="#ff7f0e", label="8x8 block"),
    "block16": dict(marker="p", color="#bcbd22", label="16x16 block"),
    "box": dict(marker="*", color="#17becf", label="rotated box"),
}
METRIC_STYLE = {  # paper Fig. 6: blue dotted Pixel-AUROC, orange solid PRO, green dashed AP
    "pixel_auroc": dict(color="#1f77b4", linestyle=":", label="Pixel-AUROC"),
    "pro": dict(color="#ff7f0e", linestyle="-", label="PRO"),
    "ap": dict(color="#2ca02c", linestyle="--", label="AP"),
}


def plot_seconds_per_image(rows: list[dict], path: Path) -> Path:
    """Seconds per image for each label type, one column of dots per type with its mean."""
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        d = per.setdefault(r["label_type"], {})
        d[r["image_key"]] = d.get(r["image_key"], 0.0) + float(r["seconds"])
    types = [t for t in LABEL_TYPES if t in per]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    rng = np.random.default_rng(0)
    for i, t in enumerate(types):
        v = np.array(list(per[t].values()))
        st = TYPE_STYLE[t]
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, marker=st["marker"], color=st["color"], s=40, alpha=0.8, zorder=3)
        ax.hlines(v.mean(), i - 0.3, i + 0.3, color="black", lw=2, zorder=4)
        ax.annotate(f"{v.mean():.1f} s\n(n={v.size})", (i + 0.32, v.mean()), va="center", fontsize=8)
    ax.set_xticks(range(len(types)), [TYPE_STYLE[t]["label"] for t in types])
    ax.set_xlim(-0.6, max(len(types), 1) - 0.2)
    ax.set_ylabel("active seconds per image")
    ax.set_ylim(bottom=0)
    ax.set_title("Annotation time per image and label type")
    ax.grid(axis="y", alpha=0.3)
    if not types:
        ax.text(0.5, 0.5, "no time recorded yet", transform=ax.transAxes, ha="center")
    fig.tight_layout()

    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_accuracy_vs_time(mean_seconds: dict[str, float], results: dict[str, dict[str, float]], path: Path) -> Path:
    """Fig. 6: accuracy metrics (y) against mean annotation seconds per image (x), one marker per
    label type, one line per metric."""
    types = sorted(results, key=lambda t: mean_seconds[t])
    metrics = [m for m in METRIC_STYLE if any(m in results[t] for t in types)]
    metrics += sorted({m for t in types for m in results[t]} - set(metrics))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for m in metrics:
        pts = [(mean_seconds[t], results[t][m], t) for t in types if m in results[t]]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        st = METRIC_STYLE.get(m, dict(color=None, linestyle="-", label=m))
        ax.plot(xs, ys, color=st["color"], linestyle=st["linestyle"], label=st["label"], zorder=2)
        for x, y, t in pts:
            ax.scatter([x], [y], marker=TYPE_STYLE[t]["marker"], s=140, color=st["color"] or "grey", edgecolor="black", zorder=3)
    ax.set_xticks([mean_seconds[t] for t in types], [f"{TYPE_STYLE[t]['label']}\n{mean_seconds[t]:.1f} s" for t in types], fontsize=8)
    ax.set_xlim(0, max(mean_seconds[t] for t in types) * 1.12)
    ax.set_xlabel("mean annotation time per image (s)")
    ax.set_ylabel("score")
    ax.set_title("Accuracy against annotation time")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()

    save_figure(fig, path)
    plt.close(fig)
    return path
