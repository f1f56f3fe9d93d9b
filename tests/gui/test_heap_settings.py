"""The studio's process heap settings (app/heap.py) as a real window applies them."""
from __future__ import annotations

import gc
import sys
import time
import types

from semirest.app.heap import freeze_long_lived_objects


def _full_collection_ms() -> float:
    t0 = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - t0) * 1000


def test_the_window_freezes_the_long_lived_heap_so_full_collections_skip_it(window):
    # Opening the window moved the imported world (PySide6, torch, timm, the studio) to the
    # permanent generation: hundreds of thousands of objects a full collection no longer walks.
    assert gc.get_freeze_count() > 100_000
    assert freeze_long_lived_objects() is False  # nothing imported since: no second freeze
    # what a full collection walks: the tracked objects outside the permanent generation
    assert len(gc.get_objects()) < gc.get_freeze_count() / 4
    frozen_ms = _full_collection_ms()
    gc.unfreeze()  # the same collection over the whole heap, for comparison
    try:
        whole_ms = _full_collection_ms()
    finally:
        gc.freeze()
    # printed, not asserted (no timed assertions in tests)
    print(f"\n[memory] full collection {frozen_ms:.1f} ms with the heap frozen, {whole_ms:.1f} ms without")
    sys.modules["_semirest_probe_module"] = types.ModuleType("_semirest_probe_module")
    try:
        assert freeze_long_lived_objects() is True  # a new import: its objects are frozen too
    finally:
        del sys.modules["_semirest_probe_module"]
