"""`semirest-studio [PROJECT]`: open a labeling project, or create it.

    semirest-studio screw.sqlite                          open (or create an empty project)
    semirest-studio screw.sqlite --mvtec DATA --category screw   create from an MVTec category
    semirest-studio new.sqlite --images DIR               create from an image folder
    semirest-studio --demo                                the demo project with a guided tour
    semirest-studio --self-check                          start, edit a temporary project, quit
    semirest-studio PROJECT --script FILE                 apply scripted edits (tests)
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QFileDialog

from semirest.app.main_window import open_project_window
from semirest.app.script import read_script, run_script
from semirest.app.tour import GuidedTour
from semirest.core import __version__
from semirest.core.cli import main as cli_main
from semirest.core.data.images import write_png
from semirest.core.project import formats
from semirest.core.project.demo import ensure_demo_project
from semirest.core.project.store import NewImage, ProjectStore


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name on some containers
        return "annotator"


def _version() -> str:
    return __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semirest-studio", description="SemiREST Studio: label defects with pixels, blocks or rotated boxes")
    p.add_argument("--version", action="version", version=f"semirest-studio {_version()}")
    p.add_argument("project", nargs="?", help="project file (.sqlite); created if it does not exist")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="create the project from an image folder")
    src.add_argument("--mvtec", metavar="ROOT", help="create the project from an MVTec-layout dataset")
    p.add_argument("--category", help="MVTec category (with --mvtec)")
    p.add_argument("--split", default="test", choices=("test", "train", "all"))
    p.add_argument("--annotator", default=_default_annotator(), help="name stored with the recorded times")
    p.add_argument("--demo", action="store_true", help="open the demo project (built on first use) with a guided tour")
    p.add_argument("--demo-dir", metavar="DIR", help="where the demo dataset and project live (default: ~/.local/share/semirest-studio/demo)")
    p.add_argument("--no-tour", action="store_true", help="with --demo: do not show the guided tour")
    p.add_argument("--self-check", action="store_true", help="create a temporary project, open the window, make edits, check they were saved, quit")
    p.add_argument("--script", metavar="FILE", help="apply the edits of a script file ('-': stdin) through the tools, acknowledging each on stdout")
    return p


def _headless() -> bool:
    """Linux without a display server, and no Qt platform chosen explicitly."""
    return (
        sys.platform.startswith("linux")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        and not os.environ.get("QT_QPA_PLATFORM")
    )


def _offscreen_if_headless() -> None:
    if _headless():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def self_check(annotator: str = "self-check") -> int:
    """Start-and-quit check of an installed or packaged studio: a temporary project over two
    generated images, the main window, one edit per label type through the tools, a normal close,
    and a re-read of the file. Prints one line; returns 0 when everything was saved."""
    t0 = time.perf_counter()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="semirest-self-check-") as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(2):
            p = tmp / f"image {i} ü.png"  # a space and a non-ASCII letter on purpose
            write_png(p, rng.integers(60, 200, size=(96, 128), dtype=np.uint8))
            paths.append(p)
        project = tmp / "self-check.sqlite"
        with ProjectStore.create(project) as store:
            store.add_images([NewImage(p, p.stem) for p in paths])
        window = open_project_window(project, annotator, show_error=lambda text: None)
        if window is None:
            print("self-check FAILED: the project could not be opened", file=sys.stderr)
            return 1
        window.show()
        app.processEvents()
        ops = [
            {"op": "tool", "name": "brush"},
            {"op": "drag", "points": [[10, 10], [40, 20]]},
            {"op": "tool", "name": "block8"},
            {"op": "drag", "points": [[60, 60]]},
            {"op": "tool", "name": "box"},
            {"op": "drag", "points": [[70, 20], [100, 40]]},
            {"op": "quit"},
        ]
        with open(os.devnull, "w") as sink:
            acked = run_script(window, ops, out=sink)
        app.processEvents()
        with ProjectStore.open(project, read_only=True) as store:
            rec = store.images()[0]
            labels = store.load_labels(rec.id, (96, 128))
            ok = store.integrity_check() == "ok"
            saved = bool(labels.pixels.any()) and len(labels.blocks[8]) == 1 and len(labels.boxes) == 1
    elapsed = time.perf_counter() - t0
    if acked == 3 and ok and saved:
        print(f"semirest-studio {_version()} self-check ok: window opened, 3 edits saved, integrity ok ({elapsed:.2f} s after start-up)")
        return 0
    print(f"self-check FAILED: acked {acked}/3, integrity {'ok' if ok else 'bad'}, labels {'saved' if saved else 'missing'}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.self_check or args.script:
        _offscreen_if_headless()
    if args.self_check:
        return self_check()
    if args.demo and not args.script and _headless():
        print("semirest-studio: no display found; running the headless demo instead (`semirest demo`: "
              "synthetic dataset -> baseline -> heatmaps and metrics)", file=sys.stderr)
        return cli_main(["demo"])
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SemiREST Studio")
    _set_icon(app)
    project = args.project
    if args.demo:
        if args.project or args.images or args.mvtec:
            print("semirest-studio: error: --demo opens its own project; leave out PROJECT, --images and --mvtec", file=sys.stderr)
            return 2
        try:
            print("semirest-studio: preparing the demo project (the first time takes a few seconds)…", file=sys.stderr)
            project = str(ensure_demo_project(args.demo_dir))
        except OSError as exc:
            print(f"semirest-studio: error: cannot write the demo project: {exc}", file=sys.stderr)
            return 2
    if project is None:
        project, _ = QFileDialog.getSaveFileName(
            None, "Open or create a SemiREST project", os.getcwd(), "SemiREST projects (*.sqlite);;All files (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if not project:
            return 0
    new_images = None
    if args.images or args.mvtec:
        if args.mvtec and not args.category:
            print("semirest-studio: error: --mvtec needs --category", file=sys.stderr)
            return 2
        def new_images():
            found = (
                formats.images_from_folder(args.images)
                if args.images
                else formats.images_from_mvtec(args.mvtec, args.category, split=args.split)
            )
            checked = formats.check_new_images(found)  # unreadable files are listed, not imported
            for note in checked.notes:
                print(f"semirest-studio: note: {note}", file=sys.stderr)
            for r in checked.refused:
                print(f"semirest-studio: not added: {r}", file=sys.stderr)
            return checked.usable
    window = open_project_window(project, args.annotator, new_images)
    if window is None:
        return 2
    window.show()
    if args.script:
        try:
            ops = read_script(args.script)
        except (OSError, ValueError) as exc:
            print(f"semirest-studio: error: {exc}", file=sys.stderr)
            return 2
        app.processEvents()
        run_script(window, ops)
        if window.isVisible():
            window.close()
        return 0
    if args.demo and not args.no_tour:
        window.tour = GuidedTour(window)
    return app.exec()


def _set_icon(app) -> None:
    icon = resource_path("semirest-studio.png")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))


def resource_path(name: str) -> Path:
    """A file of resources/: beside the packaged executable, or in the source tree."""
    if getattr(sys, "frozen", False):
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "resources" / name
    return Path(__file__).resolve().parents[1] / "resources" / name


if __name__ == "__main__":
    sys.exit(main())
