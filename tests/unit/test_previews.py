"""The preview cache: keyed so a changed image never shows a stale preview, kept out of the
image folder, and usable (in memory) when its folder cannot be written."""
import os

import numpy as np

from semirest.core.data.images import write_png
from semirest.core.project.previews import PREVIEW_SIDE, PreviewStore, preview_folder


def test_preview_roundtrip_and_stale_after_change(tmp_path):
    img = tmp_path / "a.png"
    gray = np.random.default_rng(0).integers(0, 256, (2000, 3000), dtype=np.uint8)
    write_png(img, gray)
    store = PreviewStore(preview_folder(tmp_path / "p.sqlite"))
    assert store.folder == tmp_path / "p.sqlite.previews"
    assert store.get(img) is None
    store.put(img, gray)
    p = PreviewStore(store.folder).get(img)  # found again by a new session
    assert p.full_hw == (2000, 3000) and p.image.shape == (683, PREVIEW_SIDE)
    assert p.image.ndim == 2  # gray stays one channel
    write_png(img, gray[:1000])
    os.utime(img, ns=(1, 1))
    assert store.get(img) is None  # the image changed: the old preview is not used


def test_memory_only_when_folder_not_writable(tmp_path):
    img = tmp_path / "b.png"
    rgb = np.zeros((300, 200, 3), np.uint8)
    rgb[..., 0] = 200
    write_png(img, rgb)
    store = PreviewStore(tmp_path / "cache", writable=False)
    store.put(img, rgb)
    assert not (tmp_path / "cache").exists()
    p = store.get(img)
    assert p.full_hw == (300, 200) and p.image.shape == (300, 200, 3)
    assert abs(int(p.image[0, 0, 2]) - 200) < 8  # stored BGR: red is the last channel
