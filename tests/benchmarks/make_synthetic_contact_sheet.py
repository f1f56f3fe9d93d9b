"""Contact sheet of synthetic anomalies on real images, to check by eye that they look like defects.

Usage: python tests/benchmarks/make_synthetic_contact_sheet.py [DATA_ROOT] [OUT_PNG]
Each example shows: original | synthetic anomaly | same with the mask outline (red).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from semirest.core.data.images import read_image
from semirest.core.train.synthetic import SyntheticAnomalies

TILE = 150


def _fit(img: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Letterbox into a tile x tile square (keeps the aspect ratio of magnetic_tile crops)."""
    h, w = img.shape[:2]
    s = tile / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((tile, tile, 3), 40, np.uint8)
    y0, x0 = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def _outline(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 0, 0), max(1, round(max(img.shape[:2]) / 160)))
    return out


def main(data_root: str = "../shared/data", out_png: str = "docs/images/synthetic_anomalies.png", per_set: int = 6) -> None:
    root = Path(data_root)
    sets = [
        ("screw", root / "mvtec/screw/train/good"),
        ("magnetic_tile", root / "magnetic_tile/magnetic_tile/train/good"),
    ]
    rng = np.random.default_rng(7)
    rows = []
    for category, folder in sets:
        gen = SyntheticAnomalies(foreground=category)
        paths = sorted(folder.glob("*.png"))
        for i, p in enumerate(paths[:: max(1, len(paths) // per_set)][:per_set]):
            img = read_image(p)
            aug, mask = gen.generate(img, rng)
            panel = np.hstack([_fit(img), _fit(aug), _fit(_outline(aug, mask))])
            rows.append(panel)
    pairs = [np.hstack([rows[i], np.full((TILE, 8, 3), 255, np.uint8), rows[i + 1]]) for i in range(0, len(rows) - 1, 2)]
    sheet = np.vstack([np.vstack([r, np.full((6, r.shape[1], 3), 255, np.uint8)]) for r in pairs])
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    # Maximum zlib compression: OpenCV's default PNG settings make this sheet about 4x larger.
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"could not encode {out_png}")
    buf.tofile(out_png)
    print(f"wrote {out_png}: {sheet.shape[1]}x{sheet.shape[0]}, {Path(out_png).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(*sys.argv[1:3])
