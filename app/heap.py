"""Process heap settings for the studio: where large arrays are allocated, and which objects the
garbage collector skips (the memory bank is `semirest.core.memory`; this is the process heap).

Each image switch allocates masks and overlays of image size (16-64 MB for 4096x4096) and frees
those of images left behind. glibc raises its mmap threshold after such frees, so later large
arrays come from the heap and ``np.zeros`` must clear them page by page: going back to an image
took 70-270 ms instead of 7 ms on the shared 2-core machine. A fixed 8 MB threshold keeps such
arrays on fresh, lazily zeroed pages (and gives their memory back to the system when freed); a
lower one also moved Qt's per-repaint buffers to mmap and slowed brush strokes.

CPython's cyclic garbage collector holds the GIL, so a full collection stalls the GUI thread
whichever thread triggers it. With PySide6, torch and timm loaded the studio tracks ~450,000
objects and a full collection takes ~200 ms (one contended core; 339 ms seen inside the test
suite, during a training run's start): a visible freeze of the canvas or the live heatmap. Nearly
all of those objects (modules, classes, Qt wrappers, the window) live as long as the process, so
once the window is built they move to the permanent generation (``gc.freeze``), which collections
skip; objects created afterwards are collected as usual.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_ARRAY_BYTES = 8 << 20  # image-size arrays (16-64 MB), not the small temporaries of painting

_done = False


def keep_large_arrays_on_fresh_pages() -> bool:
    """Set glibc's mmap threshold once; a no-op (False) on other platforms or C libraries."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(M_MMAP_THRESHOLD, LARGE_ARRAY_BYTES))
    except (OSError, AttributeError):
        return False
    return _done


_modules_at_freeze = 0


def freeze_long_lived_objects() -> bool:
    """``gc.freeze()`` when modules were imported since the last call (returns whether it froze).

    Frozen objects are never examined by the cyclic collector again; freezing only after new
    imports (start-up, not every window a test opens) keeps that to the long-lived heap.
    """
    global _modules_at_freeze
    if len(sys.modules) == _modules_at_freeze:
        return False
    gc.freeze()
    _modules_at_freeze = len(sys.modules)
    return True
