"""From a labeling project's stored labels to what the SemiREST trainer needs (no Qt, no SQL).

The studio stores four label types per image (pixels, 8x8 blocks, 16x16 blocks, rotated boxes; see
:mod:`semirest.core.labels.image_labels`). This module decides, from the labels present, which setting a
training run uses, which images are the normal training images, which are the labelled real
images and which are left for evaluation, and turns each labelled image into token labels:

* pixel masks and block toggles -> Eq. 14 (:func:`~semirest.core.labels.blocks.block_labels`): the
  union of the painted pixels and the toggled cells (cells are exact pixel rectangles, so a token
  that covers whole cells gets POSITIVE or NEGATIVE without any threshold);
* rotated boxes (centre, size, angle as the studio stores them) -> Eq. 15
  (:func:`~semirest.core.labels.blocks.semi_labels_from_boxes`): UNKNOWN inside, NORMAL outside.

Setting rule: no defect labels -> ``un``; pixel or block labels only -> ``sup``; boxes only ->
``semi``; both kinds -> ``semi``, with the pixel / block regions used as Eq. 15 unknown regions like
boxes (their extra precision is not used; the explanation says so).

Normal training images: unlabelled images of the ``train`` split when the project has one, else
unlabelled images marked ``good`` (an MVTec test-split import), else every unlabelled image (a
plain folder: the inspector is assumed to label every defect). Evaluation images: images not used
in training that have a reference mask, or are marked ``good`` (an all-zero mask).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semirest.core.config import Config
from semirest.core.labels.blocks import block_labels, semi_labels, semi_labels_from_boxes
from semirest.core.labels.boxes import RotatedBox, boxes_to_mask
from semirest.core.labels.image_labels import BLOCK8, BLOCK16, PIXEL, ImageLabels

MASK_TYPES = (PIXEL, BLOCK8, BLOCK16)


@dataclass
class PlanImage:
    """One image of a training plan: id and key in the project, file, size when known."""

    image_id: int
    key: str
    path: Path
    hw: tuple[int, int] | None = None


@dataclass
class LabelledImage(PlanImage):
    """A real defective image with the inspector's labels (at the image's own resolution)."""

    mask: np.ndarray | None = None  # union of pixel labels and toggled cells (bool), or None
    boxes: list[RotatedBox] = field(default_factory=list)
    types: list[str] = field(default_factory=list)


@dataclass
class TrainingPlan:
    setting: str  # un | sup | semi
    explanation: str
    normal: list[PlanImage]
    labelled: list[LabelledImage]
    evaluation: list[PlanImage]  # not used in training, with a reference mask or marked good
    category: str = "auto"  # foreground rule of the synthetic anomalies

    def snapshot(self) -> dict:
        """What the run was trained on, as JSON (stored with the run)."""
        return {
            "setting": self.setting,
            "explanation": self.explanation,
            "normal": [p.key for p in self.normal],
            "labelled": [{"key": p.key, "types": p.types, "boxes": [[b.cx, b.cy, b.width, b.height, b.angle] for b in p.boxes],
                          "mask_pixels": int(p.mask.sum()) if p.mask is not None else 0} for p in self.labelled],
            "evaluation": [p.key for p in self.evaluation],
            "category": self.category,
        }


def choose_setting(n_mask_images: int, n_box_images: int) -> tuple[str, str]:
    """(setting, one-line explanation) from the numbers of images with mask-type and box labels."""
    if n_mask_images == 0 and n_box_images == 0:
        return "un", "no defect labels: unsupervised (normal images and synthetic anomalies only)"
    if n_box_images == 0:
        return "sup", f"pixel or block labels on {n_mask_images} image(s): supervised (Eq. 14 block labels)"
    if n_mask_images == 0:
        return "semi", f"boxes on {n_box_images} image(s): semi-supervised (Eq. 15 labels, ResMixMatch)"
    return "semi", (f"mixed labels: boxes on {n_box_images} image(s), pixels or blocks on {n_mask_images}: "
                    "semi-supervised; pixel and block regions are used like boxes (Eq. 15 unknown regions), "
                    "so their extra precision is not used")


def labelled_image(rec_id: int, key: str, path: Path, labels: ImageLabels) -> LabelledImage:
    types = labels.used_types()
    mask_types = [t for t in types if t in MASK_TYPES]
    mask = labels.union_mask(mask_types) if mask_types else None
    return LabelledImage(rec_id, key, path, tuple(labels.hw), mask, list(labels.boxes.values()), types)


def token_labels(item: LabelledImage, setting: str, grid: tuple[int, int], cfg: Config) -> np.ndarray:
    """(h_t, w_t) int64 labels of one labelled image: Eq. 14 (sup) or Eq. 15 (semi)."""
    tc = cfg.train
    if setting == "sup":
        if item.mask is None:
            raise ValueError(f"{item.key}: a supervised run needs pixel or block labels, this image has only boxes")
        return block_labels(item.mask, grid, tc.eps_plus, tc.eps_minus)
    if setting == "semi":
        if item.mask is None:
            return semi_labels_from_boxes(item.boxes, item.hw, grid, tc.box_unknown_fraction)
        region = item.mask | boxes_to_mask(item.boxes, item.hw) if item.boxes else item.mask
        return semi_labels(region, grid, tc.box_unknown_fraction)
    raise ValueError(f"labelled images are not used by setting {setting!r}")


def category_from_source(source: str | None) -> str:
    """The MVTec category named in a project's ``source`` meta ("mvtec ROOT category screw ..."), else "auto"."""
    words = (source or "").split()
    if "category" in words and words.index("category") + 1 < len(words):
        return words[words.index("category") + 1]
    return "auto"


def plan_from_store(store) -> TrainingPlan:
    """Read a project's labels (through the store's API) and make the training plan.

    ``store``: a :class:`~semirest.core.project.store.ProjectStore`; image sizes unknown to the
    project are read from the image files.
    """
    records = store.images()
    summaries = store.summaries()
    labelled: list[LabelledImage] = []
    unlabelled = []
    for rec in records:
        s = summaries.get(rec.id)
        if s is not None and s.is_labelled:
            hw = store.image_hw(rec)
            labelled.append(labelled_image(rec.id, rec.key, store.image_path(rec), store.load_labels(rec.id, hw)))
        else:
            unlabelled.append(rec)
    n_mask = sum(1 for x in labelled if x.mask is not None)
    n_box = sum(1 for x in labelled if x.boxes)
    setting, why = choose_setting(n_mask, n_box)

    if any(r.split == "train" for r in records):
        normal_recs = [r for r in unlabelled if r.split == "train"]
        rule = "unlabelled train-split images"
    elif any(r.defect_type == "good" for r in records):
        normal_recs = [r for r in unlabelled if r.defect_type == "good"]
        rule = "unlabelled images marked good"
    else:
        normal_recs = list(unlabelled)
        rule = "every unlabelled image"
    normal_ids = {r.id for r in normal_recs}
    evaluation = [PlanImage(r.id, r.key, store.image_path(r), r.hw) for r in unlabelled
                  if r.id not in normal_ids and (r.defect_type == "good" or store.has_reference(r.id))]
    plan = TrainingPlan(setting, why, [PlanImage(r.id, r.key, store.image_path(r), r.hw) for r in normal_recs],
                        labelled if setting != "un" else [], evaluation, category_from_source(store.get_meta("source")))
    plan.explanation += f"; {len(plan.normal)} normal training images ({rule}); {len(evaluation)} held-out images for metrics"
    return plan


def known_conditions(store) -> dict[int, bool]:
    """{image id: defective?} for the images whose condition the project knows: an image with
    defect labels, or with a reference mask and a defect type other than ``good``, is defective;
    an unlabelled image marked ``good`` is good. Other images (a plain folder's unlabelled ones)
    are left out: nobody has said what they are."""
    summaries = store.summaries()
    with_reference = store.reference_ids()
    out: dict[int, bool] = {}
    for r in store.images():
        labelled = r.id in summaries and summaries[r.id].is_labelled
        if labelled or (r.id in with_reference and r.defect_type not in (None, "good")):
            out[r.id] = True
        elif r.defect_type == "good":
            out[r.id] = False
    return out
