"""Decoded images for the canvas, decoded off the GUI thread.

Decoding (PNG/TIFF -> RGB -> BGRA for a QImage) is the slow part of switching images (150-450 ms
for a 4096x4096 PNG on a shared 2-core machine), so the GUI thread never waits for a large file:

- the neighbours in both directions are read ahead in a background lane, so A/D usually find
  the image decoded;
- the image the inspector jumps to is decoded in its own lane (it does not queue behind
  read-ahead), and meanwhile the canvas shows its preview (``core.project.previews``);
- every decode of a large file also stores its preview, and ``sweep`` makes the missing previews
  one at a time while nothing else is being decoded.

The lanes and jobs are the studio's one background-work pattern (:mod:`semirest.app.workers`).
OpenCV releases the GIL while decoding. Images the studio cannot show come back with an error
text, not an exception.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from semirest.app.workers import Lane, Worker
from semirest.core.data.images import ImageReadError, image_size, read_image
from semirest.core.project.previews import Preview, PreviewStore, needs_preview

# Above this the studio refuses an image (memory: image, mask and overlay for 8k x 8k is ~0.5 GB).
MAX_STUDIO_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class LoadedImage:
    path: Path
    bgra: np.ndarray | None  # (H, W, 4) uint8, ready for a Format_RGB32 QImage
    error: str | None = None

    @property
    def hw(self) -> tuple[int, int] | None:
        return None if self.bgra is None else self.bgra.shape[:2]


def _too_large(path: Path, h: int, w: int) -> LoadedImage:
    return LoadedImage(path, None, f"Cannot show {path.name}: {w}x{h} pixels is above the studio's limit of 8192x8192; tile or downscale it")


def load_for_display(path: Path, previews: PreviewStore | None = None) -> LoadedImage:
    size = image_size(path)  # from the header: a huge image is refused before it is decoded
    if size is not None and size[0] * size[1] > MAX_STUDIO_PIXELS:
        return _too_large(path, size[1], size[0])
    try:
        rgb = read_image(path)
    except ImageReadError as exc:
        return LoadedImage(path, None, f"Cannot show {path.name}: {exc.reason}")
    except MemoryError:
        return LoadedImage(path, None, f"Cannot show {path.name}: not enough memory to open it")
    h, w = rgb.shape[:2]
    if h * w > MAX_STUDIO_PIXELS:
        return _too_large(path, h, w)
    if previews is not None and needs_preview(path) and not previews.has(path):
        previews.put(path, rgb)
    return LoadedImage(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))


def _make_preview(path: Path, previews: PreviewStore) -> None:
    if previews.has(path):
        return
    size = image_size(path)
    if size is not None and size[0] * size[1] > MAX_STUDIO_PIXELS:
        return
    try:
        rgb = read_image(path)
    except (ImageReadError, MemoryError):
        return
    if rgb.shape[0] * rgb.shape[1] <= MAX_STUDIO_PIXELS:
        previews.put(path, rgb)


class ImageCache:
    def __init__(self, max_items: int = 5, previews: PreviewStore | None = None):
        self.max_items = max_items
        self.previews = previews
        self._items: OrderedDict[Path, Worker] = OrderedDict()
        self._background = Lane("image-readahead")
        self._foreground = Lane("image-current")
        self._sweep: Worker | None = None

    def _remember(self, path: Path, f: Worker) -> Worker:
        self._items[path] = f
        self._items.move_to_end(path)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return f

    def lookup(self, path: Path) -> LoadedImage | None:
        """The decoded image if it is ready now; never waits."""
        f = self._items.get(path)
        if f is None or not f.done() or f.cancelled():
            return None
        self._items.move_to_end(path)
        return f.result()

    def request(self, path: Path) -> Worker:
        """The image the inspector wants now: decoded at once in the foreground thread (a
        read-ahead of it that has not started yet is cancelled, not waited for)."""
        f = self._items.get(path)
        if f is not None and (f.done() or f.running()) and not f.cancelled():
            self._items.move_to_end(path)
            return f
        if f is not None:
            f.cancel()
        return self._remember(path, self._foreground.start_worker(Worker(load_for_display, path, self.previews)))

    def get(self, path: Path) -> LoadedImage:
        """Blocking: the decoded image (for small files, scripts and tests)."""
        return self.request(path).result()

    def preview(self, path: Path) -> Preview | None:
        return self.previews.get(path) if self.previews is not None else None

    def prefetch(self, paths) -> None:
        """Read ahead, in this order, in the background thread."""
        for p in paths:
            if p not in self._items:
                self._remember(p, self._background.start_worker(Worker(load_for_display, p, self.previews)))
            # not moved to the end: read-ahead must not push out the image on screen

    @property
    def idle(self) -> bool:
        return all(f.ended() for f in self._items.values()) and (self._sweep is None or self._sweep.ended())

    def sweep(self, todo: deque, deadline: float | None = None) -> bool:
        """Start making the preview of the next image in ``todo`` that needs one (taking it off
        the queue), if nothing else is being decoded; checks files until ``deadline``
        (``time.perf_counter()``). False once the queue is empty."""
        if self.previews is None:
            return False
        if not self.idle:
            return bool(todo)
        while todo:
            if deadline is not None and time.perf_counter() >= deadline:
                return True
            p = todo.popleft()
            if needs_preview(p) and not self.previews.has(p):
                self._sweep = self._background.start_worker(Worker(_make_preview, p, self.previews))
                return True
        return False

    def shutdown(self) -> None:
        for lane in (self._background, self._foreground):
            lane.stop(30000)
