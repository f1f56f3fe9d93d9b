"""Decoded images for the canvas, with the neighbours decoded ahead in a background thread.

Decoding (PNG/TIFF -> RGB -> BGRA for a QImage) is the slow part of switching images; OpenCV
releases the GIL while decoding, so the next and previous images are usually ready before the
inspector presses A or D. Images the studio cannot show come back with an error text, not an
exception.
"""
from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from semirest.core.data.images import ImageReadError, read_image

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


def load_for_display(path: Path) -> LoadedImage:
    try:
        rgb = read_image(path)
    except ImageReadError as exc:
        return LoadedImage(path, None, f"Cannot show {path.name}: {exc.reason}")
    except MemoryError:
        return LoadedImage(path, None, f"Cannot show {path.name}: not enough memory to open it")
    h, w = rgb.shape[:2]
    if h * w > MAX_STUDIO_PIXELS:
        return LoadedImage(path, None, f"Cannot show {path.name}: {w}x{h} pixels is above the studio's limit of 8192x8192; tile or downscale it")
    return LoadedImage(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))


class ImageCache:
    def __init__(self, max_items: int = 5):
        self.max_items = max_items
        self._items: OrderedDict[Path, Future] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-prefetch")

    def _future(self, path: Path) -> Future:
        f = self._items.get(path)
        if f is None:
            f = self._items[path] = self._pool.submit(load_for_display, path)
        self._items.move_to_end(path)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return f

    def get(self, path: Path) -> LoadedImage:
        f = self._items.get(path)
        if f is None or (not f.done() and not f.running()):
            # not started yet: decode here rather than wait behind other prefetches
            if f is not None:
                f.cancel()
            img = load_for_display(path)
            done: Future = Future()
            done.set_result(img)
            self._items[path] = done
            self._items.move_to_end(path)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
            return img
        self._items.move_to_end(path)
        return f.result()

    def prefetch(self, paths) -> None:
        for p in paths:
            self._future(p)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
