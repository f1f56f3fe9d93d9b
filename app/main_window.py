"""The studio's main window: layout and wiring only (tools, session, panels do the work)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QSize, Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication, QDockWidget, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox, QToolBar, QWidget

from semirest.app.actions import build_actions, on_triggered
from semirest.app.canvas.activity import LabelingActivity
from semirest.app.focus import hand_back_keys_in
from semirest.app.canvas.tools.blocks import BlockTool
from semirest.app.canvas.tools.box import BoxTool
from semirest.app.canvas.tools.brush import BrushTool
from semirest.app.canvas.view import CanvasView
from semirest.app.heap import freeze_long_lived_objects, keep_large_arrays_on_fresh_pages
from semirest.app.panels.image_list import ImageListPanel, format_seconds
from semirest.app.panels.study import StudyPanel
from semirest.app.screen_fit import fit_to_screen, scrollable
from semirest.app.session import LabelingSession
from semirest.app.settings import KEEP_ZOOM, read_bool, write_bool
from semirest.core.data.datasets import DatasetLayoutError
from semirest.core.data.images import ImageReadError
from semirest.core.project.formats import FORMATS, ExportTargetNotEmpty, check_new_images, export, images_from_folder
from semirest.core.project.store import ProjectError, ProjectStore

# image list, canvas (about 1000 px wide) and the Train panel side by side; smaller screens get less
PREFERRED_SIZE = QSize(1760, 900)


class MainWindow(QMainWindow):
    classes_dialog = None  # the open Edit ▸ Classes dialog

    def __init__(self, store: ProjectStore, annotator: str, clock=time.monotonic):
        super().__init__()
        keep_large_arrays_on_fresh_pages()
        self.setWindowTitle(f"SemiREST Studio — {store.path.name}" + (" [read-only]" if store.read_only else ""))
        fit_to_screen(self, PREFERRED_SIZE)
        self._placed_size = self.size()  # refined in the first showEvent unless resized before
        self.canvas = CanvasView()
        self.setCentralWidget(self.canvas)
        self.session = LabelingSession(store, self.canvas, annotator, clock)
        self.tools = {
            "brush": BrushTool(self.canvas),
            "eraser": BrushTool(self.canvas, erase=True),
            "block8": BlockTool(self.canvas, 8),
            "block16": BlockTool(self.canvas, 16),
            "box": BoxTool(self.canvas),
        }
        self.actions_ = build_actions(self)
        self._build_docks()
        self._build_toolbar_and_menus()
        self._build_status_bar()
        self._wire()
        self.ask_unsaved_on_close = self._ask_unsaved_on_close  # tests replace the dialog
        self._closed = False
        tracker = self.session.tracker
        self.activity = LabelingActivity(self, self.canvas, tracker.note_input, tracker.note_elsewhere)
        QApplication.instance().installEventFilter(self.activity)
        self.actions_["brush"].trigger()
        self.session.open_index(0)
        self._clock = QTimer(self)
        self._clock.setInterval(500)
        self._clock.timeout.connect(self._tick)
        self._clock.start()
        freeze_long_lived_objects()  # full garbage collections would otherwise stall this thread ~200 ms

    # -- layout ---------------------------------------------------------------------------------
    def _build_docks(self) -> None:
        self.image_list = ImageListPanel(self.session)
        self.list_dock = QDockWidget("Images", self)
        self.list_dock.setObjectName("images_dock")
        self.list_dock.setWidget(self.image_list)
        self.list_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.list_dock)
        self.study = StudyPanel()
        self.study_dock = QDockWidget("Study mode: reference", self)
        self.study_dock.setObjectName("study_dock")
        self.study_dock.setWidget(self.study)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.study_dock)
        self.splitDockWidget(self.study_dock, self.list_dock, Qt.Orientation.Vertical)
        self.study_dock.hide()
        self.train_panels = make_train_dock(self.session, self.canvas)
        self.train_dock = QDockWidget("Train", self)
        self.train_dock.setObjectName("train_dock")
        self.train_dock.setWidget(scrollable(self.train_panels))
        self.train_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.train_dock)
        self._size_docks()

    def _size_docks(self) -> None:
        """Dock widths from the window's width: the canvas keeps about half of a small window
        (at 1024 px, docks of 380 and 330 px left it 314)."""
        self.resizeDocks([self.list_dock, self.train_dock], [max(200, min(380, round(self.width() * 0.22))),
                         max(300, min(330, round(self.width() * 0.3)))], Qt.Orientation.Horizontal)

    def _build_toolbar_and_menus(self) -> None:
        a = self.actions_
        bar = QToolBar("Tools", self)
        bar.setObjectName("tools_toolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        # short labels (the actions' icon texts, see actions.SHORT): every button fits a 1024 px
        # window; the menus keep the full names, the tooltips name the shortcut
        for name in ("brush", "eraser", "block8", "block16", "box"):
            bar.addAction(a[name])
        bar.addSeparator()
        for name in ("undo", "redo", None, "previous_image", "next_image", None, "zoom_fit", "reference", "study"):
            bar.addSeparator() if name is None else bar.addAction(a[name])
        self.addToolBar(bar)
        m = self.menuBar()
        groups = {
            "&File": ("open", "add_folder", "export", "save_copy", None, "quit"),
            "&Edit": ("undo", "redo", None, "delete_box", "rotate_minus1", "rotate_plus1", "rotate_minus15", "rotate_plus15",
                      None, "classes"),
            "&Tools": ("brush", "eraser", "brush_smaller", "brush_bigger", None, "block8", "block16", None, "box"),
            "&View": ("zoom_in", "zoom_out", "zoom_fit", "keep_zoom", None, "reference", "study", None, "previous_image",
                      "next_image", "next_unlabelled", "next_above_threshold", "go_to_image", "find"),
            "T&raining": ("train", "retrain", "cancel_training", "clear_cache", None, "heatmap", "propose_boxes", "sort_by_score", None, "export_detector"),
        }
        for title, names in groups.items():
            menu = m.addMenu(title)
            for n in names:
                menu.addSeparator() if n is None else menu.addAction(a[n])

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        f = QFont()
        f.setPointSize(10)
        self.status_labels = {}
        for key, stretch in (("class", 0), ("tool", 0), ("zoom", 0), ("cursor", 0), ("image", 0), ("time", 0), ("save", 0)):
            lab = QLabel()
            lab.setFont(f)
            lab.setContentsMargins(6, 0, 6, 0)
            sb.addPermanentWidget(lab, stretch)
            self.status_labels[key] = lab

    def _wire(self) -> None:
        a, c, s = self.actions_, self.canvas, self.session
        for name, tool in self.tools.items():
            on_triggered(a[name], lambda t=tool: self._use_tool(t))
        on_triggered(a["brush_smaller"], lambda: c.grow_brush(-1))
        on_triggered(a["brush_bigger"], lambda: c.grow_brush(+1))
        box = self.tools["box"]
        for name, deg in (("rotate_minus1", -1), ("rotate_plus1", 1), ("rotate_minus15", -15), ("rotate_plus15", 15)):
            on_triggered(a[name], lambda d=deg: self._after_edit(c.edit_or_queue(lambda: box.rotate_selected(d), f"Rotate box {d:+d}°")))
        on_triggered(a["delete_box"], lambda: self._after_edit(c.edit_or_queue(box.delete_selected, "Delete box")))
        for n in range(1, 10):
            on_triggered(a[f"class_{n}"], lambda n=n: self._pick_class(n))
        on_triggered(a["classes"], self._edit_classes)
        on_triggered(a["previous_image"], lambda: self._open_list_row(self.image_list.step(-1)))
        on_triggered(a["next_image"], lambda: self._open_list_row(self.image_list.step(+1)))
        on_triggered(a["next_unlabelled"], self._next_unlabelled)
        on_triggered(a["next_above_threshold"], self._next_above_threshold)
        on_triggered(a["find"], self.image_list.focus_filter)
        on_triggered(a["go_to_image"], self.image_list.focus_go_to)
        on_triggered(a["undo"], lambda: self._after_edit(c.edit_or_queue(s.undo, "Undo")))
        on_triggered(a["redo"], lambda: self._after_edit(c.edit_or_queue(s.redo, "Redo")))
        on_triggered(a["zoom_in"], c.zoom_in)
        on_triggered(a["zoom_out"], c.zoom_out)
        on_triggered(a["zoom_fit"], c.fit)
        a["keep_zoom"].setChecked(read_bool(KEEP_ZOOM))
        c.keep_zoom = a["keep_zoom"].isChecked()
        a["keep_zoom"].toggled.connect(self._set_keep_zoom)
        a["reference"].toggled.connect(s.set_reference_visible)
        a["study"].toggled.connect(self._set_study_mode)
        # the dock's own close button hides it without the action: F2 stayed checked and then
        # needed two presses to open the dock again
        self.study_dock.visibilityChanged.connect(
            lambda visible: a["study"].setChecked(False) if not visible and self.study_dock.isHidden() else None)
        on_triggered(a["open"], self._open_other)
        on_triggered(a["add_folder"], self._add_folder)
        on_triggered(a["export"], self._export)
        on_triggered(a["save_copy"], self._save_copy)
        on_triggered(a["quit"], self.close)
        t = self.train_panels
        on_triggered(a["train"], t.start)
        on_triggered(a["retrain"], t.retrain)
        on_triggered(a["cancel_training"], t.cancel)
        on_triggered(a["clear_cache"], t.clear_cache)
        on_triggered(a["heatmap"], t.toggle_heatmap)
        on_triggered(a["propose_boxes"], t.propose)
        on_triggered(a["export_detector"], t.export_detector)
        on_triggered(a["sort_by_score"], self.image_list.sort_by_score)
        t.message.connect(self._show_message)
        t.scores_changed.connect(self.image_list.set_scores)
        t.box_review_started.connect(a["box"].trigger)
        s.image_changed.connect(self._image_changed)
        s.summary_changed.connect(self.image_list.model.refresh)
        s.summary_changed.connect(lambda _id: self.image_list.update_progress())
        s.save_state_changed.connect(self._update_status)
        s.message.connect(self._show_message)
        c.message.connect(self._show_message)
        self.image_list.image_chosen.connect(s.open_index)
        c.zoom_changed.connect(lambda _z: self._update_status())
        c.tool_state_changed.connect(self._update_status)
        c.cursor_moved.connect(self._show_cursor)
        hand_back_keys_in(self.train_panels, c)  # Enter / Esc in the Steps box etc.
        hand_back_keys_in(self.image_list.filter_bar, c)
        self._show_class_colours()

    # -- reactions ------------------------------------------------------------------------------
    def _show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 6000)

    def _pick_class(self, n: int) -> None:
        """Key n: the n-th class of the list labels from now on."""
        classes = self.session.store.classes()
        if n > len(classes):
            self._show_message(f"No class {n}: the project has {len(classes)}; add one in Edit ▸ Classes…")
            return
        self.session.set_label_class(classes[n - 1].id)
        self._update_status()

    def _edit_classes(self) -> None:
        from semirest.app.panels.classes import ClassesDialog

        dialog = ClassesDialog(self.session.store, self)
        dialog.classes_changed.connect(self._update_status)
        dialog.classes_changed.connect(self._show_class_colours)
        self.classes_dialog = dialog  # reachable while open (tests)
        dialog.exec()
        self.classes_dialog = None

    def _show_class_colours(self) -> None:
        """Labels on the canvas and the image list's class chips in their class's colour and name."""
        try:
            classes = self.session.store.classes()
        except ProjectError:
            return
        self.canvas.set_class_colours({k.id: k.colour for k in classes}, {k.id: k.name for k in classes})
        self.image_list.model.set_classes(classes)

    def _show_class(self) -> None:
        lab = self.status_labels["class"]
        try:
            classes = self.session.store.classes()
        except ProjectError:
            return
        n, k = next(((n, k) for n, k in enumerate(classes, 1) if k.id == self.session.label_class), (1, classes[0]))
        lab.setText(f"class {n}: {k.name}")
        lab.setStyleSheet(f"QLabel {{ border: none; border-left: 10px solid {k.colour}; padding-left: 4px; }}")
        lab.setToolTip("Keys 1–9 pick the class of the next label (Edit ▸ Classes…)")

    def _use_tool(self, tool) -> None:
        self.canvas.set_tool(tool)
        self._update_status()

    def _after_edit(self, result) -> None:
        self._update_status()

    def _set_keep_zoom(self, on: bool) -> None:
        self.canvas.keep_zoom = on
        write_bool(KEEP_ZOOM, on)

    def _set_study_mode(self, on: bool) -> None:
        self.study_dock.setVisible(on)
        self._image_changed(self.session.index)

    def _image_changed(self, index: int) -> None:
        if index < 0:
            return
        self.image_list.select_row(index)
        self.train_panels.image_changed()
        rec = self.session.record
        if self.study_dock.isVisible():
            loaded = self.session.loaded
            self.study.show_reference(loaded.bgra if loaded else None, self.session.reference_mask, rec.key, loading=self.canvas.loading)
        self._update_status()

    def _open_list_row(self, row: int | None) -> None:
        """A / D, U, S: open a row found in the image list's order (None: nothing found)."""
        if row is not None and row != self.session.index:
            self.session.open_index(row)

    def _next_unlabelled(self) -> None:
        row = self.image_list.next_unlabelled()
        if row is None:
            self._show_message("Every image in the list is labelled.")
        self._open_list_row(row)

    def _next_above_threshold(self) -> None:
        threshold = self.train_panels.score_threshold()
        if threshold is None:
            self._show_message("No scores to go by: choose a run in the Inference view.")
            return
        row = self.image_list.next_scored_above(threshold)
        if row is None:
            self._show_message(f"No image in the list scores above the threshold ({threshold:.3f}).")
        self._open_list_row(row)

    def _show_cursor(self, x: int, y: int) -> None:
        doc = self.canvas.document
        inside = doc is not None and 0 <= x < doc.hw[1] and 0 <= y < doc.hw[0]
        self.status_labels["cursor"].setText(f"x {x}, y {y}" if inside else "")

    def _tick(self) -> None:
        rec = self.session.record
        if rec is not None:
            self.image_list.model.refresh_time(rec.id)  # one cell, only when its text changed
            self._update_time()

    def _update_time(self) -> None:
        rec = self.session.record
        if rec is None:
            return
        s = self.session
        by_type = s.seconds_by_type(rec.id)
        detail = "  ".join(f"{t} {format_seconds(v)}" for t, v in by_type.items() if v >= 0.05)
        state = f"● timing {s.tracker.label_type}" if s.tracker.running else "paused"
        total = s.seconds(rec.id)
        self.status_labels["time"].setText(f"{state} {format_seconds(total) or '0.0 s'}" + (f"  ({detail})" if detail else ""))

    def _update_status(self) -> None:
        c, s, lab = self.canvas, self.session, self.status_labels
        self._show_class()
        lab["tool"].setText(c.tool.status() if c.tool else "")
        lab["zoom"].setText(f"zoom {c.zoom * 100:.0f}%")
        n = len(s.records)
        rec = s.record
        lab["image"].setText(f"image {s.index + 1}/{n}" + (f"  {rec.key}" if rec else "") if n else "no images: File ▸ Add image folder…")
        if s.store.read_only:
            lab["save"].setText("READ-ONLY")
            lab["save"].setToolTip(s.store.read_only_reason)
            lab["save"].setStyleSheet("color: white; background: #a33; padding: 1px 6px;")
        elif s.has_unsaved:
            lab["save"].setText("NOT SAVED – retrying")
            lab["save"].setStyleSheet("color: white; background: #c50; padding: 1px 6px;")
            lab["save"].setToolTip(s.save_error or "")
        else:
            lab["save"].setText("saved ✓")
            lab["save"].setStyleSheet("color: #2a8a4a;")
        self._update_time()

    # -- window events --------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._placed_size is not None:  # the window manager's frame is known now: fit it in too
            placed, self._placed_size = self._placed_size, None
            if self.size() == placed and not self.screen().availableGeometry().contains(self.frameGeometry()):
                fit_to_screen(self, PREFERRED_SIZE)
            if self.size() != placed:
                self._size_docks()

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.ActivationChange:
            self.session.tracker.set_active(self.isActiveWindow())
        super().changeEvent(event)

    def closeEvent(self, event) -> None:
        if self._closed:
            event.accept()
            return
        if not self.session.close() and not self.ask_unsaved_on_close():
            event.ignore()
            return
        self._closed = True
        QApplication.instance().removeEventFilter(self.activity)
        self._clock.stop()
        self.train_panels.shutdown()
        self.session.shutdown()
        event.accept()

    def _ask_unsaved_on_close(self) -> bool:
        """True to close although edits are unsaved (the project is locked or read-only)."""
        while True:
            box = QMessageBox(QMessageBox.Icon.Warning, "Edits not saved", f"Some edits could not be saved:\n{self.session.save_error}", parent=self)
            retry = box.addButton("Retry", QMessageBox.ButtonRole.AcceptRole)
            box.addButton("Keep the window open", QMessageBox.ButtonRole.RejectRole)
            discard = box.addButton("Close and lose them", QMessageBox.ButtonRole.DestructiveRole)
            box.exec()
            if box.clickedButton() is retry:
                if self.session.retry_saves():
                    return True
                continue
            return box.clickedButton() is discard

    # -- file actions ---------------------------------------------------------------------------
    def _open_other(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", str(self.session.store.root), "SemiREST projects (*.sqlite *.db *.semirest);;All files (*)")
        if path:
            w = open_project_window(path, self.session.tracker.annotator, parent_for_errors=self)
            if w is not None:
                w.show()
                self.close()

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add image folder", str(self.session.store.root))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder) -> bool:
        """Add the readable images of ``folder``; files that cannot be used are listed to the user
        with their reasons (core/project/formats.check_new_images). True if images were added."""
        try:
            checked = check_new_images(images_from_folder(folder))
            if checked.usable:
                ids = self.session.store.add_images(checked.usable)
                for n, image_id in zip(checked.usable, ids):
                    self.session.store.set_image_size(image_id, *checked.sizes[n.key])
        except (ProjectError, DatasetLayoutError) as exc:
            self.show_warning("Images not added", str(exc))
            return False
        if checked.refused:
            shown = "\n".join(f"• {r.path.name}: {r.reason}" for r in checked.refused[:20])
            more = f"\n… and {len(checked.refused) - 20} more" if len(checked.refused) > 20 else ""
            self.show_warning(
                "Some files were not added",
                f"Added {len(checked.usable)} images. {len(checked.refused)} files could not be used:\n{shown}{more}",
            )
        if not checked.usable:
            return False
        self.session.reload_records()
        self.image_list.model.records_reloaded()
        self.image_list.update_progress()
        if self.session.index < 0:
            self.session.open_index(0)
        return True

    def show_warning(self, title: str, text: str) -> None:
        """A warning dialog (tests replace it)."""
        QMessageBox.warning(self, title, text)

    def _save_copy(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save a copy of the project", str(self.session.store.root),
                                              "SemiREST project (*.sqlite)")
        if path:
            self.save_copy(path)

    def save_copy(self, path) -> bool:
        """A self-contained copy of the project (core ProjectStore.save_copy); True if written."""
        from semirest.core.project.store import ProjectError

        try:
            self.session.store.save_copy(path)
        except ProjectError as exc:
            self.show_warning("Copy not saved", str(exc))
            return False
        self.statusBar().showMessage(f"Saved a copy: {path}", 8000)
        return True

    def _export(self) -> None:
        fmt, ok = QInputDialog.getItem(self, "Export", "Format:", list(FORMATS), 0, False)
        if not ok:
            return
        out = QFileDialog.getExistingDirectory(self, f"Export {fmt} to folder", str(self.session.store.root))
        if not out:
            return
        try:
            try:
                paths = export(self.session.store, fmt, out)
            except ExportTargetNotEmpty as exc:
                answer = QMessageBox.question(self, "Export", f"{exc}.\n\nReplace the files of an earlier export there?")
                if answer != QMessageBox.StandardButton.Yes:
                    return
                paths = export(self.session.store, fmt, out, overwrite=True)
        except (ProjectError, ImageReadError, OSError) as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return
        self.statusBar().showMessage(f"Exported {fmt}: {len(paths)} files in {out}", 8000)


def open_project_window(
    path,
    annotator: str,
    new_images=None,
    parent_for_errors=None,
    show_error: Callable[[str], None] | None = None,
):
    """The main window on a project (created first if the file does not exist), or None after
    telling the user why it cannot be opened."""
    def error(text: str) -> None:
        print(f"semirest-studio: error: {text}", file=sys.stderr)
        if show_error is not None:
            show_error(text)
        else:
            QMessageBox.critical(parent_for_errors, "Cannot open project", text)

    path = Path(path)
    try:
        if path.exists():
            if new_images is not None:
                raise ProjectError(f"{path}: already exists; leave out --images/--mvtec to open it")
            store = ProjectStore.open(path)
        else:
            images = new_images() if new_images is not None else []
            store = ProjectStore.create(path)
            store.add_images(images)
    except (ProjectError, DatasetLayoutError, OSError) as exc:
        error(str(exc))
        return None
    if store.read_only:
        print(f"semirest-studio: note: {store.read_only_reason}", file=sys.stderr)
    return MainWindow(store, annotator)


def make_train_dock(session: LabelingSession, canvas: CanvasView) -> QWidget:
    """The Train dock's panels, or a stand-in that says why where PyTorch is missing (desktop package)."""
    try:
        from semirest.app.panels.train_dock import TrainDock  # imports torch: the desktop package has none
    except ImportError as exc:
        if "torch" not in str(exc):
            raise
        from semirest.app.panels.no_training import NoTrainingPanel

        return NoTrainingPanel(str(exc))
    return TrainDock(session, canvas)
