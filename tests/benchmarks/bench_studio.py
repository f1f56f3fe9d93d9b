"""Studio speed on large images: brush-stroke latency per mouse-move event on a 4096x4096 image,
and image-switch time (read ahead with A/D, and a jump to an image not read ahead, with and
without its preview). Prints figures; asserts nothing (run as a script):

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_studio.py

Targets: under 16 ms per mouse-move event, under 200 ms per image switch.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/bench_studio.py list

measures the image list instead: module import time; open time (window built, first image shown),
idle CPU over 20 s (all threads of the process) at 500, 5,000 and 50,000 images (rows pointing to
three small files cut from a real image); the worst GUI-thread stall (10 ms QTimer heartbeat)
while a tiny training runs and scores with the list sorted by score. Targets: open under 5 s and
idle under 1 % of a core at 50,000 images, worst stall under 100 ms.
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


def _list_images(folder: Path) -> list[Path]:
    """Three 96x96 PNGs cut from a real MVTec image where the data is there, else textured noise."""
    from semirest.core.data.images import read_image, write_png

    folder.mkdir(parents=True, exist_ok=True)
    real = sorted(Path(__file__).resolve().parents[3].glob("shared/data/mvtec/*/test/*/000.png"))[:1]
    base = read_image(real[0]) if real else np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8)
    out = []
    for i in range(3):
        p = folder / f"cut{i}.png"
        write_png(p, np.ascontiguousarray(base[i * 96:(i + 1) * 96, i * 96:(i + 1) * 96]))
        out.append(p)
    return out


def _cpu_over(app, seconds: float) -> float:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    c0, t0 = time.process_time(), time.perf_counter()
    loop.exec()
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def bench_list() -> None:
    t = time.perf_counter()
    import importlib

    from semirest.app.main_window import MainWindow
    from semirest.core.project.store import NewImage, ProjectStore

    importlib.import_module("semirest.app.panels.train_dock")  # torch: else the first window imports it

    print(f"import of the studio's modules (Qt, numpy, torch through the Train dock): {time.perf_counter() - t:.2f} s")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    kinds = ("crack", "scratch_neck", "thread_top", "good")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = _list_images(tmp / "img")
        for n in (500, 5_000, 50_000):
            path = tmp / f"list{n}.sqlite"
            with ProjectStore.create(path) as store:
                store.add_images([NewImage(files[i % 3], f"test/{kinds[i % 4]}/{i:05d}") for i in range(n)])
            t = time.perf_counter()
            w = MainWindow(ProjectStore.open(path), "bench")
            w.show()
            w.session.wait_until_shown(60)
            app.processEvents()
            opened = time.perf_counter() - t
            idle = _cpu_over(app, 20.0)
            sweeping = w.session._sweep.isActive()
            print(f"{n:6d} images: open to the first image {opened:5.2f} s; idle CPU over 20 s {idle * 100:5.2f} % of a core"
                  + (" (preview sweep still checking files)" if sweeping else ""))
            w.close()
        bench_training_stall(app, tmp)


def bench_training_stall(app, tmp: Path) -> None:
    from PySide6.QtCore import QTimer

    from semirest.app.main_window import MainWindow
    from semirest.core.data.demo import make_demo_dataset
    from semirest.core.project.formats import images_from_mvtec
    from semirest.core.project.store import ProjectStore
    from tests.gui.test_train_panel import TINY

    root = tmp / "demo"
    make_demo_dataset(root, seed=0, n_train=6, n_test_good=2, n_per_defect=1, size=64)
    path = tmp / "demo.sqlite"
    with ProjectStore.create(path) as store:
        store.add_images(images_from_mvtec(root, "demo", split="all"))
    w = MainWindow(ProjectStore.open(path), "bench")
    w.show()
    w.session.wait_until_shown(60)
    panel = w.train_panels.training
    panel.overrides = TINY + ["train.steps=20"]
    panel.device.setCurrentText("cpu")
    w.image_list.sort_by_score()
    gaps, last = [], [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    heart = QTimer()
    heart.setInterval(10)
    heart.timeout.connect(beat)
    done = []
    panel.scoring_done.connect(lambda _run: done.append(1))
    heart.start()
    t0 = time.perf_counter()
    panel.start()
    while not done and time.perf_counter() - t0 < 300:
        app.processEvents()
        time.sleep(0.001)
    heart.stop()
    worst = max(gaps) * 1000 - 10 if gaps else float("nan")
    print(f"training + scoring ({time.perf_counter() - t0:.0f} s, list sorted by score): worst GUI-thread stall "
          f"{worst:.0f} ms beyond the 10 ms heartbeat; p99 {sorted(gaps)[int(0.99 * (len(gaps) - 1))] * 1000 - 10:.0f} ms"
          + ("" if done else " (scoring did not finish in 300 s)"))
    w.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["list"]:
        bench_list()
        sys.exit(0)
    sys.exit(main())
