"""`semirest inspect`: OK / NG verdicts for images on the line, with a trained run or an exported detector.

``--model detector.onnx`` runs the exported file through :mod:`semirest.core.deploy` (onnxruntime;
torch is never imported); ``--run RUN_DIR`` runs the torch checkpoint (:meth:`SemiREST.detect`).
Both compute the same image score (map maximum at the model's input size), normalised so that the
calibrated threshold reads 0.5 (:mod:`semirest.core.calibration`).

Writes, inside ``--out`` only: ``verdicts.csv`` (one row per image; rewritten atomically after every
batch, so it is complete whenever it is read) and ``overlays/`` (NG images; every image with
``--all-overlays``). Output names are unique: two inputs called ``a.png`` in different folders give
``a.png`` and ``<folder>_a.png``. Files under ``--out`` are never taken as inputs.

Exit codes (for scripts on the line): 0 every image OK; 1 at least one NG; 2 usage error (bad
arguments, no model, no images); 3 no NG, but some images could not be read (rows marked ERROR).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_NG, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3
CSV_HEADER = ["file", "score", "normalised_score", "verdict", "threshold", "score_threshold", "overlay", "message"]


class TorchDetector:
    """The checkpoint of a run with the interface of :class:`semirest.core.deploy.Detector`."""

    def __init__(self, checkpoint: Path, device: str = "auto"):
        from semirest.core.device import pick_device
        from semirest.core.methods.semirest import SemiREST

        self.model = SemiREST.load(checkpoint, pick_device(device))
        self.calibration = self.model.calibration
        self.calibrated = self.calibration is not None
        self.threshold = self.calibration.threshold if self.calibrated else 0.5
        self.input_size = self.model.extractor.input_size

    def detect(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        maps, scores = self.model.detect(images)
        normalised = self.calibration.normalise(scores) if self.calibrated else scores
        return maps, scores, np.asarray(normalised, dtype=np.float32)

    def score_threshold(self, normalised: float = 0.5) -> float:
        return self.calibration.raw_threshold(normalised) if self.calibrated else float(normalised)


def open_detector(args: argparse.Namespace):
    from semirest.core.cli.common import CliError

    if bool(args.run) == bool(args.model):
        raise CliError("give one of --run RUN_DIR or --model detector.onnx")
    if args.model:
        try:
            from semirest.core.deploy import Detector, DetectorError
        except ModuleNotFoundError as exc:
            raise CliError(f"inspect --model needs {exc.name}, which is not installed (pip install onnxruntime)") from None

        try:
            return Detector(args.model, threads=args.threads)
        except DetectorError as exc:
            raise CliError(str(exc)) from None
    from semirest.core.train.checkpoint import CheckpointError
    from semirest.core.cli.train import CHECKPOINT_NAME

    run = Path(args.run)
    ckpt = run / CHECKPOINT_NAME if run.is_dir() else run
    try:
        return TorchDetector(ckpt, args.device or "auto")
    except (CheckpointError, RuntimeError) as exc:
        raise CliError(str(exc)) from None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def list_images(items: Sequence[str], out: Path) -> list[Path]:
    """Image files given directly or found (recursively, sorted) in folders; none under ``out``."""
    from semirest.core.data.images import is_image_file

    found: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q) and not _inside(q, out))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    return found


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def unique_name(path: Path, used: set[str]) -> str:
    """A file name for ``path``'s outputs, unique among ``used`` (which it joins): its name, else
    its folder's name and its name, else a counter; only safe characters, never a path."""
    stem = _UNSAFE.sub("_", path.stem).strip("._") or "image"
    parent = _UNSAFE.sub("_", path.parent.name).strip("._")
    candidates = [stem] + ([f"{parent}_{stem}"] if parent else [])
    for c in candidates:
        if c not in used:
            used.add(c)
            return c
    i = 2
    while f"{candidates[-1]}_{i}" in used:
        i += 1
    used.add(f"{candidates[-1]}_{i}")
    return f"{candidates[-1]}_{i}"


class Inspection:
    """Verdicts of a growing list of images, written to ``out`` after every batch."""

    def __init__(self, detector, out: Path, threshold: float, all_overlays: bool, batch: int):
        self.detector = detector
        self.out = out
        self.threshold = threshold
        self.raw_threshold = detector.score_threshold(threshold)
        self.all_overlays = all_overlays
        self.batch = max(1, batch)
        self.rows: list[list] = []
        self.used: set[str] = set()
        self.n_ok = self.n_ng = self.n_error = 0
        self.seconds = 0.0

    def run(self, paths: Sequence[Path], progress=None) -> None:
        for i in range(0, len(paths), self.batch):
            self._batch(paths[i:i + self.batch])
            if progress is not None:
                progress.update(len(paths[i:i + self.batch]))

    def _batch(self, paths: Sequence[Path]) -> None:
        from semirest.core.data.images import ImageReadError, read_image

        t0 = time.perf_counter()
        images, good = [], []
        for p in paths:
            name = unique_name(p, self.used)
            try:
                images.append(read_image(p))
                good.append((p, name))
            except ImageReadError as exc:
                self.n_error += 1
                self.rows.append([str(p), "", "", "ERROR", self.threshold, self.raw_threshold, "", exc.reason])
        if images:
            maps, scores, normalised = self.detector.detect(images)
            for (p, name), im, m, s, n in zip(good, images, maps, scores, normalised):
                ng = bool(float(s) > self.raw_threshold)
                self.n_ng += ng
                self.n_ok += not ng
                overlay_name = ""
                if ng or self.all_overlays:
                    overlay_name = f"overlays/{name}.png"
                    self._overlay(self.out / overlay_name, im, m, "NG" if ng else "OK", float(n))
                self.rows.append([str(p), round(float(s), 6), round(float(n), 6), "NG" if ng else "OK",
                                  self.threshold, round(self.raw_threshold, 6), overlay_name, ""])
        self.seconds += time.perf_counter() - t0
        self.write()

    @staticmethod
    def _overlay(path: Path, image: np.ndarray, m: np.ndarray, verdict: str, normalised: float) -> None:
        import cv2

        from semirest.core.data.images import write_png
        from semirest.core.visual import overlay

        h, w = image.shape[:2]
        full = cv2.resize(np.asarray(m, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        panel = overlay(image, full, 0.0, 1.0, 0.5)
        colour = (255, 40, 40) if verdict == "NG" else (40, 220, 40)
        scale = max(0.4, min(h, w) / 400)
        cv2.putText(panel, f"{verdict} {normalised:.3f}", (5, int(25 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, colour, max(1, int(2 * scale)), cv2.LINE_AA)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, panel)

    def write(self) -> None:
        from semirest.core.files import write_csv

        write_csv(self.out / "verdicts.csv", CSV_HEADER, self.rows)

    def summary(self) -> str:
        n = self.n_ok + self.n_ng + self.n_error
        rate = (self.n_ok + self.n_ng) / self.seconds if self.seconds > 0 else 0.0
        err = f", {self.n_error} unreadable" if self.n_error else ""
        return (f"{n} images: {self.n_ok} OK, {self.n_ng} NG{err}; {rate:.2f} images/s; "
                f"threshold {self.threshold:g} (normalised; score {self.raw_threshold:.4g}); {self.out / 'verdicts.csv'}")

    def exit_code(self) -> int:
        if self.n_ng:
            return EXIT_NG
        return EXIT_UNREADABLE if self.n_error else EXIT_OK


def _new_files(items: Sequence[str], out: Path, seen: set[Path], sizes: dict[Path, tuple[int, float]]) -> list[Path]:
    """Files not seen before whose size and time did not change since the last poll (not being written)."""
    ready = []
    for p in list_images(items, out):
        key = p.resolve()
        if key in seen:
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        now = (st.st_size, st.st_mtime)
        if sizes.get(key) == now and st.st_size > 0:
            ready.append(p)
            seen.add(key)
            sizes.pop(key, None)
        else:
            sizes[key] = now
    return ready


def cmd_inspect(args: argparse.Namespace) -> int:
    from semirest.core.calibration import UNCALIBRATED_NOTE
    from semirest.core.cli.common import CliError

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise CliError(f"--threshold is in normalised units (0.5 = the calibrated threshold) and must be in [0, 1], got {args.threshold}")
    if args.watch and not all(Path(p).is_dir() for p in args.images):
        raise CliError("--watch needs folders to watch")
    out = Path(args.out).resolve()
    try:
        paths = list_images(args.images, out)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    if not paths and not args.watch:
        raise CliError("no images found in " + ", ".join(args.images))
    detector = open_detector(args)
    if not detector.calibrated:
        print(f"note: {UNCALIBRATED_NOTE}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    threshold = 0.5 if args.threshold is None else float(args.threshold)
    job = Inspection(detector, out, threshold, args.all_overlays, args.batch)
    from tqdm import tqdm

    bar = tqdm(total=None if args.watch else len(paths), desc="inspect", unit="img", disable=args.quiet,
               file=sys.stderr, dynamic_ncols=True)
    try:
        if not args.watch:
            job.run(paths, bar)
        else:
            print(f"watching {', '.join(args.images)} every {args.poll:g} s; Ctrl+C stops", file=sys.stderr)
            seen: set[Path] = set()
            sizes: dict[Path, tuple[int, float]] = {}
            while True:
                new = _new_files(args.images, out, seen, sizes)
                if new:
                    job.run(new, bar)
                else:
                    time.sleep(args.poll)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        bar.close()
    job.write()
    print(job.summary())
    return job.exit_code()


def register(sub) -> None:
    p = sub.add_parser("inspect", help="OK / NG verdicts for images with a run or an exported detector "
                                       "(exit 0 all OK, 1 any NG, 2 usage error, 3 unreadable images)",
                       description=__doc__.split("\n\n", 3)[-1], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder of `semirest train` (or its model.safetensors): the torch path")
    src.add_argument("--model", help="detector.onnx (onnxruntime) or detector.xml (OpenVINO) from `semirest export-model` (no torch)")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder: verdicts.csv and overlays/")
    p.add_argument("--threshold", type=float, default=None,
                   help="NG above this normalised score (default 0.5: the threshold calibrated at training)")
    p.add_argument("--all-overlays", action="store_true", help="write overlays for OK images too (default: NG only)")
    p.add_argument("--watch", action="store_true", help="keep watching the folders and score new files as they arrive; Ctrl+C stops")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at watched folders (default 1)")
    p.add_argument("--batch", type=int, default=8, help="images scored together (default 8)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (default: all cores)")
    p.add_argument("--device", default=None, help="torch path: auto (default), cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_inspect)
