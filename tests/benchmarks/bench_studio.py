"""Studio speed on large images: brush-stroke latency per mouse-move event on a 4096x4096 image,
and image-switch time. Prints figures; asserts nothing (run as a script):

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_studio.py

Targets (issue 5): under 16 ms per mouse-move event, under 200 ms per image switch.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

SIDE = 4096


def make_image(path: Path, seed: int) -> None:
    from semirest.core.data.images import write_png

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    img = 128 + 40 * np.sin(x / 97.0 + seed) * np.cos(y / 131.0) + rng.normal(0, 6, (SIDE, SIDE)).astype(np.float32)
    write_png(path, img.clip(0, 255).astype(np.uint8))


def stats(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    return f"median {statistics.median(ms):6.2f} ms   p95 {p95:6.2f} ms   max {ms[-1]:6.2f} ms   (n={len(ms)})"


def stroke(app, canvas, points) -> tuple[list[float], float]:
    vp = canvas.viewport()
    per_move = []
    p0 = canvas.mapFromScene(QPointF(*points[0]))
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p0)
    app.processEvents()
    for x, y in points[1:]:
        p = QPointF(canvas.mapFromScene(QPointF(x, y)))
        ev = QMouseEvent(QEvent.Type.MouseMove, p, QPointF(vp.mapToGlobal(p.toPoint())), Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        t = time.perf_counter()
        QApplication.sendEvent(vp, ev)
        app.processEvents()  # includes the repaint of the changed region
        per_move.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    pe = canvas.mapFromScene(QPointF(*points[-1]))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pe)
    app.processEvents()
    release = (time.perf_counter() - t) * 1000
    return per_move, release


def main() -> int:
    from semirest.app.main_window import MainWindow
    from semirest.core.project.store import NewImage, ProjectStore

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(4):
            p = tmp / f"big{i}.png"
            make_image(p, i)
            paths.append(p)
        store = ProjectStore.create(tmp / "bench.sqlite")
        store.add_images([NewImage(p, p.stem) for p in paths])
        w = MainWindow(store, "bench")
        w.show()
        app.processEvents()
        c = w.canvas
        print(f"SemiREST Studio benchmark: {SIDE}x{SIDE} images, window {w.width()}x{w.height()}, Qt platform {app.platformName()}")
        c.set_tool(w.tools["brush"])
        c.set_brush_size(32)
        t = np.linspace(0, 1, 301)
        for label, zoom in (("fit to window", None), ("100% zoom", 1.0)):
            if zoom is None:
                c.fit()
                pts = [(400 + 3200 * s, 2000 + 1200 * np.sin(6 * s)) for s in t]
            else:
                c.set_zoom(zoom)
                c.centerOn(2048, 2048)
                app.processEvents()
                pts = [(1700 + 700 * s, 2048 + 250 * np.sin(6 * s)) for s in t]
            moves, release = stroke(app, c, pts)
            print(f"brush stroke, {label:14s}: per mouse move {stats(moves)}; stroke end (undo record + commit) {release:6.1f} ms")
        undo_t = time.perf_counter()
        w.session.undo()
        app.processEvents()
        print(f"undo of that stroke: {(time.perf_counter() - undo_t) * 1000:.1f} ms")

        cold, warm = [], []
        for i in range(1, 4):  # first visits; the neighbour was prefetched while the user worked
            time.sleep(1.5)  # an inspector spends seconds per image; prefetch runs meanwhile
            t0 = time.perf_counter()
            w.session.next()
            app.processEvents()
            warm.append((time.perf_counter() - t0) * 1000)
        w.session.cache._items.clear()
        for i in (2, 1, 0):
            t0 = time.perf_counter()
            w.session.open_index(i)
            app.processEvents()
            cold.append((time.perf_counter() - t0) * 1000)
        print(f"image switch, next image prefetched : {stats(warm)}")
        print(f"image switch, not cached (decode)   : {stats(cold)}")
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
