"""The demo project of ``semirest-studio --demo``: the embedded synthetic dataset as a project.

The dataset (:func:`semirest.core.data.demo.make_demo_dataset`) is written once into a user
folder and a project over its test images (with their ground-truth masks as reference masks, for
study mode) is created beside it. Running the demo again reopens the same project, so the labels
drawn in an earlier session are still there.
"""
from __future__ import annotations

import os
from pathlib import Path

from semirest.core.data.demo import MARKER, make_demo_dataset
from semirest.core.project.formats import images_from_mvtec
from semirest.core.project.store import ProjectStore

DEMO_CATEGORY = "demo"
PROJECT_NAME = "demo.sqlite"


def default_demo_folder() -> Path:
    """``$SEMIREST_DEMO_DIR``, else ``$XDG_DATA_HOME/semirest-studio/demo`` (``~/.local/share``)."""
    if os.environ.get("SEMIREST_DEMO_DIR"):
        return Path(os.environ["SEMIREST_DEMO_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "semirest-studio" / "demo"


def ensure_demo_project(folder: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """The demo project file in ``folder`` (made first if missing); returns its path."""
    folder = Path(folder) if folder is not None else default_demo_folder()
    folder.mkdir(parents=True, exist_ok=True)
    project = folder / PROJECT_NAME
    data = folder / "data"
    if not (data / DEMO_CATEGORY / MARKER).is_file():  # first run, or the images were deleted:
        make_demo_dataset(data, seed=seed, category=DEMO_CATEGORY)  # deterministic, same files again
    if project.exists():
        return project
    new = images_from_mvtec(data, DEMO_CATEGORY, split="test")
    partial = folder / (PROJECT_NAME + ".partial")
    for leftover in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm")):
        leftover.unlink(missing_ok=True)
    with ProjectStore.create(partial, name="demo") as store:
        store.set_meta("source", f"demo dataset {data / DEMO_CATEGORY} (seed {seed})")
        store.add_images(new)
    os.replace(partial, project)  # a half-made project is never left under the real name
    return project
