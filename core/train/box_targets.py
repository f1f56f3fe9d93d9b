"""Token targets inside rotated boxes from the memory bank's distances (the semi setting's
``train.semi_method = "box_targets"``).

ResMixMatch (paper 3.4) guesses the labels inside the boxes with the model it trains; on this
project's data those guesses fall from a mean of about 0.2 to 0.01 within the stage, so the stage
ends as a fine-tune on normal data (docs/experiments/). With correct labels inside the boxes the
same stage reaches block supervision. Here the guesses come from a teacher that cannot drift with
the model it teaches: each token's distance to its nearest bank entry (PatchCore's score, fixed
for the whole stage). Starting from Eq. 15's labels (known normal outside the boxes, UNKNOWN
inside):

* an UNKNOWN token whose distance is above what normal images reach (the ``box_quantile`` of the
  distances of normal training tokens, each matched leave-one-out) is POSITIVE: inside a box, a
  distance no normal token shows is the defect the box was drawn around;
* every box region (a connected group of UNKNOWN tokens) keeps at least its most distant token
  POSITIVE, so a box never turns all-normal;
* the remaining UNKNOWN tokens are IGNORE (neither target);
* tokens outside every box stay known normal, pixel and block labels stay as they are.

The labelled images then go through the fully supervised focal loss, as sup's do.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from semirest.core.labels.blocks import IGNORE, POSITIVE, UNKNOWN


def nn_distances(features: torch.Tensor, neighbours: torch.Tensor, bank_features: torch.Tensor) -> torch.Tensor:
    """(h, w) Euclidean distance of each PCF of one image to its nearest bank entry (``neighbours``
    (h, w, K) bank rows, nearest first)."""
    f = features.float()
    return (f - bank_features[neighbours[..., 0]].float()).norm(dim=-1)


def normal_distance_threshold(features: torch.Tensor, neighbours: torch.Tensor, bank_features: torch.Tensor,
                              quantile: float, max_images: int = 64) -> float:
    """The ``quantile`` of the nearest-neighbour distances of the tokens of (up to ``max_images``)
    normal training images, whose neighbours exclude their own bank entries."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"train.box_quantile must be in (0, 1], got {quantile}")
    n = min(len(features), max_images)
    if n == 0:
        raise ValueError("no normal images to set the box-target threshold from")
    d = torch.cat([nn_distances(features[i], neighbours[i], bank_features).reshape(-1) for i in range(n)])
    return float(torch.quantile(d.double(), quantile))


def box_targets(labels: np.ndarray, distances: np.ndarray, threshold: float) -> np.ndarray:
    """(h, w) targets of one image: its Eq. 15 ``labels`` with every UNKNOWN token made POSITIVE
    (distance above ``threshold``, and the most distant token of each box region) or IGNORE."""
    labels = np.asarray(labels, dtype=np.int64)
    distances = np.asarray(distances, dtype=np.float64)
    if labels.shape != distances.shape:
        raise ValueError(f"labels {labels.shape} and distances {distances.shape} must have one shape")
    unknown = labels == UNKNOWN
    out = labels.copy()
    if not unknown.any():
        return out
    out[unknown] = IGNORE
    out[unknown & (distances > threshold)] = POSITIVE
    n, regions = cv2.connectedComponents(unknown.astype(np.uint8), connectivity=8)
    for k in range(1, n):
        region = regions == k
        if not (out[region] == POSITIVE).any():
            flat = np.where(region, distances, -np.inf)
            out[np.unravel_index(int(np.argmax(flat)), flat.shape)] = POSITIVE
    return out
