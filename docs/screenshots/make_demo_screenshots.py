"""Grab the studio as `semirest-studio --demo` opens it: the demo project with the guided tour.

    QT_QPA_PLATFORM=offscreen python docs/screenshots/make_demo_screenshots.py
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication  # noqa: E402

OUT = Path(__file__).resolve().parent


def main() -> int:
    from semirest.app.main_window import open_project_window
    from semirest.app.tour import GuidedTour
    from semirest.core.project.demo import ensure_demo_project

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        project = ensure_demo_project(Path(tmp) / "demo")
        w = open_project_window(project, "screenshots")
        w.resize(1400, 860)
        w.show()
        w.session.open_index(next(i for i, r in enumerate(w.session.records) if r.key == "test/scratch/001"))
        w.session.wait_until_shown()
        tour = GuidedTour(w)
        for step, name in ((0, "demo_tour_welcome"), (2, "demo_tour_blocks")):
            tour.show_step(step)
            for _ in range(5):
                app.processEvents()
            p = OUT / f"{name}.png"
            w.grab().save(str(p))
            print(f"{p.name}: {p.stat().st_size // 1024} KB")
        tour.dismiss()
        w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
