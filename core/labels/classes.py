"""Defect classes: the names a project's labels carry (scratch, dent, ...), without Qt.

Every label has exactly one class; a project starts with one, ``defect`` (id 1), which always
exists (it may be renamed). Classes are for the inspector and the exports; training treats every
class as "defect" (it learns normal against anomalous). Brush pixels keep their class id as the
pixel value, so at most :data:`MAX_CLASSES` classes fit a project.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_CLASS_ID = 1
DEFAULT_CLASS_NAME = "defect"
MAX_CLASSES = 255  # brush pixels store the class id in one byte (0: unlabelled)
MAX_CLASS_NAME = 64

# Colours of new classes in order (keys 1-9 pick the first nine): distinct on grey images.
PALETTE = ("#ff4040", "#40a0ff", "#ffc000", "#40e080", "#c060ff", "#ff80c0", "#00e0e0", "#a0a040", "#ff8040")

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class ClassNameError(ValueError):
    """A class name or colour the project does not store; the message says what is allowed."""


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    colour: str  # "#rrggbb"
    position: int  # order in the class list (keys 1-9, YOLO class indices)


def check_class_name(name) -> str:
    """The name, stripped, or :class:`ClassNameError`: names are non-empty, at most 64 characters,
    without spaces or control characters (DOTA and YOLO files separate fields by spaces)."""
    if not isinstance(name, str):
        raise ClassNameError(f"a class name is text, not {type(name).__name__}")
    s = name.strip()
    if not s:
        raise ClassNameError("a class name cannot be empty")
    if len(s) > MAX_CLASS_NAME:
        raise ClassNameError(f"class name {s[:20]!r}... is longer than {MAX_CLASS_NAME} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in s):
        raise ClassNameError(f"class name {s!r} has a space or control character; use - or _ instead "
                             "(DOTA and YOLO files separate fields by spaces)")
    return s


def class_name_from_label(label) -> str:
    """Another tool's label text as a class name: spaces become ``_``; an empty or unusable label
    is the default class."""
    if not isinstance(label, str):
        return DEFAULT_CLASS_NAME
    s = "_".join("".join(ch for ch in label if ch.isprintable()).split())
    try:
        return check_class_name(s)
    except ClassNameError:
        return DEFAULT_CLASS_NAME


def check_colour(colour) -> str:
    """``#rrggbb`` (lower case) or :class:`ClassNameError`."""
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        raise ClassNameError(f"colour {colour!r:.20} is not #rrggbb")
    return colour.lower()
