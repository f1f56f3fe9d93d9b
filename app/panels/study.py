"""Study mode (paper Fig. 5): a small window with the reference mask of the current image, so the
inspector can copy it with the label type under study while the time is recorded."""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

THUMB = 300


class StudyPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.picture = QLabel("No image")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(THUMB // 2, THUMB // 2)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.picture, 1)
        lay.addWidget(self.caption)
        self.has_reference = False

    def show_reference(self, bgra: np.ndarray | None, mask: np.ndarray | None, name: str, loading: bool = False) -> None:
        """The image, shrunk, with the reference mask in red on top (as in the paper's tool).
        ``loading``: the full image is still being decoded (it is shown when it arrives)."""
        self.has_reference = mask is not None
        if bgra is None:
            self.picture.setPixmap(QPixmap())
            self.picture.setText("Loading…" if loading else "Image cannot be shown")
            self.caption.setText(name)
            return
        h, w = bgra.shape[:2]
        s = THUMB / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = cv2.resize(bgra, size, interpolation=cv2.INTER_AREA)
        small = (small.astype(np.float32) * 0.75).astype(np.uint8)
        if mask is not None:
            m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            if not m.any() and mask.any():  # tiny defects must not vanish in the thumbnail
                m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
            small[m] = (0.35 * small[m] + 0.65 * np.array([40, 40, 255, 255])).astype(np.uint8)
        small = np.ascontiguousarray(small)
        q = QImage(small.data, small.shape[1], small.shape[0], 4 * small.shape[1], QImage.Format.Format_RGB32).copy()
        self.picture.setPixmap(QPixmap.fromImage(q))
        self.caption.setText(f"{name}: reference mask in red" if mask is not None else f"{name}: no reference mask")
