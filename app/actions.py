"""Every command of the studio with its shortcut, in one table (the shortcuts of issues 5 and 6)."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QAction, QActionGroup, QKeySequence


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple[str, ...] = ()
    checkable: bool = False
    group: str | None = None
    tip: str = ""
    short: str = ""  # the toolbar's label where the menu's text is too long for a 1024 px window


# toolbar labels: the full texts with their shortcuts took 1,139 px, more than a 1024 px window
SHORT = {"brush": "Brush B", "eraser": "Eraser E", "block8": "8×8 K", "block16": "16×16 L", "box": "Box R",
         "previous_image": "◀ Prev A", "next_image": "Next D ▶", "zoom_fit": "Fit 0", "reference": "Reference G", "study": "Study F2"}


ACTION_SPECS = (
    ActionSpec("brush", "Brush", ("B",), True, "tools", "Paint pixel labels"),
    ActionSpec("eraser", "Eraser", ("E",), True, "tools", "Erase pixel labels"),
    ActionSpec("block8", "Blocks 8×8", ("K",), True, "tools", "Toggle 8x8 blocks: click or drag"),
    ActionSpec("block16", "Blocks 16×16", ("L",), True, "tools", "Toggle 16x16 blocks: click or drag"),
    ActionSpec("box", "Rotated box", ("R",), True, "tools", "Draw, move, resize and rotate boxes"),
    ActionSpec("brush_smaller", "Smaller brush", ("[",)),
    ActionSpec("brush_bigger", "Bigger brush", ("]",)),
    ActionSpec("rotate_minus1", "Rotate box −1°", ("Z",)),
    ActionSpec("rotate_plus1", "Rotate box +1°", ("X",)),
    ActionSpec("rotate_minus15", "Rotate box −15°", ("Shift+Z",)),
    ActionSpec("rotate_plus15", "Rotate box +15°", ("Shift+X",)),
    ActionSpec("delete_box", "Delete box", ("Delete",)),
    *(ActionSpec(f"class_{n}", f"Class {n}", (str(n),), tip=f"The next labels get class {n} of Edit ▸ Classes") for n in range(1, 10)),
    ActionSpec("classes", "Classes…", tip="Add, rename and colour the project's defect classes"),
    ActionSpec("previous_image", "Previous image", ("A",)),
    ActionSpec("next_image", "Next image", ("D",)),
    ActionSpec("next_unlabelled", "Next unlabelled image", ("U",), tip="The next image without labels, in the list's order"),
    ActionSpec("next_above_threshold", "Next image above threshold", ("S",),
               tip="The next image whose score is above the Inference view's threshold, in the list's order"),
    ActionSpec("find", "Filter the image list", ("Ctrl+F",), tip="Type part of an image name; Enter or Esc goes back to the image"),
    ActionSpec("go_to_image", "Go to image…", ("Ctrl+G",), tip="Type the image's number (as in 'image N/M'), Enter"),
    ActionSpec("undo", "Undo", ("Ctrl+Z",)),
    ActionSpec("redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y")),
    ActionSpec("zoom_in", "Zoom in", ("+", "=")),
    ActionSpec("zoom_out", "Zoom out", ("-",)),
    ActionSpec("zoom_fit", "Fit to window", ("0",), tip="Show the whole image; it follows the window's size until you zoom"),
    ActionSpec("keep_zoom", "Keep zoom", (), True, None, "Switching images keeps the zoom and centre of a zoomed view"),
    ActionSpec("reference", "Show reference mask", ("G",), True, None, "Overlay the reference (ground-truth) mask in green"),
    ActionSpec("study", "Study mode", ("F2",), True, None, "Show the reference mask in a side window to copy it"),
    ActionSpec("train", "Start training", ("Ctrl+T",), tip="Train with the Train panel's current choices"),
    ActionSpec("retrain", "Retrain", tip="A new run with the current labels and the last run's settings"),
    ActionSpec("cancel_training", "Cancel training"),
    ActionSpec("clear_cache", "Clear cache", tip="Remove the project's preparation cache (PCFs, bank, k-NN rows, synthetic pool); the next run recomputes it"),
    ActionSpec("heatmap", "Show heatmap", ("H",), tip="Overlay the anomaly heatmap of the chosen run"),
    ActionSpec("propose_boxes", "Propose boxes", ("P",), tip="Rotated-box suggestions from the thresholded heatmap"),
    ActionSpec("sort_by_score", "Most anomalous first", tip="Sort the image list by the chosen run's score"),
    ActionSpec("export_detector", "Export detector…", tip="The chosen finished run as one ONNX file for the line (runs without torch)"),
    ActionSpec("open", "Open project…", ("Ctrl+O",)),
    ActionSpec("add_folder", "Add image folder…"),
    ActionSpec("export", "Export…", ("Ctrl+E",)),
    ActionSpec("save_copy", "Save a copy…", tip="One self-contained project file with every saved edit"),
    ActionSpec("quit", "Quit", ("Ctrl+Q",)),
)


def build_actions(parent) -> dict[str, QAction]:
    actions, groups = {}, {}
    for spec in ACTION_SPECS:
        a = QAction(spec.text, parent)
        if spec.short or spec.name in SHORT:
            a.setIconText(spec.short or SHORT[spec.name])
        a.setObjectName(f"action_{spec.name}")
        if spec.shortcuts:
            a.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
            a.setToolTip(f"{spec.tip or spec.text} ({spec.shortcuts[0]})")
        a.setCheckable(spec.checkable)
        if spec.group:
            groups.setdefault(spec.group, QActionGroup(parent)).addAction(a)
        parent.addAction(a)  # shortcuts work even when the action is in no visible menu
        actions[spec.name] = a
    return actions


def on_triggered(action: QAction, fn) -> None:
    """Connect ``fn()`` to ``action.triggered(bool checked)``, dropping ``checked`` explicitly
    (a default-valued first parameter of ``fn`` would otherwise receive it)."""
    action.triggered.connect(lambda checked=False: fn())
