"""Datasets in the MVTec-AD layout and plain image folders.

MVTec-AD layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<type>/*.png            (type "good" has no masks)
    <root>/<category>/ground_truth/<type>/<stem>_mask.png

Layout problems raise :class:`DatasetLayoutError` naming the folder or file and what was
expected, so a user who points the tool at the wrong folder learns what to fix.
"""
from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semirest.core.data.images import ImageReadError, is_image_file, read_image, read_mask

GOOD = "good"


class DatasetLayoutError(ValueError):
    """The folder does not have the expected dataset layout."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset. ``defect_type`` is "good" for normal images."""

    path: Path
    defect_type: str = GOOD
    mask_path: Path | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.defect_type != GOOD

    @property
    def name(self) -> str:
        return f"{self.defect_type}/{self.path.name}"

    def load_image(self) -> np.ndarray:
        return read_image(self.path)

    def load_mask(self, hw: tuple[int, int]) -> np.ndarray:
        """The ground-truth mask at the image's own resolution (all False for good images)."""
        if self.mask_path is None:
            return np.zeros(hw, dtype=bool)
        return read_mask(self.mask_path, expected_hw=hw)


def load_images(samples: Sequence[Sample]) -> list[np.ndarray]:
    """The RGB images of the samples, in order."""
    return [s.load_image() for s in samples]


@dataclass
class Category:
    """One category: normal training images and a labelled test set."""

    root: Path
    name: str
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.test if s.is_anomalous})

    def check_masks(self) -> None:
        """Read every test mask against its image size; raises ImageReadError on the first bad one."""
        for s in self.test:
            if s.mask_path is not None:
                img = s.load_image()
                s.load_mask(img.shape[:2])


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def list_categories(root: str | os.PathLike) -> list[str]:
    """Names of the folders below ``root`` that look like MVTec categories (have train/good)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset folder does not exist")
    cats = sorted(p.name for p in root.iterdir() if (p / "train" / GOOD).is_dir())
    if not cats:
        raise DatasetLayoutError(
            f"{root}: no category found; expected <root>/<category>/train/good/ with images"
        )
    return cats


def load_mvtec_category(root: str | os.PathLike, category: str) -> Category:
    """Index one MVTec-layout category. Image files are listed, not decoded."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset folder does not exist")
    base = root / category
    if not base.is_dir():
        hint = ""
        try:
            hint = f" (categories found: {', '.join(list_categories(root))})"
        except DatasetLayoutError:
            if (root / "train" / GOOD).is_dir():
                hint = f" ({root} itself looks like a category: pass its parent as the root)"
        raise DatasetLayoutError(f"{base}: category folder does not exist{hint}")
    train_dir = base / "train" / GOOD
    if not train_dir.is_dir():
        raise DatasetLayoutError(f"{train_dir}: missing; a category needs train/good/ with normal images")
    train = [Sample(p) for p in _images_in(train_dir)]
    if not train:
        raise DatasetLayoutError(f"{train_dir}: contains no images")
    cat = Category(root=root, name=category, train=train)

    test_dir = base / "test"
    if not test_dir.is_dir():
        return cat  # a category without a test set can still be trained
    gt_dir = base / "ground_truth"
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        defect = type_dir.name
        for img in _images_in(type_dir):
            if defect == GOOD:
                cat.test.append(Sample(img))
                continue
            mask = gt_dir / defect / f"{img.stem}_mask.png"
            if not mask.is_file():
                alt = gt_dir / defect / f"{img.stem}.png"
                if alt.is_file():
                    mask = alt
                else:
                    raise DatasetLayoutError(
                        f"{img}: defective test image has no mask; expected {mask}"
                    )
            cat.test.append(Sample(img, defect, mask))
    return cat


def load_image_folder(folder: str | os.PathLike, recursive: bool = False) -> list[Sample]:
    """All image files of a folder as unlabelled samples (sorted by path)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: folder does not exist")
    it = folder.rglob("*") if recursive else folder.iterdir()
    paths = sorted(p for p in it if p.is_file() and is_image_file(p))
    if not paths:
        raise DatasetLayoutError(f"{folder}: contains no image files ({', '.join(('.png', '.jpg', '.bmp', '.tif'))} ...)")
    return [Sample(p) for p in paths]


def split_budget(test: list[Sample], n: int = 10, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Draw ``n`` anomalous images for supervised training, spread over the defect types.

    BGAD's rule: floor(n / types) at random from each type, the remainder at random from what is
    left. Returns (drawn, remaining test set). The same seed gives the same images.
    """
    rng = random.Random(seed)
    by_type: dict[str, list[Sample]] = {}
    for s in test:
        if s.is_anomalous:
            by_type.setdefault(s.defect_type, []).append(s)
    types = sorted(by_type)
    if not types:
        raise DatasetLayoutError("the test set has no anomalous images to draw a labelled budget from")
    per_type = n // len(types)
    drawn: list[Sample] = []
    for t in types:
        pool = sorted(by_type[t], key=lambda s: s.path)
        drawn += rng.sample(pool, min(per_type, len(pool)))
    rest = sorted((s for s in test if s.is_anomalous and s not in drawn), key=lambda s: s.path)
    drawn += rng.sample(rest, min(n - len(drawn), len(rest)))
    chosen = set(drawn)
    return drawn, [s for s in test if s not in chosen]


def split_validation(
    test: list[Sample], fraction: float = 0.5, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split a test set once into (validation, test) parts, per defect type ("good" included).

    Design choices are made on the validation part and figures reported on the test part, so a
    variant is never picked by the images it is reported on. Each type keeps its share in both
    parts (round(fraction * n) to validation, at least one image on each side when a type has two
    or more); the same seed gives the same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    rng = random.Random(seed)
    by_type: dict[str, list[Sample]] = {}
    for s in test:
        by_type.setdefault(s.defect_type, []).append(s)
    chosen: set[Sample] = set()
    for t in sorted(by_type):
        pool = sorted(by_type[t], key=lambda s: s.path)
        k = round(fraction * len(pool))
        if len(pool) >= 2:
            k = min(max(k, 1), len(pool) - 1)
        chosen.update(rng.sample(pool, k))
    return [s for s in test if s in chosen], [s for s in test if s not in chosen]


__all__ = [
    "Category",
    "DatasetLayoutError",
    "GOOD",
    "ImageReadError",
    "Sample",
    "list_categories",
    "load_image_folder",
    "load_mvtec_category",
    "split_budget",
    "split_validation",
]
