"""Draw the application icon (resources/semirest-studio.png, 256x256) with OpenCV.

A dark inspection surface, a scratch, the 8x8 block grid over part of it and a rotated box: the
three label types of the studio. Run it again only to change the icon; the PNG is committed.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

S = 256


def draw() -> np.ndarray:
    img = np.zeros((S, S, 4), np.uint8)
    # rounded square background (BGRA)
    mask = np.zeros((S, S), np.uint8)
    r = 44
    cv2.rectangle(mask, (r, 8), (S - 1 - r, S - 9), 255, -1)
    cv2.rectangle(mask, (8, r), (S - 9, S - 1 - r), 255, -1)
    for cx, cy in ((r, r), (S - 1 - r, r), (r, S - 1 - r), (S - 1 - r, S - 1 - r)):
        cv2.circle(mask, (cx, cy), r - 8, 255, -1, cv2.LINE_AA)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    shade = 70 + 40 * (1 - (xx + yy) / (2 * S)) + 6 * np.sin(xx / 3.0)  # brushed metal
    for c, k in enumerate((1.15, 1.0, 0.85)):
        img[:, :, c] = np.clip(shade * k, 0, 255).astype(np.uint8)
    img[:, :, 3] = mask
    # block cells (16 px here) over the lower left, semi-transparent blue
    over = img.copy()
    for rr, cc in ((8, 3), (8, 4), (9, 4), (9, 5), (10, 5), (10, 6), (11, 6)):
        cv2.rectangle(over, (cc * 16, rr * 16), (cc * 16 + 15, rr * 16 + 15), (255, 150, 40, 255), -1)
    img = np.where(mask[:, :, None] > 0, cv2.addWeighted(img, 0.45, over, 0.55, 0), img)
    for k in range(3, 8):
        cv2.line(img, (k * 16, 128), (k * 16, 192), (255, 200, 120, 255), 1)
    # the scratch, red, as pixel labels
    pts = np.array([[40, 200], [90, 150], [140, 120], [200, 60]], np.int32)
    cv2.polylines(img, [pts], False, (60, 60, 235, 255), 9, cv2.LINE_AA)
    # rotated box around the top end of the scratch, yellow
    box = cv2.boxPoints(((170, 88), (104, 44), -35)).astype(np.int32)
    cv2.polylines(img, [box], True, (40, 215, 255, 255), 6, cv2.LINE_AA)
    img[:, :, 3] = mask
    return img


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "resources" / "semirest-studio.png"
    cv2.imwrite(str(out), draw())
    print(out)
