"""Getting images and labels into and out of a project, without Qt.

Image sources: an MVTec-layout category (its ground-truth masks become *reference* masks, kept
apart from the inspector's labels) or a plain image folder. Files are referenced, never copied.

Label exports (and imports back, for round trips):

* ``masks``: MVTec layout, ``ground_truth/<defect_type>/<stem>_mask.png`` (0/255, image size);
  pixel labels, blocks rendered as whole cells, and boxes filled, as a union;
* ``coco``: ``annotations.json``; masks as uncompressed column-major RLE per connected region,
  boxes as 4-point polygons; ``attributes.label_type`` and ``attributes.rotated_box`` say what
  each annotation was, so an import restores the label type exactly;
* ``dota``: ``labelTxt/<name>.txt`` with ``x1 y1 x2 y2 x3 y3 x4 y4 defect 0`` per box;
* ``yolo-obb``: ``labels/<name>.txt`` with ``0 x1 y1 ... x4 y4`` normalised to 0..1, and
  ``data.yaml``;
* ``timing-csv``: ``timing.csv`` (seconds per image, label type and annotator), ``timing.png``,
  and ``annotation_time_vs_accuracy.png`` (the paper's Fig. 6) when benchmark results are given.

Every export writes ``manifest.csv`` (name, image key, image path) last, so file names map back to
the project's images and a folder with a manifest holds a complete export. File names come from
image keys, flattened and made unique (:func:`export_names`); an export never writes into the
project's image or reference folders nor outside its folder, and refuses a folder that is not
empty unless asked to overwrite (:class:`ExportTarget`). Corners are written clockwise on screen starting at the box's own top-left
corner (:meth:`RotatedBox.corners`), so p0->p1 is the width edge.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from semirest.core import files
from semirest.core.data.datasets import load_image_folder, load_mvtec_category
from semirest.core.data.images import ImageReadError, check_size, read_image, read_mask, write_png
from semirest.core.project.labels import BLOCK8, BLOCK16, BOX, GRIDS, LABEL_TYPES, PIXEL, ImageLabels, blocks_from_mask
from semirest.core.project.store import ImageRecord, NewImage, ProjectError, ProjectStore
from semirest.core.train.boxes import RotatedBox

FORMATS = ("masks", "coco", "dota", "yolo-obb", "timing-csv")
IMPORT_FORMATS = ("masks", "coco", "dota", "yolo-obb")
CATEGORY = "defect"


class FormatError(ProjectError):
    """An import file is malformed; the message names the file and line."""


class ExportTargetError(ProjectError):
    """The export folder cannot be used (inside the project's images, not empty, a path that
    would leave it)."""


class ExportTargetNotEmpty(ExportTargetError):
    """The export folder holds files; ``overwrite`` replaces the ones the export writes."""


# ------------------------------------------------------------------------------------ sources
def images_from_mvtec(root, category: str, split: str = "test", reference: bool = True) -> list[NewImage]:
    """Images of one MVTec category. ``split``: test, train or all. Keys are ``split/type/stem``."""
    cat = load_mvtec_category(root, category)
    samples = []
    if split in ("train", "all"):
        samples += [("train", s) for s in cat.train]
    if split in ("test", "all"):
        samples += [("test", s) for s in cat.test]
    if split not in ("train", "test", "all"):
        raise ProjectError(f"split must be train, test or all, got {split!r}")
    return [
        NewImage(
            path=s.path,
            key=f"{sp}/{s.defect_type}/{s.path.stem}",
            split=sp,
            defect_type=s.defect_type,
            reference_mask_path=s.mask_path if reference else None,
        )
        for sp, s in samples
    ]


def images_from_folder(folder, recursive: bool = True) -> list[NewImage]:
    """Every image file of a folder; keys are paths relative to it, without the extension."""
    folder = Path(folder)
    out, seen = [], set()
    for s in load_image_folder(folder, recursive=recursive):
        key = s.path.relative_to(folder).with_suffix("").as_posix()
        if key in seen:  # a.png and a.jpg side by side
            key = s.path.relative_to(folder).as_posix()
        seen.add(key)
        out.append(NewImage(path=s.path, key=key))
    return out


# The studio refuses larger images (app/image_cache.MAX_STUDIO_PIXELS: image, mask and overlay of
# an 8k x 8k image take about 0.5 GB); a project does not take in what it could not show.
MAX_PROJECT_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Refused:
    """A file left out of a project, and why (one line for the user)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class CheckedImages:
    usable: list[NewImage]
    sizes: dict[str, tuple[int, int]]  # key -> (width, height)
    refused: list[Refused]
    notes: list[str]  # usable images whose reference mask was left out, and why


def check_new_images(new: Iterable[NewImage], max_pixels: int = MAX_PROJECT_PIXELS) -> CheckedImages:
    """Decode every image once (and its reference mask, if any) before it enters a project.

    An image that cannot be read, or whose header claims more than ``max_pixels``, is refused with
    the reason; a reference mask that cannot be read or does not match its image's size is left
    out with a note, and the image is kept. Nothing raises for a bad file."""
    out = CheckedImages([], {}, [], [])
    for n in new:
        try:
            check_size(n.path, max_pixels)
            img = read_image(n.path)
        except ImageReadError as exc:
            out.refused.append(Refused(Path(n.path), exc.reason))
            continue
        except MemoryError:
            out.refused.append(Refused(Path(n.path), "not enough memory to decode it"))
            continue
        h, w = img.shape[:2]
        del img
        if n.reference_mask_path is not None:
            try:
                read_mask(n.reference_mask_path, expected_hw=(h, w))
            except ImageReadError as exc:
                out.notes.append(f"{exc.path}: reference mask not used ({exc.reason})")
                n = NewImage(n.path, n.key, n.split, n.defect_type, None)
        out.usable.append(n)
        out.sizes[n.key] = (w, h)
    return out


# ------------------------------------------------------------------------------------ helpers
def file_name(rec: ImageRecord) -> str:
    """A flat file stem for an image: its key with '/' replaced by '__' (see :func:`export_names`
    for the unique one)."""
    return files.flat_name(rec.key)


def export_names(store: ProjectStore) -> dict[int, str]:
    """{image id: flat, unique file stem}: the key flattened; keys that flatten alike (``a/b/y``
    and ``a__b/y``) keep their flat name plus a hash of the full key. Taken over every image of the
    project, so an image's name does not change as others get labelled."""
    recs = store.images()
    names = files.unique_names([(r.key, file_name(r)) for r in recs])
    return {r.id: names[r.key] for r in recs}


def _source_folders(store: ProjectStore) -> set[Path]:
    """The folders of the project's images and reference masks (resolved), and its own folder's
    project file."""
    out = set()
    for rec in store.images():
        out.add(Path(os.path.realpath(store.image_path(rec))).parent)
    out |= {Path(os.path.realpath(p)).parent for p in store.reference_mask_paths()}
    return out


class ExportTarget:
    """The folder an export writes into, and the only way an export builds a path.

    Refused: a folder inside (or holding) the project's image or reference-mask folders, so an
    export cannot overwrite a dataset's ground truth; a folder that is not empty, unless
    ``overwrite``. Every path is made of sanitised components and checked after resolving links to
    lie inside the folder. :meth:`finish` writes ``manifest.csv`` last, so a manifest means the
    export is complete."""

    def __init__(self, store: ProjectStore, out, overwrite: bool = False):
        self.store = store
        self.out = Path(out)
        self.root = Path(os.path.realpath(self.out))
        if self.root.exists() and not self.root.is_dir():
            raise ExportTargetError(f"{self.out}: is a file; --out must be a folder")
        project = Path(os.path.realpath(store.path))
        self.protected = {project, *(project.with_name(project.name + s) for s in ("-wal", "-shm", "-journal", ".lock"))}
        for folder in _source_folders(store):
            if self.root == folder or self.root.is_relative_to(folder) or folder.is_relative_to(self.root):
                raise ExportTargetError(
                    f"{self.out}: holds (or is inside) the project's images or reference masks at {folder}; "
                    "export to a folder of its own")
        if self.root.is_dir() and any(self.root.iterdir()) and not overwrite:
            raise ExportTargetNotEmpty(f"{self.out}: folder is not empty; choose an empty folder, or overwrite "
                                       "(--overwrite) to replace the files this export writes")
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        """``out/part/part...`` with each part a safe file name; its folder is created."""
        p = self.out.joinpath(*(files.safe_file_name(x) for x in parts))
        real = Path(os.path.realpath(p))
        if real == self.root or not real.is_relative_to(self.root) or real in self.protected:
            raise ExportTargetError(f"{p}: resolves to {real}, outside the export folder {self.out}; nothing written there")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def finish(self, rows: Iterable[tuple[str, ImageRecord]]) -> Path:
        return _write_manifest(self.store, self, rows)


def image_hw(store: ProjectStore, rec: ImageRecord) -> tuple[int, int]:
    """The image's (height, width), reading the file once if the project does not know it yet."""
    if rec.hw is not None:
        return rec.hw
    img = read_image(store.image_path(rec))
    store.set_image_size(rec.id, img.shape[1], img.shape[0])
    return img.shape[:2]


def _labelled(store: ProjectStore) -> list[tuple[ImageRecord, ImageLabels]]:
    summaries = store.summaries()
    out = []
    for rec in store.images():
        s = summaries.get(rec.id)
        if s is not None and s.is_labelled:
            out.append((rec, store.load_labels(rec.id, image_hw(store, rec))))
    return out


def _write_manifest(store: ProjectStore, target: "ExportTarget", rows: Iterable[tuple[str, ImageRecord]]) -> Path:
    return files.write_csv(target.path("manifest.csv"), ["name", "image_key", "image_path"],
                           [[name, rec.key, store.image_path(rec).as_posix()] for name, rec in rows])


def _read_manifest(src: Path) -> dict[str, str] | None:
    p = src / "manifest.csv"
    if not p.is_file():
        return None
    with open(p, newline="", encoding="utf-8") as f:
        return {files.csv_uncell(r["name"]): files.csv_uncell(r["image_key"]) for r in csv.DictReader(f)}


def _by_key(store: ProjectStore) -> dict[str, ImageRecord]:
    return {r.key: r for r in store.images()}


def _resolve_name(name: str, manifest: dict[str, str] | None, by_key: dict[str, ImageRecord], by_name: dict[str, ImageRecord]):
    if manifest and name in manifest and manifest[name] in by_key:
        return by_key[manifest[name]]
    return by_name.get(name)


def box_from_corners(pts) -> RotatedBox:
    """A rotated box from 4 corners in our order (p0->p1 is the width edge); a quadrilateral that
    is not a rectangle gets its minimum-area rectangle."""
    p = np.asarray(pts, dtype=np.float64).reshape(4, 2)
    w = float(np.linalg.norm(p[1] - p[0]))
    h = float(np.linalg.norm(p[2] - p[1]))
    c = p.mean(axis=0)
    angle = math.degrees(math.atan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0]))
    box = RotatedBox(float(c[0]), float(c[1]), w, h, angle)
    if np.abs(box.corners() - p).max() > 0.5 and np.abs(box.corners()[[2, 3, 0, 1]] - p).max() > 0.5:
        return RotatedBox.from_cv(cv2.minAreaRect(p.astype(np.float32)))
    return box


def _merge(store: ProjectStore, rec: ImageRecord, add: ImageLabels) -> None:
    """Add imported labels to what the image already has, in one transaction."""
    cur = store.load_labels(rec.id, add.hw)
    cur.pixels |= add.pixels
    for g in (8, 16):
        cur.blocks[g] |= add.blocks[g]
    new_boxes = dict(cur.boxes)
    for i, b in enumerate(add.boxes.values()):
        new_boxes[-1 - i] = b  # negative: let the store assign ids
    cur.boxes = new_boxes
    store.replace_labels(rec.id, cur)


# ------------------------------------------------------------------------------------ masks
def mask_names(store: ProjectStore) -> dict[int, tuple[str, str]]:
    """{image id: (folder, stem)} of ``ground_truth/<folder>/<stem>_mask.png``: MVTec's own names
    (defect type, file stem) where they are unique, else the image's unique flat name."""
    flat = export_names(store)
    recs = store.images()
    want = [(r.id, files.safe_file_name(r.defect_type or "labelled"), files.safe_file_name(r.key.rsplit("/", 1)[-1])) for r in recs]
    count: dict[str, int] = {}
    for _, folder, stem in want:
        count[f"{folder}/{stem}".casefold()] = count.get(f"{folder}/{stem}".casefold(), 0) + 1
    out = {}
    for image_id, folder, stem in want:
        out[image_id] = (folder, stem if count[f"{folder}/{stem}".casefold()] == 1 else flat[image_id])
    taken: dict[str, int] = {}
    for image_id, (folder, stem) in out.items():  # a flat name equal to another image's MVTec stem
        k = f"{folder}/{stem}".casefold()
        if k in taken:
            out[image_id] = (folder, f"{stem}~{files.name_hash(store.image(image_id).key)}")
        taken[f"{folder}/{out[image_id][1]}".casefold()] = image_id
    return out


def export_masks(store: ProjectStore, out, label_types: Iterable[str] = LABEL_TYPES, overwrite: bool = False) -> list[Path]:
    """One 0/255 mask per labelled image, the union of the chosen label types."""
    target = ExportTarget(store, out, overwrite)
    label_types = tuple(label_types)
    names = mask_names(store)
    written, rows = [], []
    for rec, labels in _labelled(store):
        mask = labels.union_mask(label_types)
        if not mask.any():
            continue
        folder, stem = names[rec.id]
        p = target.path("ground_truth", folder, f"{stem}_mask.png")
        write_png(p, mask)
        written.append(p)
        rows.append((p.relative_to(target.out).as_posix(), rec))
    target.finish(rows)
    return written


def import_masks(store: ProjectStore, src, as_type: str = PIXEL) -> int:
    """Read masks written by :func:`export_masks` (or any MVTec ``ground_truth`` folder) as labels
    of one type: ``pixel``, or ``block8``/``block16`` (cells that the mask covers entirely)."""
    if as_type not in (PIXEL, BLOCK8, BLOCK16):
        raise ProjectError(f"masks can be imported as pixel, block8 or block16, not {as_type!r}")
    src = Path(src)
    gt = src / "ground_truth"
    if not gt.is_dir():
        raise FormatError(f"{src}: no ground_truth/ folder (expected ground_truth/<type>/<stem>_mask.png)")
    manifest = _read_manifest(src)
    by_key = _by_key(store)
    by_name = {f"ground_truth/{folder}/{stem}_mask.png": store.image(i) for i, (folder, stem) in mask_names(store).items()}
    n = 0
    for p in sorted(gt.rglob("*.png")):
        name = p.relative_to(src).as_posix()
        rec = _resolve_name(name, manifest, by_key, by_name)
        if rec is None:
            continue
        hw = image_hw(store, rec)
        mask = read_mask(p, expected_hw=hw)
        labels = ImageLabels(hw)
        if as_type == PIXEL:
            labels.pixels[:] = mask
        else:
            g = GRIDS[as_type]
            labels.blocks[g] = blocks_from_mask(mask, g)
        _merge(store, rec, labels)
        n += 1
    return n


# ------------------------------------------------------------------------------------ COCO
def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: column-major runs, starting with a (possibly empty) run of zeros."""
    m = np.asarray(mask, dtype=bool)
    flat = m.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(m.shape[0]), int(m.shape[1])]}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        raise FormatError("compressed COCO RLE strings are not supported; use uncompressed counts")
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
    if pos != h * w:
        raise FormatError(f"RLE counts sum to {pos}, expected {h * w}")
    return flat.reshape((h, w), order="F")


def _regions(mask: np.ndarray) -> list[np.ndarray]:
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [lab == k for k in range(1, n)]


def export_coco(store: ProjectStore, out, overwrite: bool = False) -> Path:
    target = ExportTarget(store, out, overwrite)
    out = target.out
    names = export_names(store)
    doc = {
        "info": {"description": f"SemiREST Studio project {store.get_meta('name', '')}", "version": "1.0"},
        "licenses": [],
        "categories": [{"id": 1, "name": CATEGORY, "supercategory": CATEGORY}],
        "images": [],
        "annotations": [],
    }
    ann_id = 0
    rows = []
    for rec, labels in _labelled(store):
        h, w = labels.hw
        rows.append((names[rec.id], rec))
        doc["images"].append(
            {
                "id": rec.id,
                "file_name": Path(os.path.relpath(store.image_path(rec), out)).as_posix(),
                "width": w,
                "height": h,
                "semirest_key": rec.key,
            }
        )
        for t in (PIXEL, BLOCK8, BLOCK16):
            for region in _regions(labels.type_mask(t)):
                ys, xs = np.nonzero(region)
                ann_id += 1
                doc["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": rec.id,
                        "category_id": 1,
                        "segmentation": rle_encode(region),
                        "area": int(region.sum()),
                        "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                        "iscrowd": 0,
                        "attributes": {"label_type": t},
                    }
                )
        for b in labels.boxes.values():
            c = b.corners()
            x0, y0 = c.min(axis=0)
            x1, y1 = c.max(axis=0)
            ann_id += 1
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": rec.id,
                    "category_id": 1,
                    "segmentation": [[round(float(v), 4) for v in c.reshape(-1)]],
                    "area": round(b.width * b.height, 4),
                    "bbox": [round(float(x0), 4), round(float(y0), 4), round(float(x1 - x0), 4), round(float(y1 - y0), 4)],
                    "iscrowd": 0,
                    "attributes": {"label_type": BOX, "rotated_box": [b.cx, b.cy, b.width, b.height, b.angle], "rotation": b.angle},
                }
            )
    p = target.path("annotations.json")
    files.write_atomic(p, files.to_json(doc, indent=1))
    target.finish(rows)
    return p


def import_coco(store: ProjectStore, src) -> int:
    src = Path(src)
    p = src / "annotations.json" if src.is_dir() else src
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        images_ = doc["images"]
        anns = doc["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{p}: not a COCO annotation file ({exc})") from None
    by_key = _by_key(store)
    by_path = {store.image_path(r).resolve(): r for r in by_key.values()}
    target: dict[int, ImageRecord] = {}
    for im in images_:
        rec = by_key.get(im.get("semirest_key", ""))
        if rec is None:
            fp = Path(im.get("file_name", ""))
            rec = by_path.get((p.parent / fp).resolve()) if not fp.is_absolute() else by_path.get(fp.resolve())
        if rec is not None:
            target[im["id"]] = rec
    per_image: dict[int, ImageLabels] = {}
    for a in anns:
        rec = target.get(a.get("image_id"))
        if rec is None:
            continue
        hw = image_hw(store, rec)
        labels = per_image.setdefault(rec.id, ImageLabels(hw))
        attrs = a.get("attributes") or {}
        t = attrs.get("label_type")
        seg = a.get("segmentation")
        try:
            if t == BOX or (t is None and isinstance(seg, list) and len(seg) == 1 and len(seg[0]) == 8):
                rb = attrs.get("rotated_box")
                box = RotatedBox(*map(float, rb)) if rb else box_from_corners(seg[0])
                labels.boxes[-1 - len(labels.boxes)] = box
                continue
            if isinstance(seg, dict):
                m = rle_decode(seg)
            else:
                m = np.zeros(hw, dtype=np.uint8)
                for poly in seg:
                    pts = np.round(np.asarray(poly, dtype=np.float64).reshape(-1, 2) - 0.5).astype(np.int32)
                    cv2.fillPoly(m, [pts], 1)
                m = m.astype(bool)
        except (ValueError, TypeError, IndexError) as exc:
            raise FormatError(f"{p}: annotation {a.get('id')} is malformed ({exc})") from None
        if m.shape != tuple(hw):
            raise FormatError(f"{p}: annotation {a.get('id')} is {m.shape[1]}x{m.shape[0]}, image is {hw[1]}x{hw[0]}")
        if t in GRIDS:
            g = GRIDS[t]
            labels.blocks[g] |= blocks_from_mask(m, g)
        else:
            labels.pixels |= m.astype(np.uint8)
    for image_id, labels in per_image.items():
        _merge(store, store.image(image_id), labels)
    return len(per_image)


# ------------------------------------------------------------------------------------ DOTA / YOLO-OBB
def _box_exports(store: ProjectStore):
    for rec, labels in _labelled(store):
        yield rec, labels.hw, list(labels.boxes.values())


def export_dota(store: ProjectStore, out, overwrite: bool = False) -> list[Path]:
    target = ExportTarget(store, out, overwrite)
    names = export_names(store)
    written, rows = [], []
    for rec, _hw, bxs in _box_exports(store):
        if not bxs:
            continue
        p = target.path("labelTxt", f"{names[rec.id]}.txt")
        lines = [" ".join(f"{v:.3f}" for v in b.corners().reshape(-1)) + f" {CATEGORY} 0" for b in bxs]
        files.write_atomic(p, "\n".join(lines) + "\n")
        written.append(p)
        rows.append((f"labelTxt/{p.name}", rec))
    target.finish(rows)
    return written


def export_yolo_obb(store: ProjectStore, out, overwrite: bool = False) -> list[Path]:
    target = ExportTarget(store, out, overwrite)
    names = export_names(store)
    written, rows = [], []
    for rec, (h, w), bxs in _box_exports(store):
        if not bxs:
            continue
        p = target.path("labels", f"{names[rec.id]}.txt")
        lines = []
        for b in bxs:
            c = b.corners() / np.array([w, h], dtype=np.float64)
            lines.append("0 " + " ".join(f"{v:.6f}" for v in c.reshape(-1)))
        files.write_atomic(p, "\n".join(lines) + "\n")
        written.append(p)
        rows.append((f"labels/{p.name}", rec))
    files.write_atomic(
        target.path("data.yaml"),
        "# YOLO-OBB labels exported by SemiREST Studio; images are not copied (see manifest.csv)\n"
        f"path: .\nnames:\n  0: {CATEGORY}\n",
    )
    target.finish(rows)
    return written


def _parse_box_lines(p: Path, yolo: bool, hw: tuple[int, int]) -> list[RotatedBox]:
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("imagesource:", "gsd:", "#")):
            continue
        parts = s.split()
        try:
            if yolo:
                if len(parts) != 9:
                    raise ValueError(f"expected 9 fields, found {len(parts)}")
                pts = np.array(parts[1:9], dtype=np.float64).reshape(4, 2) * np.array([hw[1], hw[0]])
            else:
                if len(parts) < 9:
                    raise ValueError(f"expected at least 9 fields, found {len(parts)}")
                pts = np.array(parts[:8], dtype=np.float64).reshape(4, 2)
            out.append(box_from_corners(pts))
        except ValueError as exc:
            raise FormatError(f"{p}:{i}: {exc}") from None
    return out


def _import_boxes(store: ProjectStore, src, folder: str, yolo: bool) -> int:
    src = Path(src)
    d = src / folder
    if not d.is_dir():
        raise FormatError(f"{src}: no {folder}/ folder")
    manifest = _read_manifest(src)
    by_key = _by_key(store)
    by_name = {f"{folder}/{name}.txt": store.image(i) for i, name in export_names(store).items()}
    n = 0
    for p in sorted(d.glob("*.txt")):
        rec = _resolve_name(f"{folder}/{p.name}", manifest, by_key, by_name)
        if rec is None:
            continue
        hw = image_hw(store, rec)
        labels = ImageLabels(hw)
        for i, b in enumerate(_parse_box_lines(p, yolo, hw)):
            labels.boxes[-1 - i] = b
        _merge(store, rec, labels)
        n += 1
    return n


def import_dota(store: ProjectStore, src) -> int:
    return _import_boxes(store, src, "labelTxt", yolo=False)


def import_yolo_obb(store: ProjectStore, src) -> int:
    return _import_boxes(store, src, "labels", yolo=True)


# ------------------------------------------------------------------------------------ timing
def timing_rows(store: ProjectStore) -> list[dict]:
    """Seconds per (image, label type, annotator), with the first start and last end."""
    recs = {r.id: r for r in store.images()}
    agg: dict[tuple, dict] = {}
    for s in store.time_spans():
        k = (s.image_id, s.label_type, s.annotator)
        a = agg.setdefault(k, {"seconds": 0.0, "spans": 0, "first": s.started_at, "last": s.ended_at})
        a["seconds"] += s.seconds
        a["spans"] += 1
        a["first"] = min(a["first"], s.started_at)
        a["last"] = max(a["last"], s.ended_at)
    rows = []
    for (image_id, t, who), a in sorted(agg.items(), key=lambda kv: (recs[kv[0][0]].position, LABEL_TYPES.index(kv[0][1]), kv[0][2])):
        rec = recs[image_id]
        rows.append(
            {
                "image_key": rec.key,
                "image_path": rec.path,
                "defect_type": rec.defect_type or "",
                "label_type": t,
                "annotator": who,
                "seconds": round(a["seconds"], 3),
                "spans": a["spans"],
                "first_started_at": a["first"],
                "last_ended_at": a["last"],
            }
        )
    return rows


def mean_seconds_per_image(rows: list[dict]) -> dict[str, float]:
    """Mean active seconds per image for each label type (images where the type was used)."""
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        per.setdefault(r["label_type"], {}).setdefault(r["image_key"], 0.0)
        per[r["label_type"]][r["image_key"]] += float(r["seconds"])
    return {t: float(np.mean(list(v.values()))) for t, v in per.items() if v}


def export_timing(store: ProjectStore, out, benchmark: dict | None = None, overwrite: bool = False) -> list[Path]:
    """timing.csv, timing.png and, with ``benchmark`` ({label type: {metric: value}}), the Fig. 6
    chart of accuracy against annotation time."""
    if benchmark:
        means = mean_seconds_per_image(timing_rows(store))
        missing = [t for t in benchmark if t not in means]
        if missing:
            raise ProjectError(f"benchmark results for {', '.join(missing)} but no recorded time for that label type")
    target = ExportTarget(store, out, overwrite)
    rows = timing_rows(store)
    p = target.path("timing.csv")
    fields = ["image_key", "image_path", "defect_type", "label_type", "annotator", "seconds", "spans", "first_started_at", "last_ended_at"]
    files.write_csv(p, fields, [[r[k] for k in fields] for r in rows])
    written = [p]
    from semirest.core.project import plots  # matplotlib only when a plot is made

    written.append(plots.plot_seconds_per_image(rows, target.path("timing.png")))
    if benchmark:
        written.append(plots.plot_accuracy_vs_time(mean_seconds_per_image(rows), benchmark,
                                                   target.path("annotation_time_vs_accuracy.png")))
    recs = {r.key: r for r in store.images()}
    target.finish([("timing.csv", recs[k]) for k in dict.fromkeys(r["image_key"] for r in rows)])
    return written


def load_benchmark(path) -> dict[str, dict[str, float]]:
    """Benchmark results: JSON ``{"box": {"pixel_auroc": 0.97, "pro": 0.9, "ap": 0.8}, ...}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(f"{p}: cannot read benchmark results ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise FormatError(f'{p}: expected {{"<label type>": {{"<metric>": value, ...}}, ...}}')
    unknown = [t for t in data if t not in LABEL_TYPES]
    if unknown:
        raise FormatError(f"{p}: unknown label types {unknown}; expected some of {', '.join(LABEL_TYPES)}")
    return {t: {m: float(v) for m, v in d.items()} for t, d in data.items()}


# ------------------------------------------------------------------------------------ dispatch
def export(store: ProjectStore, fmt: str, out, benchmark: dict | None = None,
           label_types: Iterable[str] = LABEL_TYPES, overwrite: bool = False) -> list[Path]:
    """Write one export format into ``out`` (see :class:`ExportTarget` for what is refused)."""
    if fmt == "masks":
        return export_masks(store, out, label_types, overwrite)
    if fmt == "coco":
        return [export_coco(store, out, overwrite)]
    if fmt == "dota":
        return export_dota(store, out, overwrite)
    if fmt == "yolo-obb":
        return export_yolo_obb(store, out, overwrite)
    if fmt == "timing-csv":
        return export_timing(store, out, benchmark, overwrite)
    raise ProjectError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def import_labels(store: ProjectStore, fmt: str, src, as_type: str = PIXEL) -> int:
    if fmt == "masks":
        return import_masks(store, src, as_type)
    if fmt == "coco":
        return import_coco(store, src)
    if fmt == "dota":
        return import_dota(store, src)
    if fmt == "yolo-obb":
        return import_yolo_obb(store, src)
    raise ProjectError(f"unknown import format {fmt!r}; expected one of {', '.join(IMPORT_FORMATS)}")


__all__ = [
    "FORMATS",
    "IMPORT_FORMATS",
    "FormatError",
    "ImageReadError",
    "box_from_corners",
    "export",
    "import_labels",
    "images_from_folder",
    "images_from_mvtec",
    "rle_decode",
    "rle_encode",
]
