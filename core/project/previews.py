"""Small previews of large images, so that the studio can show an image at once while the full
image is still being decoded (a 4096x4096 PNG takes 150-450 ms to decode; its 1024 px JPEG
preview about 2 ms).

Previews are a disposable cache: JPEG files in a folder next to the project file
(``<project>.previews/``), never next to the user's images, and never in the project database (so
the schema stays as it is). A preview is keyed by the image's absolute path, modification time
and size, so an image changed on disk gets a new preview; its file name also records the full
image size, so labels can be laid out at image resolution before the full image is decoded.
Thread-safe: previews are made in background threads and read in the GUI thread.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from semirest.core.files import write_atomic

PREVIEW_SIDE = 1024  # longest side of a preview, in pixels
PREVIEW_MIN_BYTES = 1 << 20  # smaller image files decode fast enough: they get no preview
JPEG_QUALITY = 85
MEMORY_ONLY_ITEMS = 200  # previews kept when the folder cannot be written (about 100 KB each)


@dataclass(frozen=True)
class Preview:
    image: np.ndarray  # (h, w) gray or (h, w, 3) BGR uint8, at most PREVIEW_SIDE on its long side
    full_hw: tuple[int, int]  # size of the full image


def preview_folder(project_path: str | os.PathLike) -> Path:
    p = Path(project_path)
    return p.with_name(p.name + ".previews")


def needs_preview(path: str | os.PathLike) -> bool:
    """Only files slow to decode get a preview; reading small ones directly is as fast."""
    try:
        return Path(path).stat().st_size >= PREVIEW_MIN_BYTES
    except OSError:
        return False


def shrink(rgb_or_gray: np.ndarray) -> np.ndarray:
    """The preview image of a full image (RGB or gray in, BGR or gray out)."""
    h, w = rgb_or_gray.shape[:2]
    s = min(1.0, PREVIEW_SIDE / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = cv2.resize(rgb_or_gray, size, interpolation=cv2.INTER_AREA) if s < 1.0 else rgb_or_gray
    if small.ndim == 3:
        if np.array_equal(small[..., 0], small[..., 1]) and np.array_equal(small[..., 1], small[..., 2]):
            return np.ascontiguousarray(small[..., 0])  # gray images stay 1 channel (3x smaller)
        return cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    return small


class PreviewStore:
    def __init__(self, folder: str | os.PathLike, writable: bool = True):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._index: dict[str, tuple[str, tuple[int, int]]] = {}  # key -> (file name, full hw)
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self.writable = writable
        if writable:
            try:
                self.folder.mkdir(exist_ok=True)
            except OSError:
                self.writable = False
        if self.folder.is_dir():
            for name in os.listdir(self.folder):
                parsed = self._parse(name)
                if parsed:
                    self._index[parsed[0]] = (name, parsed[1])

    @staticmethod
    def _parse(name: str):
        stem, dot, ext = name.rpartition(".")
        key, _, size = stem.rpartition("_")
        w, _, h = size.partition("x")
        if ext != "jpg" or not key or not (w.isdigit() and h.isdigit()):
            return None
        return key, (int(h), int(w))

    @staticmethod
    def key(path: str | os.PathLike) -> str | None:
        """Path + modification time + size: a changed image gets a new key. None if unreadable."""
        try:
            p = Path(path).resolve()
            st = p.stat()
        except OSError:
            return None
        return hashlib.sha1(f"{p}|{st.st_mtime_ns}|{st.st_size}".encode()).hexdigest()[:24]

    def has(self, path) -> bool:
        k = self.key(path)
        with self._lock:
            return k is not None and k in self._index

    def get(self, path) -> Preview | None:
        k = self.key(path)
        if k is None:
            return None
        with self._lock:
            entry = self._index.get(k)
            data = self._memory.get(k)
        if entry is None:
            return None
        name, hw = entry
        if data is None:
            try:
                data = (self.folder / name).read_bytes()
            except OSError:
                return None
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        return None if img is None else Preview(img, hw)

    def put(self, path, full: np.ndarray) -> None:
        """Store the preview of ``full`` (the decoded image, RGB or gray) for ``path``."""
        k = self.key(path)
        if k is None:
            return
        hw = tuple(int(v) for v in full.shape[:2])
        ok, buf = cv2.imencode(".jpg", shrink(full), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return
        name = f"{k}_{hw[1]}x{hw[0]}.jpg"
        if self.writable:
            try:
                write_atomic(self.folder / name, buf.tobytes())
            except OSError:
                self.writable = False
        with self._lock:
            old = self._index.get(k)
            self._index[k] = (name, hw)
            if not self.writable:
                self._memory[k] = buf.tobytes()
                while len(self._memory) > MEMORY_ONLY_ITEMS:
                    gone, _ = self._memory.popitem(last=False)
                    self._index.pop(gone, None)
        if old and old[0] != name and self.writable:
            (self.folder / old[0]).unlink(missing_ok=True)
