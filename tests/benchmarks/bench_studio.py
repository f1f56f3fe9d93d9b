"""Studio speed on large images: brush-stroke latency per mouse-move event on a 4096x4096 image,
and image-switch time (read ahead with A/D, and a jump to an image not read ahead, with and
without its preview). Prints figures; asserts nothing (run as a script):

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_studio.py

Targets: under 16 ms per mouse-move event, under 200 ms per image switch.
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
N = 5  # images


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
        for i in range(N):
            p = tmp / f"big{i}.png"
            make_image(p, i)
            paths.append(p)
        store = ProjectStore.create(tmp / "bench.sqlite")
        store.add_images([NewImage(p, p.stem) for p in paths])
        w = MainWindow(store, "bench")
        w.show()
        w.session._sweep.stop()  # no background preview making during the measurements
        w.session.wait_until_shown(60)
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

        def switch(go) -> tuple[float, float]:
            """ms until the GUI thread is free again with something on screen (preview or full
            image), and ms until the full-resolution image is shown."""
            t0 = time.perf_counter()
            go()
            app.processEvents()  # includes the repaint
            shown = (time.perf_counter() - t0) * 1000
            assert s.wait_until_shown(60)
            app.processEvents()
            return shown, (time.perf_counter() - t0) * 1000

        def settle():
            time.sleep(1.5)  # an inspector spends seconds per image; read-ahead runs meanwhile
            while not s.cache.idle:
                time.sleep(0.05)

        s = w.session
        results = {}
        s.open_index(0)
        s.wait_until_shown(60)
        for name, steps in (("D (next), read ahead", (s.next,) * (N - 1)), ("A (previous), read ahead", (s.previous,) * (N - 1))):
            r = []
            for go in steps:
                settle()
                r.append(switch(go))
            results[name] = r
        for name, with_previews in (("jump, not read ahead, no preview yet", False), ("jump, not read ahead, preview", True)):
            r = []
            previews = s.cache.previews
            for i in (3, 1, 4, 0, 2):
                settle()
                s.cache._items.clear()  # forget decoded images: the jump must decode
                if not with_previews:
                    s.cache.previews = None
                r.append(switch(lambda i=i: s.open_index(i)))
                s.cache.previews = previews
            results[name] = r
        print("image switch (GUI busy = until the GUI thread is free with the image or its preview on screen;")
        print("              full = until the full-resolution image is shown):")
        for name, r in results.items():
            print(f"  {name:38s} GUI busy {stats([a for a, _ in r])}")
            print(f"  {'':38s} full     {stats([b for _, b in r])}")
            print(f"  {'':38s} each (GUI busy / full): " + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in r))
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
