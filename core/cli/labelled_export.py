"""Labelled images for ``semirest train --labels``: a studio mask export read back as (image, mask).

The studio's ``semirest project export PROJECT --format masks --out DIR`` writes one 0/255 mask per
labelled image under ``DIR/ground_truth/`` and ``DIR/manifest.csv`` (mask path, image key, image
path). For ``--setting sup`` the masks are the labelled pixels (brush, blocks, boxes); for
``--setting semi`` export the boxes only (``--types box``): each filled box becomes one rotated box
again (``boxes_from_mask`` recovers a rectangle from its own mask), so the semi labels of Eq. 15
are those of the inspector's boxes.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from semirest.core.data.images import ImageReadError, read_image, read_mask


def read_labelled_export(folder) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, bool mask) pairs of a mask export; ValueError with the reason when unusable."""
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(f"{folder}: no manifest.csv; expected the output of "
                         "`semirest project export PROJECT --format masks --out DIR`")
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"name", "image_path"} <= set(rows[0]):
        raise ValueError(f"{manifest}: expected columns name, image_key, image_path and at least one row")
    out = []
    for r in rows:
        try:
            image = read_image(r["image_path"])
            mask = read_mask(folder / r["name"], image.shape[:2])
        except ImageReadError as exc:
            raise ValueError(f"{manifest}: {exc}") from None
        if not mask.any():
            raise ValueError(f"{folder / r['name']}: the mask is empty")
        out.append((image, mask))
    return out
