"""Getting images and labels into and out of a project, without Qt.

Image sources: an MVTec-layout category (its ground-truth masks become *reference* masks, kept
apart from the inspector's labels) or a plain image folder. Files are referenced, never copied
(an export copies or links them beside its labels only when asked: ``images``).

Label exports (and imports back, for round trips):

* ``masks``: MVTec layout, ``ground_truth/<defect_type>/<stem>_mask.png`` (0/255, image size);
  pixel labels, blocks rendered as whole cells, and boxes filled, as a union;
* ``coco``: ``annotations.json``; masks as uncompressed column-major RLE per connected region,
  boxes as 4-point polygons; ``attributes.label_type`` and ``attributes.rotated_box`` say what
  each annotation was, so an import restores the label type exactly;
* ``dota``: ``labelTxt/<name>.txt`` with ``x1 y1 x2 y2 x3 y3 x4 y4 <class> 0`` per box;
* ``yolo-obb``: ultralytics' OBB layout: ``labels/train/<name>.txt`` with ``0 x1 y1 ... x4 y4``
  normalised and clipped to 0..1, and ``data.yaml`` (train, val, names);
* ``labelme``: ``<name>.json`` per image: regions as pixel-edge polygons (``mask`` shapes for a
  region with holes), boxes as ``rectangle`` / ``oriented_rectangle``, the class as ``label``;
* ``timing-csv``: ``timing.csv`` (seconds per image, label type and annotator), ``timing.png``,
  and ``annotation_time_vs_accuracy.png`` (the paper's Fig. 6) when benchmark results are given.

DOTA and YOLO label files are named after their images (:func:`image_names`); with ``images``
link or copy, the images are put beside them (``images/``, ``images/train/``) under the same
names, so ultralytics and DOTA tools take the folder unchanged.

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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from semirest.core import files
from semirest.core.data.datasets import load_image_folder, load_mvtec_category
from semirest.core.data.images import ImageReadError, check_size, read_image, read_mask, write_png
from semirest.core.labels.boxes import RotatedBox, boxes_to_mask
from semirest.core.labels.classes import DEFAULT_CLASS_ID, DEFAULT_CLASS_NAME, class_name_from_label
from semirest.core.labels.image_labels import BLOCK8, BLOCK16, BOX, GRIDS, LABEL_TYPES, PIXEL, ImageLabels, blocks_from_mask
from semirest.core.project.store import ImageRecord, LabelSummary, NewImage, ProjectError, ProjectStore

FORMATS = ("masks", "coco", "dota", "yolo-obb", "labelme", "timing-csv")
IMAGE_MODES = ("none", "link", "copy")  # what an export does with the images its labels belong to
IMPORT_FORMATS = ("masks", "coco", "dota", "yolo-obb", "labelme")


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


def image_names(store: ProjectStore) -> dict[int, str]:
    """{image id: file stem} for label files that sit beside their images (DOTA, YOLO, labelme):
    the image file's own stem where no other image of the project has it (compared
    case-insensitively), else the image's unique flat name (:func:`export_names`), which an image
    linked or copied into the export is given as well."""
    recs = store.images()
    flat = export_names(store)
    own = {r.id: Path(r.path).stem for r in recs}
    count: dict[str, int] = {}
    for stem in own.values():
        count[stem.casefold()] = count.get(stem.casefold(), 0) + 1
    wanted = [(r.key, files.safe_file_name(own[r.id]) if count[own[r.id].casefold()] == 1 else flat[r.id]) for r in recs]
    names = files.unique_names(wanted)
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

    def path(self, *parts: str, replacing_link: bool = False) -> Path:
        """``out/part/part...`` with each part a safe file name; its folder is created.
        ``replacing_link``: the path may be an earlier export's link to an image, which is replaced
        (not followed), so only its folder must resolve inside the export folder."""
        p = self.out.joinpath(*(files.safe_file_name(x) for x in parts))
        if replacing_link and p.is_symlink():
            real = Path(os.path.realpath(p.parent)) / p.name
        else:
            real = Path(os.path.realpath(p))
        if real == self.root or not real.is_relative_to(self.root) or real in self.protected:
            raise ExportTargetError(f"{p}: resolves to {real}, outside the export folder {self.out}; nothing written there")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def put_image(self, rec: ImageRecord, mode: str, *parts: str) -> Path:
        """The project's image ``rec`` at ``out/parts...``: a symbolic link to the user's file
        (``link``) or a checked copy of its bytes (``copy``); an earlier export's file or link there
        is replaced atomically."""
        src = Path(os.path.abspath(self.store.image_path(rec)))
        if not src.is_file():
            raise ExportTargetError(f"{src}: image file not found; it cannot be {'linked' if mode == 'link' else 'copied'} "
                                    "into the export")
        p = self.path(*parts, replacing_link=True)
        if mode == "copy":
            return files.write_atomic(p, src.read_bytes())
        if mode != "link":
            raise ProjectError(f"images can be linked or copied into an export, not {mode!r}; expected one of "
                               f"{', '.join(IMAGE_MODES)}")
        tmp = p.with_name(f".{p.name}.{os.getpid()}.link")
        try:
            tmp.unlink(missing_ok=True)
            os.symlink(src, tmp)
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ExportTargetError(f"{p}: cannot link to {src} ({exc.strerror or exc}); export with the images "
                                    "copied instead (--images copy)") from None
        return p

    def finish(self, rows: Iterable[tuple[str, ImageRecord]]) -> Path:
        return _write_manifest(self.store, self, rows)


def _labelled(store: ProjectStore) -> list[tuple[ImageRecord, ImageLabels]]:
    summaries = store.summaries()
    out = []
    for rec in store.images():
        s = summaries.get(rec.id)
        if s is not None and s.is_labelled:
            out.append((rec, store.load_labels(rec.id, store.image_hw(rec))))
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
    if not np.isfinite(p).all() or np.abs(p).max() > 1e7:
        raise ValueError("corner coordinates must be finite numbers within 1e7")
    w = float(np.linalg.norm(p[1] - p[0]))
    h = float(np.linalg.norm(p[2] - p[1]))
    c = p.mean(axis=0)
    angle = math.degrees(math.atan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0]))
    box = RotatedBox(float(c[0]), float(c[1]), w, h, angle)
    if np.abs(box.corners() - p).max() > 0.5 and np.abs(box.corners()[[2, 3, 0, 1]] - p).max() > 0.5:
        return RotatedBox.from_cv(cv2.minAreaRect(p.astype(np.float32)))
    return box


BOX_TOLERANCE = 0.02  # px: corners this close are the same box (DOTA keeps 3 decimals, YOLO 6 of the width)


def same_box(a: RotatedBox, b: RotatedBox, tol: float = BOX_TOLERANCE) -> bool:
    """The same rectangle, whichever corner its description starts at."""
    ca, cb = a.corners(), b.corners()
    d = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
    return bool(d.min(axis=1).max() <= tol and d.min(axis=0).max() <= tol)


@dataclass
class ImportReport:
    """What an import did, for one line to the user."""

    images: int = 0  # images the source has labels for
    changed: int = 0  # of them, images whose labels changed
    boxes_added: int = 0
    boxes_present: int = 0  # boxes of the source the image had already (not added twice)
    boxes_removed: int = 0  # replace mode: boxes of these images the source no longer has
    pixels_added: int = 0
    cells_added: int = 0
    replace: bool = False
    unmatched: list[str] = field(default_factory=list)  # source entries that name no image of the project

    def __str__(self) -> str:
        what = (f"{self.images} images ({self.changed} changed, {self.images - self.changed} already as in the source): "
                f"{self.boxes_added} boxes added, {self.boxes_present} already there"
                + (f", {self.boxes_removed} removed" if self.replace else "")
                + f", {self.pixels_added} pixels and {self.cells_added} cells added")
        if self.unmatched:
            what += f"; {len(self.unmatched)} entries match no image of the project (first: {self.unmatched[0]})"
        return what


def apply_import(store: ProjectStore, incoming: dict[int, ImageLabels], types: Iterable[str], replace: bool = False,
                 unmatched: Iterable[str] = (), classes: "ImportClasses | None" = None) -> ImportReport:
    """Bring imported labels into the project in ONE transaction (all or nothing, also when killed).

    Merge (default): pixels and cells are added, and a box is added unless the image has the same
    box already, so importing a file twice gives the same project as importing it once; a pixel,
    cell or box the source has takes the source's class. ``replace``: for the images in
    ``incoming``, the label ``types`` the source carries become exactly the source's (an updated
    file); other types are kept. ``classes``: the classes the source named, new ones added in the
    same transaction."""
    types = set(types)
    rep = ImportReport(images=len(incoming), replace=replace, unmatched=list(unmatched))
    changes: dict[int, ImageLabels] = {}
    for image_id, add in incoming.items():
        cur = store.load_labels(image_id, add.hw)
        new = ImageLabels(add.hw, pixels=cur.pixels.copy(), blocks={g: set(v) for g, v in cur.blocks.items()}, boxes=dict(cur.boxes),
                          block_classes=dict(cur.block_classes), box_classes=dict(cur.box_classes))
        if replace and PIXEL in types:
            new.pixels = add.pixels.astype(np.uint8).copy()
        else:
            on = add.pixels > 0
            new.pixels[on] = add.pixels[on]
        rep.pixels_added += int(np.count_nonzero((new.pixels > 0) & (cur.pixels == 0)))
        for t, g in GRIDS.items():
            if replace and t in types:
                new.blocks[g] = set(add.blocks[g])
                new.block_classes = {c: k for c, k in new.block_classes.items() if c[0] != g}
            else:
                new.blocks[g] = cur.blocks[g] | add.blocks[g]
            for r, c in add.blocks[g]:
                new.block_classes[(g, r, c)] = add.block_class(g, (r, c))
            rep.cells_added += len(new.blocks[g] - cur.blocks[g])
        kept = dict(cur.boxes)
        if replace and BOX in types:
            kept = {i: b for i, b in cur.boxes.items() if any(same_box(b, x) for x in add.boxes.values())}
            rep.boxes_removed += len(cur.boxes) - len(kept)
        new.boxes = dict(kept)
        k = 0
        for add_id, b in add.boxes.items():
            there = next((i for i, x in new.boxes.items() if same_box(b, x)), None)
            if there is not None:
                rep.boxes_present += 1
                new.box_classes[there] = add.box_class(add_id)
                continue
            k += 1
            new.boxes[-k] = b  # negative: the store assigns an id
            new.box_classes[-k] = add.box_class(add_id)
            rep.boxes_added += 1
        new.block_classes = {c: v for c, v in new.block_classes.items() if (c[1], c[2]) in new.blocks[c[0]] and v != DEFAULT_CLASS_ID}
        new.box_classes = {i: v for i, v in new.box_classes.items() if i in new.boxes and v != DEFAULT_CLASS_ID}
        same = (np.array_equal(new.pixels, cur.pixels) and new.blocks[8] == cur.blocks[8] and new.blocks[16] == cur.blocks[16]
                and set(new.boxes) == set(cur.boxes) and new.block_classes == cur.block_classes and new.box_classes == cur.box_classes)
        if not same:
            changes[image_id] = new
    rep.changed = len(changes)
    if changes:
        store.replace_labels_many(changes, classes.new if classes is not None else ())
    return rep


class ImportClasses:
    """The class names an import meets, as class ids: the project's own classes (matched
    case-insensitively) and new ones, which :func:`apply_import` adds in the import's transaction.
    Another tool's label text becomes a class name by :func:`class_name_from_label`."""

    def __init__(self, store: ProjectStore):
        self.store = store
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.new: list = []

    def id(self, label) -> int:
        name = class_name_from_label(label)
        if name not in self.ids:
            self.names.append(name)
            self.ids, self.new = self.store.classes_for(self.names)
        return self.ids[name]


def _known_hw(store: ProjectStore, rec: ImageRecord) -> tuple[int, int]:
    """The image's (height, width) without writing to the project (an import writes once, at the end)."""
    if rec.hw is not None:
        return rec.hw
    return read_image(store.image_path(rec)).shape[:2]


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


CLASS_MASKS = "classes"  # masks export: classes/<class>/<type>/<stem>_mask.png, once a project has several classes


def export_masks(store: ProjectStore, out, label_types: Iterable[str] = LABEL_TYPES, overwrite: bool = False) -> list[Path]:
    """One 0/255 mask per labelled image, the union of the chosen label types (and of every
    class: what MVTec tools read). A project with more than one class also gets one mask per class
    an image has, ``classes/<class>/<type>/<stem>_mask.png`` under the same names."""
    target = ExportTarget(store, out, overwrite)
    label_types = tuple(label_types)
    names = mask_names(store)
    classes = store.classes()
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
        for k in classes if len(classes) > 1 else ():
            part = labels.union_mask(label_types, k.id)
            if part.any():
                p = target.path(CLASS_MASKS, k.name, folder, f"{stem}_mask.png")
                write_png(p, part)
                written.append(p)
                rows.append((p.relative_to(target.out).as_posix(), rec))
    target.finish(rows)
    return written


def import_masks(store: ProjectStore, src, as_type: str = PIXEL, replace: bool = False) -> ImportReport:
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
    incoming: dict[int, ImageLabels] = {}
    unmatched = []
    classes = ImportClasses(store)
    # the union masks first (the default class), then the class masks give their pixels a class
    found = [(p, None) for p in sorted(gt.rglob("*.png"))]
    if (src / CLASS_MASKS).is_dir():
        for d in sorted(x for x in (src / CLASS_MASKS).iterdir() if x.is_dir()):
            found += [(p, d.name) for p in sorted(d.rglob("*.png"))]
    for p, class_name in found:
        name = p.relative_to(src).as_posix()
        as_union = name if class_name is None else "ground_truth/" + p.relative_to(src / CLASS_MASKS / class_name).as_posix()
        rec = _resolve_name(name, manifest, by_key, by_name) or by_name.get(as_union)
        if rec is None:
            unmatched.append(name)
            continue
        hw = _known_hw(store, rec)
        mask = read_mask(p, expected_hw=hw)
        labels = incoming.setdefault(rec.id, ImageLabels(hw))
        _add_area(labels, mask, as_type, classes.id(class_name) if class_name is not None else DEFAULT_CLASS_ID)
    return apply_import(store, incoming, [as_type], replace, unmatched, classes)


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
    size, counts = rle.get("size"), rle.get("counts")
    if isinstance(counts, str):
        raise FormatError("compressed COCO RLE strings are not supported; use uncompressed counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise FormatError(f"RLE size must be [height, width], got {size!r:.40}")
    if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise FormatError("RLE counts must be a list of non-negative integers")
    h, w = size
    if sum(counts) != h * w:
        raise FormatError(f"RLE counts sum to {sum(counts)}, expected {h * w}")
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
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
        "categories": [{"id": k.id, "name": k.name, "supercategory": DEFAULT_CLASS_NAME} for k in store.classes()],
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
        for t, k in ((t, k) for t in (PIXEL, BLOCK8, BLOCK16) for k in sorted(labels.class_ids())):
            for region in _regions(labels.type_mask(t, k)):
                ys, xs = np.nonzero(region)
                ann_id += 1
                doc["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": rec.id,
                        "category_id": k,
                        "segmentation": rle_encode(region),
                        "area": int(region.sum()),
                        "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                        "iscrowd": 0,
                        "attributes": {"label_type": t},
                    }
                )
        for box_id, b in labels.boxes.items():
            c = b.corners()
            x0, y0 = c.min(axis=0)
            x1, y1 = c.max(axis=0)
            ann_id += 1
            doc["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": rec.id,
                    "category_id": labels.box_class(box_id),
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


MAX_COCO_BYTES = 512 * 1024 * 1024


def _coco_box(a: dict, attrs: dict, seg) -> RotatedBox:
    rb = attrs.get("rotated_box")
    if rb is not None:
        if not isinstance(rb, list) or len(rb) != 5:
            raise ValueError("attributes.rotated_box must be [cx, cy, width, height, angle]")
        return RotatedBox(*(_number(v) for v in rb))
    if not (isinstance(seg, list) and len(seg) == 1 and isinstance(seg[0], list) and len(seg[0]) == 8):
        raise ValueError("a box needs attributes.rotated_box or one 8-value polygon")
    return box_from_corners([_number(v) for v in seg[0]])


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, found {v!r:.40}")
    x = float(v)
    if not math.isfinite(x):
        raise ValueError(f"coordinate {x} is not finite")
    return x


def _coco_mask(seg, hw: tuple[int, int]) -> np.ndarray:
    if isinstance(seg, dict):
        size = seg.get("size")
        if not (isinstance(size, list) and len(size) == 2 and [int(v) if isinstance(v, int) and not isinstance(v, bool) else None for v in size] == list(hw)):
            raise ValueError(f"RLE size {size!r:.40} is not the image's {list(hw)}")
        return rle_decode(seg)
    if not isinstance(seg, list) or not seg:
        raise ValueError("segmentation must be polygons [[x, y, ...], ...] or an RLE {counts, size}")
    m = np.zeros(hw, dtype=np.uint8)
    h, w = hw
    for poly in seg:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise ValueError("a polygon is a list of at least 3 x, y pairs")
        pts = np.asarray([_number(v) for v in poly], dtype=np.float64).reshape(-1, 2)
        if pts[:, 0].min() < -1 or pts[:, 1].min() < -1 or pts[:, 0].max() > w + 1 or pts[:, 1].max() > h + 1:
            raise ValueError(f"polygon leaves the {w}x{h} image")
        cv2.fillPoly(m, [np.round(pts - 0.5).astype(np.int32)], 1)
    return m.astype(bool)


def import_coco(store: ProjectStore, src, replace: bool = False) -> ImportReport:
    """COCO ``annotations.json`` (ours, or another tool's: polygons, uncompressed RLE, 8-value
    polygons as rotated boxes). Images are matched by ``semirest_key`` or by file path."""
    src = Path(src)
    p = src / "annotations.json" if src.is_dir() else src
    try:
        if p.stat().st_size > MAX_COCO_BYTES:
            raise FormatError(f"{p}: {p.stat().st_size / 1e6:.0f} MB is more than a COCO file of this tool can hold")
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise FormatError(f"{p}: not a COCO annotation file ({str(exc)[:200]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise FormatError(f'{p}: not a COCO annotation file (expected an object with "images" and "annotations" lists)')
    by_key = _by_key(store)
    by_path = {Path(os.path.realpath(store.image_path(r))): r for r in by_key.values()}
    target: dict = {}
    unmatched = []
    for n, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or isinstance(im.get("id"), (dict, list)) or im.get("id") is None:
            raise FormatError(f"{p}: images[{n}] is not an image entry with an id")
        key, fname = im.get("semirest_key"), im.get("file_name")
        rec = by_key.get(key) if isinstance(key, str) else None
        if rec is None and isinstance(fname, str) and fname and "\0" not in fname:
            fp = Path(fname)
            rec = by_path.get(Path(os.path.realpath(fp if fp.is_absolute() else p.parent / fp)))
        if rec is None:
            unmatched.append(str(fname if isinstance(fname, str) else im.get("id")))
            continue
        if im["id"] in target and target[im["id"]].id != rec.id:
            raise FormatError(f"{p}: image id {im['id']!r} is used for two images")
        target[im["id"]] = rec
    classes = ImportClasses(store)
    names = {}  # category id -> name; an annotation without a known category is the default class
    for c in doc.get("categories") if isinstance(doc.get("categories"), list) else []:
        if isinstance(c, dict) and isinstance(c.get("id"), (int, str)) and not isinstance(c.get("id"), bool):
            names[c["id"]] = c.get("name")
    incoming: dict[int, ImageLabels] = {}
    if replace:
        for rec in target.values():
            incoming.setdefault(rec.id, ImageLabels(_known_hw(store, rec)))
    for n, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict):
            raise FormatError(f"{p}: annotations[{n}] is not an object")
        image_id = a.get("image_id")
        rec = target.get(image_id) if isinstance(image_id, (int, str)) and not isinstance(image_id, bool) else None
        if rec is None:
            continue
        hw = _known_hw(store, rec)
        labels = incoming.setdefault(rec.id, ImageLabels(hw))
        attrs = a.get("attributes") if isinstance(a.get("attributes"), dict) else {}
        t = attrs.get("label_type")
        seg = a.get("segmentation")
        where = f"{p}: annotation {a.get('id')!r:.40}"
        if t is not None and t not in LABEL_TYPES:
            raise FormatError(f"{where}: unknown label_type {t!r:.40}; expected one of {', '.join(LABEL_TYPES)}")
        cat = a.get("category_id")
        k = classes.id(names.get(cat) if isinstance(cat, (int, str)) and not isinstance(cat, bool) else None)
        try:
            if t == BOX or (t is None and isinstance(seg, list) and len(seg) == 1 and isinstance(seg[0], list) and len(seg[0]) == 8):
                box = _coco_box(a, attrs, seg)
                check_box_in_image(box, hw)
                _add_box(labels, box, k)
                continue
            m = _coco_mask(seg, hw)
        except (FormatError, ValueError, TypeError, IndexError, OverflowError, MemoryError) as exc:
            raise FormatError(f"{where} is malformed ({str(exc)[:200]})") from None
        _add_area(labels, m, t if t in GRIDS else PIXEL, k)
    return apply_import(store, incoming, LABEL_TYPES, replace, unmatched, classes)


def _add_box(labels: ImageLabels, box: RotatedBox, class_id: int) -> None:
    i = -1 - len(labels.boxes)
    labels.boxes[i] = box
    labels.box_classes[i] = class_id


def _add_area(labels: ImageLabels, mask: np.ndarray, label_type: str, class_id: int) -> None:
    """Pixels of a mask as brush pixels, or the cells it covers entirely, of one class."""
    if label_type in GRIDS:
        g = GRIDS[label_type]
        cells = blocks_from_mask(mask, g)
        labels.blocks[g] |= cells
        labels.block_classes.update({(g, r, c): class_id for r, c in cells})
    else:
        labels.pixels[np.asarray(mask, dtype=bool)] = class_id


# ------------------------------------------------------------------------------------ DOTA / YOLO-OBB
def _box_exports(store: ProjectStore):
    """(image, (height, width), [(box, class id), ...]) of every labelled image."""
    for rec, labels in _labelled(store):
        yield rec, labels.hw, [(b, labels.box_class(i)) for i, b in labels.boxes.items()]


def _put_images(target: ExportTarget, images: str, placed: list[tuple[ImageRecord, str]], folder: tuple[str, ...]) -> list[Path]:
    """Link or copy the images of an export as ``folder/<name><suffix>``; nothing for ``none``."""
    if images not in IMAGE_MODES:
        raise ProjectError(f"images can be left out, linked or copied into an export, not {images!r}; expected one of "
                           f"{', '.join(IMAGE_MODES)}")
    if images == "none":
        return []
    return [target.put_image(rec, images, *folder, f"{name}{Path(rec.path).suffix.lower()}") for rec, name in placed]


def export_dota(store: ProjectStore, out, overwrite: bool = False, images: str = "none") -> list[Path]:
    """``labelTxt/<name>.txt`` per image with boxes; ``images/<name>.<ext>`` beside it with
    ``images`` link or copy (DOTA's own layout)."""
    target = ExportTarget(store, out, overwrite)
    names = image_names(store)
    class_names = {k.id: k.name for k in store.classes()}
    written, rows, placed = [], [], []
    for rec, _hw, bxs in _box_exports(store):
        if not bxs:
            continue
        p = target.path("labelTxt", f"{names[rec.id]}.txt")
        lines = [" ".join(f"{v:.3f}" for v in b.corners().reshape(-1)) + f" {class_names[k]} 0" for b, k in bxs]
        files.write_atomic(p, "\n".join(lines) + "\n")
        written.append(p)
        rows.append((f"labelTxt/{p.name}", rec))
        placed.append((rec, names[rec.id]))
    written += _put_images(target, images, placed, ("images",))
    target.finish(rows)
    return written


YOLO_SPLIT = "train"  # every exported image; data.yaml's val names the same folder (the export does not split)


def export_yolo_obb(store: ProjectStore, out, overwrite: bool = False, images: str = "none") -> list[Path]:
    """Ultralytics' OBB dataset layout: ``labels/train/<name>.txt`` with ``class x1 y1 ... x4 y4``
    normalised and clipped to 0..1, ``images/train/<name>.<ext>`` (with ``images`` link or copy),
    and ``data.yaml`` with train, val and names. Without the images YOLO cannot train on the folder
    (its check needs the image folders); the manifest still maps every label file to its image."""
    target = ExportTarget(store, out, overwrite)
    names = image_names(store)
    classes = store.classes()
    index = {k.id: n for n, k in enumerate(classes)}  # YOLO class ids: the class list's order
    written, rows, placed = [], [], []
    for rec, (h, w), bxs in _box_exports(store):
        if not bxs:
            continue
        p = target.path("labels", YOLO_SPLIT, f"{names[rec.id]}.txt")
        lines = []
        for b, k in bxs:
            c = np.clip(b.corners() / np.array([w, h], dtype=np.float64), 0.0, 1.0)  # a box may reach past the edge
            lines.append(f"{index[k]} " + " ".join(f"{v:.6f}" for v in c.reshape(-1)))
        files.write_atomic(p, "\n".join(lines) + "\n")
        written.append(p)
        rows.append((f"labels/{YOLO_SPLIT}/{p.name}", rec))
        placed.append((rec, names[rec.id]))
    written += _put_images(target, images, placed, ("images", YOLO_SPLIT))
    note = ("images linked into images/" if images == "link" else "images copied into images/" if images == "copy"
            else "images are not in this folder (export with --images link or copy to train on it); see manifest.csv")
    # no `path:` key: YOLO then resolves train and val against this file's folder, wherever it is moved
    files.write_atomic(
        target.path("data.yaml"),
        f"# YOLO-OBB dataset exported by SemiREST Studio; {note}\n"
        f"train: images/{YOLO_SPLIT}\nval: images/{YOLO_SPLIT}\nnames:\n"
        + "".join(f"  {n}: {json.dumps(k.name)}\n" for n, k in enumerate(classes)),
    )
    target.finish(rows)
    return written


def check_box_in_image(box: RotatedBox, hw: tuple[int, int]) -> None:
    """A label box must be finite, of positive size, with its centre inside the image and no side
    longer than the image's diagonal (ValueError otherwise)."""
    vals = (box.cx, box.cy, box.width, box.height, box.angle)
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("coordinates must be finite numbers")
    h, w = hw
    if box.width <= 0 or box.height <= 0:
        raise ValueError(f"box of size {box.width:g}x{box.height:g}; expected a positive size")
    if not (0 <= box.cx <= w and 0 <= box.cy <= h):
        raise ValueError(f"box centre ({box.cx:g}, {box.cy:g}) is outside the {w}x{h} image")
    if max(box.width, box.height) > math.hypot(w, h) + 1:
        raise ValueError(f"box of {box.width:g}x{box.height:g} is larger than the {w}x{h} image")


MAX_LABEL_FILE_BYTES = 64 * 1024 * 1024


def _parse_box_lines(p: Path, yolo: bool, hw: tuple[int, int], class_of) -> list[tuple[RotatedBox, int]]:
    """(box, class id) per line; ``class_of(field, line number)`` gives the class id of DOTA's
    category name or YOLO's class index."""
    out = []
    try:
        if p.stat().st_size > MAX_LABEL_FILE_BYTES:
            raise FormatError(f"{p}: {p.stat().st_size / 1e6:.0f} MB is too large for a label file")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{p}: cannot be read as UTF-8 text ({exc})") from None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("imagesource:", "gsd:", "#")):
            continue
        parts = s.split()
        try:
            if yolo:
                if len(parts) != 9:
                    raise ValueError(f"expected 9 fields, found {len(parts)}")
                pts = np.array(parts[1:9], dtype=np.float64).reshape(4, 2) * np.array([hw[1], hw[0]])
                label = parts[0]
            else:
                if len(parts) < 9:
                    raise ValueError(f"expected at least 9 fields, found {len(parts)}")
                pts = np.array(parts[:8], dtype=np.float64).reshape(4, 2)
                label = parts[8]
            if not np.isfinite(pts).all():
                raise ValueError("coordinates must be finite numbers")
            box = box_from_corners(pts)
            check_box_in_image(box, hw)
            out.append((box, class_of(label)))
        except (ValueError, OverflowError) as exc:
            raise FormatError(f"{p}:{i}: {exc}") from None
    return out


def _by_stem(store: ProjectStore) -> dict[str, ImageRecord]:
    """Images by the stems their label files have: :func:`image_names`, and the flat names of
    exports made before label files were named after their images."""
    recs = {r.id: r for r in store.images()}
    out = {name: recs[i] for i, name in export_names(store).items()}
    out.update({name: recs[i] for i, name in image_names(store).items()})
    return out


def _yolo_class_names(src: Path, store: ProjectStore) -> tuple[dict[int, str], str]:
    """{class index: name} from ``data.yaml``'s names, else the project's class list; and where
    they came from, for messages."""
    p = src / "data.yaml"
    if not p.is_file():
        return {n: k.name for n, k in enumerate(store.classes())}, f"the project's {len(store.classes())} classes (no data.yaml)"
    import yaml  # PyYAML

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise FormatError(f"{p}: not a YOLO data.yaml ({str(exc).splitlines()[0][:200]})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in names):
        raise FormatError(f"{p}: expected names as a list or as {{index: name}}")
    return {i: str(v) for i, v in names.items()}, f"the names of {p}"


def _import_boxes(store: ProjectStore, src, folder: str, yolo: bool, replace: bool = False) -> ImportReport:
    """Label files under ``src/folder`` (YOLO: also its split folders, ``labels/train/``)."""
    src = Path(src)
    d = src / folder
    if not d.is_dir():
        raise FormatError(f"{src}: no {folder}/ folder")
    classes = ImportClasses(store)
    if yolo:
        names, named_by = _yolo_class_names(src, store)

        def class_of(field: str) -> int:
            try:
                i = float(field)
            except ValueError:
                raise ValueError(f"class index {field!r:.20} is not a number") from None
            if i != int(i) or int(i) not in names:
                raise ValueError(f"class index {field:.20} is not among {named_by} (0-{len(names) - 1})")
            return classes.id(names[int(i)])
    else:
        def class_of(field: str) -> int:
            return classes.id(field)
    manifest = _read_manifest(src)
    by_key = _by_key(store)
    by_stem = _by_stem(store)
    incoming: dict[int, ImageLabels] = {}
    unmatched = []
    found = sorted(d.glob("*.txt")) + (sorted(d.glob("*/*.txt")) if yolo else [])
    for p in found:
        name = p.relative_to(src).as_posix()
        rec = _resolve_name(name, manifest, by_key, {name: by_stem[p.stem]} if p.stem in by_stem else {})
        if rec is None:
            unmatched.append(name)
            continue
        hw = _known_hw(store, rec)
        labels = incoming.setdefault(rec.id, ImageLabels(hw))
        for b, k in _parse_box_lines(p, yolo, hw, class_of):
            _add_box(labels, b, k)
    return apply_import(store, incoming, [BOX], replace, unmatched, classes)


def import_dota(store: ProjectStore, src, replace: bool = False) -> ImportReport:
    return _import_boxes(store, src, "labelTxt", yolo=False, replace=replace)


def import_yolo_obb(store: ProjectStore, src, replace: bool = False) -> ImportReport:
    return _import_boxes(store, src, "labels", yolo=True, replace=replace)


# ------------------------------------------------------------------------------------ labelme
LABELME_VERSION = "6.3.1"  # the labelme release whose reader (labelme.LabelFile) the export is checked with
LABELME_TYPE_KEY = "semirest_label_type"  # an extra shape key (labelme keeps it): which label type a shape was
LABELME_AREA_SHAPES = ("polygon", "rectangle", "oriented_rectangle", "circle", "mask")


def _pixel_polygons(mask: np.ndarray):
    """The exact outlines of a mask's regions, pixel edges as coordinates (pixel (r, c) is the
    square [c, c+1] x [r, r+1]), as shapely polygons; regions touching only at a corner are apart."""
    import shapely

    m = np.asarray(mask, dtype=bool)
    padded = np.zeros((m.shape[0], m.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = m
    d = np.diff(padded, axis=1)
    starts_r, starts_c = np.nonzero(d == 1)
    _, ends_c = np.nonzero(d == -1)
    runs = shapely.box(starts_c, starts_r, ends_c, starts_r + 1)  # one rectangle per run of a row
    if len(runs) == 0:
        return []
    union = shapely.union_all(runs)
    return [g.simplify(0) for g in getattr(union, "geoms", [union])]


def _polygon_pixels(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The pixels whose centre (c + 0.5, r + 0.5) lies inside a polygon (bool, shape ``hw``), the
    rule :func:`~semirest.core.labels.boxes.boxes_to_mask` uses for boxes."""
    import shapely

    h, w = hw
    m = np.zeros((h, w), dtype=bool)
    poly = shapely.Polygon(points)
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    x0, y0, x1, y1 = poly.bounds
    c0, c1 = max(int(math.floor(x0 - 0.5)), 0), min(int(math.ceil(x1 - 0.5)), w - 1)
    r0, r1 = max(int(math.floor(y0 - 0.5)), 0), min(int(math.ceil(y1 - 0.5)), h - 1)
    if c0 > c1 or r0 > r1:
        return m
    xs, ys = np.meshgrid(np.arange(c0, c1 + 1) + 0.5, np.arange(r0, r1 + 1) + 0.5)
    shapely.prepare(poly)
    m[r0 : r1 + 1, c0 : c1 + 1] = shapely.contains_xy(poly, xs, ys)
    return m


def _labelme_area_shapes(mask: np.ndarray, label: str, label_type: str) -> list[dict]:
    """A mask's regions as labelme shapes: a polygon per region without holes, a ``mask`` shape
    (labelme's bounding box, inclusive pixel indices, with a PNG of the box) for a region with holes."""
    import base64

    out = []
    for poly in _pixel_polygons(mask):
        common = {"label": label, "group_id": None, "description": "", "flags": {}, LABELME_TYPE_KEY: label_type}
        if not poly.interiors:
            pts = np.asarray(poly.exterior.coords)[:-1]
            out.append({**common, "points": [[float(x), float(y)] for x, y in pts], "shape_type": "polygon", "mask": None})
            continue
        x0, y0, x1, y1 = (int(v) for v in poly.bounds)
        part = _polygon_pixels(np.asarray(poly.exterior.coords), mask.shape)[y0:y1, x0:x1] & mask[y0:y1, x0:x1]
        for hole in poly.interiors:
            part &= ~_polygon_pixels(np.asarray(hole.coords), mask.shape)[y0:y1, x0:x1]
        ok, png = cv2.imencode(".png", part.astype(np.uint8) * 255)
        out.append({**common, "points": [[float(x0), float(y0)], [float(x1 - 1), float(y1 - 1)]], "shape_type": "mask",
                    "mask": base64.b64encode(png.tobytes()).decode("ascii")})
    return out


def _labelme_box_shape(b: RotatedBox, label: str) -> dict:
    """An upright box as labelme's ``rectangle`` (two corners), any other as ``oriented_rectangle``
    (four corners, ours: clockwise from the box's top-left)."""
    common = {"label": label, "group_id": None, "description": "", "flags": {}, "mask": None, LABELME_TYPE_KEY: BOX}
    c = b.corners()
    if b.angle % 90 == 0:
        return {**common, "points": [[float(c[:, 0].min()), float(c[:, 1].min())], [float(c[:, 0].max()), float(c[:, 1].max())]],
                "shape_type": "rectangle"}
    return {**common, "points": [[float(x), float(y)] for x, y in c], "shape_type": "oriented_rectangle"}


def export_labelme(store: ProjectStore, out, overwrite: bool = False, images: str = "none") -> list[Path]:
    """labelme JSON, one ``<name>.json`` per labelled image (``imageData`` null, ``imagePath``
    relative to the file; with ``images`` link or copy, the image beside it under the same name, as
    labelme's own folders are). Coordinates are labelme's: pixel (r, c) spans [c, c+1] x [r, r+1]."""
    target = ExportTarget(store, out, overwrite)
    names = image_names(store)
    class_names = {k.id: k.name for k in store.classes()}
    written, rows, placed = [], [], []
    for rec, labels in _labelled(store):
        h, w = labels.hw
        shapes = []
        for t, k in ((t, k) for t in (PIXEL, BLOCK8, BLOCK16) for k in sorted(labels.class_ids())):
            shapes += _labelme_area_shapes(labels.type_mask(t, k), class_names[k], t)
        shapes += [_labelme_box_shape(b, class_names[labels.box_class(i)]) for i, b in labels.boxes.items()]
        name = names[rec.id]
        if images == "none":
            image_path = Path(os.path.relpath(store.image_path(rec), target.out)).as_posix()
        else:
            image_path = f"{name}{Path(rec.path).suffix.lower()}"
        doc = {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
               "imageHeight": int(h), "imageWidth": int(w)}
        p = target.path(f"{name}.json")
        files.write_atomic(p, files.to_json(doc, indent=1))
        written.append(p)
        rows.append((p.name, rec))
        placed.append((rec, name))
    written += _put_images(target, images, placed, ())
    target.finish(rows)
    return written


MAX_LABELME_BYTES = 256 * 1024 * 1024


def _labelme_points(shape: dict, where: str) -> np.ndarray:
    pts = shape.get("points")
    if not isinstance(pts, list) or not pts or not all(isinstance(q, list) and len(q) == 2 for q in pts):
        raise FormatError(f"{where}: points must be a list of [x, y] pairs")
    try:
        arr = np.array([[_number(v) for v in q] for q in pts], dtype=np.float64)
    except ValueError as exc:
        raise FormatError(f"{where}: {exc}") from None
    if np.abs(arr).max() > 1e7:
        raise FormatError(f"{where}: coordinates beyond 1e7")
    return arr


def _labelme_shape(shape, where: str, hw: tuple[int, int], labels: ImageLabels, classes: "ImportClasses") -> None:
    """One labelme shape into ``labels``: areas to pixels (or cells, for a shape this tool
    exported from cells), rectangles and oriented rectangles to boxes."""
    import base64

    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
        raise FormatError(f"{where}: expected an object with a label string, points and a shape_type")
    kind = shape.get("shape_type", "polygon")
    if kind is None:
        kind = "polygon"
    if kind not in LABELME_AREA_SHAPES:
        raise FormatError(f"{where}: shape_type {kind!r:.40} has no area; expected one of {', '.join(LABELME_AREA_SHAPES)}")
    t = shape.get(LABELME_TYPE_KEY, PIXEL)
    if t not in LABEL_TYPES:
        raise FormatError(f"{where}: {LABELME_TYPE_KEY} {t!r:.40}; expected one of {', '.join(LABEL_TYPES)}")
    pts = _labelme_points(shape, where)
    h, w = hw
    try:
        if kind in ("rectangle", "oriented_rectangle"):
            if kind == "rectangle" and len(pts) != 2:
                raise ValueError(f"a rectangle has 2 points, found {len(pts)}")
            if kind == "oriented_rectangle" and len(pts) != 4:
                raise ValueError(f"an oriented_rectangle has 4 points, found {len(pts)}")
            if kind == "rectangle":
                (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
                box = RotatedBox((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.0)
            else:
                box = box_from_corners(pts)
            check_box_in_image(box, hw)
            if t == BOX or LABELME_TYPE_KEY not in shape:  # another tool's rectangles are boxes
                _add_box(labels, box, classes.id(shape["label"]))
                return
            m = boxes_to_mask([box], hw)
        elif kind == "polygon":
            if len(pts) < 3:
                raise ValueError(f"a polygon has at least 3 points, found {len(pts)}")
            if pts[:, 0].min() < -1 or pts[:, 1].min() < -1 or pts[:, 0].max() > w + 1 or pts[:, 1].max() > h + 1:
                raise ValueError(f"polygon leaves the {w}x{h} image")
            m = _polygon_pixels(pts, hw)
        elif kind == "circle":
            if len(pts) != 2:
                raise ValueError(f"a circle has 2 points (centre and one on the circle), found {len(pts)}")
            r = float(np.linalg.norm(pts[1] - pts[0]))
            if r > math.hypot(w, h):
                raise ValueError(f"circle of radius {r:g} is larger than the {w}x{h} image")
            yy, xx = np.mgrid[0:h, 0:w]
            m = (xx + 0.5 - pts[0, 0]) ** 2 + (yy + 0.5 - pts[0, 1]) ** 2 <= r * r
        else:  # mask: labelme's bounding box in inclusive pixel indices, and a PNG of that box
            data = shape.get("mask")
            if not isinstance(data, str) or len(pts) != 2:
                raise ValueError("a mask shape has 2 points (its box) and a base64 PNG mask")
            crop = cv2.imdecode(np.frombuffer(base64.b64decode(data, validate=True), np.uint8), cv2.IMREAD_GRAYSCALE)
            x0, y0 = (int(round(v)) for v in pts.min(axis=0))
            x1, y1 = (int(round(v)) for v in pts.max(axis=0))
            if crop is None or crop.shape != (y1 - y0 + 1, x1 - x0 + 1):
                raise ValueError(f"mask is not a PNG of its box's {x1 - x0 + 1}x{y1 - y0 + 1} pixels")
            if x0 < 0 or y0 < 0 or x1 >= w or y1 >= h:
                raise ValueError(f"mask box leaves the {w}x{h} image")
            m = np.zeros(hw, dtype=bool)
            m[y0 : y1 + 1, x0 : x1 + 1] = crop > 0
    except (ValueError, TypeError, OverflowError, MemoryError, cv2.error) as exc:
        raise FormatError(f"{where}: {str(exc)[:200]}") from None
    _add_area(labels, m, t if t in GRIDS else PIXEL, classes.id(shape["label"]))  # a polygon marked box: pixels


def import_labelme(store: ProjectStore, src, replace: bool = False) -> ImportReport:
    """labelme JSON files (a folder of them, searched recursively, or one file). An image is
    matched by the manifest, by ``imagePath`` (relative to the JSON file), or by the file's stem."""
    src = Path(src)
    found = [src] if src.is_file() else sorted(p for p in src.rglob("*.json") if p.is_file())
    if not found:
        raise FormatError(f"{src}: no labelme .json files (expected <image name>.json with shapes, imagePath, "
                          "imageHeight and imageWidth)")
    root = src.parent if src.is_file() else src
    manifest = _read_manifest(root)
    by_key = _by_key(store)
    by_stem = _by_stem(store)
    by_path = {Path(os.path.realpath(store.image_path(r))): r for r in by_key.values()}
    incoming: dict[int, ImageLabels] = {}
    unmatched = []
    classes = ImportClasses(store)
    for p in found:
        name = p.relative_to(root).as_posix()
        try:
            if p.stat().st_size > MAX_LABELME_BYTES:
                raise FormatError(f"{p}: {p.stat().st_size / 1e6:.0f} MB is too large for a labelme file")
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise FormatError(f"{p}: not a labelme JSON file ({str(exc)[:200]})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
            raise FormatError(f'{p}: not a labelme file (expected an object with a "shapes" list, "imagePath", '
                              '"imageHeight" and "imageWidth")')
        rec = _resolve_name(name, manifest, by_key, {})
        image_path = doc.get("imagePath")
        if rec is None and isinstance(image_path, str) and image_path and "\0" not in image_path:
            ip = Path(image_path.replace("\\", "/"))  # labelme on Windows writes backslashes
            try:
                rec = by_path.get(Path(os.path.realpath(ip if ip.is_absolute() else p.parent / ip)))
            except (OSError, ValueError):  # a name no file can have: matched by the file's own name below
                rec = None
        if rec is None:
            rec = by_stem.get(p.stem)
        if rec is None:
            unmatched.append(name)
            continue
        hw = _known_hw(store, rec)
        size = (doc.get("imageHeight"), doc.get("imageWidth"))
        if size != (None, None) and size != tuple(hw):
            raise FormatError(f"{p}: imageHeight and imageWidth say {size[0]}x{size[1]} (height x width), but the "
                              f"project's image {rec.key!r} is {hw[0]}x{hw[1]}")
        labels = incoming.setdefault(rec.id, ImageLabels(hw))
        for i, shape in enumerate(doc["shapes"]):
            _labelme_shape(shape, f"{p}: shapes[{i}]", hw, labels, classes)
    return apply_import(store, incoming, LABEL_TYPES, replace, unmatched, classes)


# ------------------------------------------------------------------------------------ timing
def timing_rows(store: ProjectStore) -> list[dict]:
    """Seconds per (image, label type, annotator), with the first start and last end, for the
    images that hold a label of that type: time spent on labels that were all erased again
    measures no label the study could train on."""
    recs = {r.id: r for r in store.images()}
    summaries = store.summaries()
    agg: dict[tuple, dict] = {}
    for s in store.time_spans():
        if not summaries.get(s.image_id, LabelSummary()).holds(s.label_type):
            continue
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
    """Mean active seconds per image for each label type (over the images in ``rows``: those
    holding a label of that type, see :func:`timing_rows`)."""
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
    from semirest.core.project import plots  # matplotlib.pyplot takes ~1.5 s to import: only a plot loads it

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
IMAGE_FORMATS = ("dota", "yolo-obb", "labelme")  # exports that can link or copy the images beside their labels


def export(store: ProjectStore, fmt: str, out, benchmark: dict | None = None,
           label_types: Iterable[str] = LABEL_TYPES, overwrite: bool = False, images: str = "none") -> list[Path]:
    """Write one export format into ``out`` (see :class:`ExportTarget` for what is refused).
    ``images``: none, link or copy, for the formats in :data:`IMAGE_FORMATS`."""
    if images != "none" and fmt not in IMAGE_FORMATS:
        raise ProjectError(f"{fmt} exports refer to the images where they are; linking or copying them "
                           f"(--images) is for {', '.join(IMAGE_FORMATS)}")
    if fmt == "masks":
        return export_masks(store, out, label_types, overwrite)
    if fmt == "coco":
        return [export_coco(store, out, overwrite)]
    if fmt == "dota":
        return export_dota(store, out, overwrite, images)
    if fmt == "yolo-obb":
        return export_yolo_obb(store, out, overwrite, images)
    if fmt == "labelme":
        return export_labelme(store, out, overwrite, images)
    if fmt == "timing-csv":
        return export_timing(store, out, benchmark, overwrite)
    raise ProjectError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def import_labels(store: ProjectStore, fmt: str, src, as_type: str = PIXEL, replace: bool = False) -> ImportReport:
    """Import one format (one transaction; see :func:`apply_import` for merge and replace)."""
    if fmt == "masks":
        return import_masks(store, src, as_type, replace)
    if fmt == "coco":
        return import_coco(store, src, replace)
    if fmt == "dota":
        return import_dota(store, src, replace)
    if fmt == "yolo-obb":
        return import_yolo_obb(store, src, replace)
    if fmt == "labelme":
        return import_labelme(store, src, replace)
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
