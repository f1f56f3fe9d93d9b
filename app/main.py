"""`semirest-studio [PROJECT]`: open a labeling project, or create it.

    semirest-studio screw.sqlite                          open (or create an empty project)
    semirest-studio screw.sqlite --mvtec DATA --category screw   create from an MVTec category
    semirest-studio new.sqlite --images DIR               create from an image folder
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name on some containers
        return "annotator"


def open_project_window(
    path,
    annotator: str,
    new_images=None,
    parent_for_errors=None,
    show_error: Callable[[str], None] | None = None,
):
    """The main window on a project (created first if the file does not exist), or None after
    telling the user why it cannot be opened."""
    from semirest.app.main_window import MainWindow
    from semirest.core.data.datasets import DatasetLayoutError
    from semirest.core.project.store import ProjectError, ProjectStore

    def error(text: str) -> None:
        print(f"semirest-studio: error: {text}", file=sys.stderr)
        if show_error is not None:
            show_error(text)
        else:
            QMessageBox.critical(parent_for_errors, "Cannot open project", text)

    path = Path(path)
    try:
        if path.exists():
            if new_images is not None:
                raise ProjectError(f"{path}: already exists; leave out --images/--mvtec to open it")
            store = ProjectStore.open(path)
        else:
            images = new_images() if new_images is not None else []
            store = ProjectStore.create(path)
            store.add_images(images)
    except (ProjectError, DatasetLayoutError, OSError) as exc:
        error(str(exc))
        return None
    return MainWindow(store, annotator)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semirest-studio", description="SemiREST Studio: label defects with pixels, blocks or rotated boxes")
    p.add_argument("project", nargs="?", help="project file (.sqlite); created if it does not exist")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="create the project from an image folder")
    src.add_argument("--mvtec", metavar="ROOT", help="create the project from an MVTec-layout dataset")
    p.add_argument("--category", help="MVTec category (with --mvtec)")
    p.add_argument("--split", default="test", choices=("test", "train", "all"))
    p.add_argument("--annotator", default=_default_annotator(), help="name stored with the recorded times")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("SemiREST Studio")
    project = args.project
    if project is None:
        project, _ = QFileDialog.getSaveFileName(
            None, "Open or create a SemiREST project", os.getcwd(), "SemiREST projects (*.sqlite);;All files (*)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if not project:
            return 0
    new_images = None
    if args.images or args.mvtec:
        from semirest.core.project import formats

        if args.mvtec and not args.category:
            print("semirest-studio: error: --mvtec needs --category", file=sys.stderr)
            return 2
        new_images = (
            (lambda: formats.images_from_folder(args.images))
            if args.images
            else (lambda: formats.images_from_mvtec(args.mvtec, args.category, split=args.split))
        )
    window = open_project_window(project, args.annotator, new_images)
    if window is None:
        return 2
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
