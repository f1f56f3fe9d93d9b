"""Classes in the studio: keys 1-9 pick the class of the next label, the status bar names it, and
the Classes dialog adds, renames and colours classes through the store."""
from PySide6.QtCore import Qt

from semirest.app.panels.classes import ClassesDialog
from semirest.core.project.store import ProjectStore
from tests.gui.conftest import click, drag, key


def test_class_keys_give_the_next_labels_their_class(window, qtbot, small_project):
    store = window.session.store
    scratch = store.add_class("scratch").id
    window._update_status()
    window._show_class_colours()  # as the Classes dialog's classes_changed does
    assert window.status_labels["class"].text() == "class 1: defect"
    key(qtbot, window, Qt.Key.Key_2)
    assert window.status_labels["class"].text() == "class 2: scratch"
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 30), (60, 30)])  # a scratch stroke
    key(qtbot, window, Qt.Key.Key_K)
    click(c, 100, 90)  # a scratch cell
    key(qtbot, window, Qt.Key.Key_1)
    key(qtbot, window, Qt.Key.Key_R)
    drag(c, [(100, 20), (140, 40)])  # a defect box
    key(qtbot, window, Qt.Key.Key_2)
    drag(c, [(20, 70), (50, 100)])  # a scratch box
    key(qtbot, window, Qt.Key.Key_3)  # there is no third class: the class stays
    assert "No class 3" in window.statusBar().currentMessage()
    assert window.status_labels["class"].text() == "class 2: scratch"
    # each box is drawn in its class's colour, and follows a colour change
    colours = {k.id: k.colour for k in store.classes()}
    assert colours[scratch] != colours[1]
    drawn = {round(it.box.cx): it.colour.name() for it in c.box_items.values()}
    assert drawn == {120: colours[1], 35: colours[scratch]}
    store.set_class_colour(scratch, "#00ff00")
    window._show_class_colours()
    assert {round(it.box.cx): it.colour.name() for it in c.box_items.values()}[35] == "#00ff00"
    window.close()
    with ProjectStore.open(small_project) as s:
        rec = s.images()[0]
        lab = s.load_labels(rec.id, rec.hw)
    assert lab.pixels[30, 40] == scratch and set(lab.pixels[lab.pixels > 0]) == {scratch}
    assert [lab.block_class(8, cell) for cell in lab.blocks[8]] == [scratch]
    assert sorted((round(b.cx), lab.box_class(i)) for i, b in lab.boxes.items()) == [(35, scratch), (120, 1)]


def test_classes_dialog_adds_renames_and_colours(qtbot, small_project):
    with ProjectStore.open(small_project) as store:
        d = ClassesDialog(store)
        qtbot.addWidget(d)
        d.show()
        assert d.list.count() == 1 and d.name.text() == "defect"
        d.name.clear()
        qtbot.keyClicks(d.name, "scratch")
        qtbot.mouseClick(d.add_button, Qt.MouseButton.LeftButton)
        assert [k.name for k in store.classes()] == ["defect", "scratch"] and d.list.currentRow() == 1
        d.name.clear()
        qtbot.keyClicks(d.name, "deep scratch")  # refused: a space
        qtbot.mouseClick(d.rename_button, Qt.MouseButton.LeftButton)
        assert "space" in d.problem.text() and store.classes()[1].name == "scratch"
        d.name.clear()
        qtbot.keyClicks(d.name, "deep-scratch")
        qtbot.mouseClick(d.rename_button, Qt.MouseButton.LeftButton)
        assert d.problem.text() == "" and store.classes()[1].name == "deep-scratch"
        assert d.list.item(1).text().endswith("deep-scratch")
        d.set_colour("#00ff00")
        assert store.classes()[1].colour == "#00ff00"
        d.close()


# -- classes on the canvas and in the image list -------------------------------------------------
def edit_classes(window, qtbot, steps):
    """Edit ▸ Classes… as a user: the modal dialog opens, ``steps(dialog)`` types and clicks in
    it, then it is closed."""
    from PySide6.QtCore import QTimer

    def drive():
        d = window.classes_dialog
        steps(d)
        d.accept()

    QTimer.singleShot(0, drive)
    window.actions_["classes"].trigger()
    window.activateWindow()  # the keys 1-9 are window shortcuts again
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)


def add_class(qtbot, d, name):
    d.name.clear()
    qtbot.keyClicks(d.name, name)
    qtbot.mouseClick(d.add_button, Qt.MouseButton.LeftButton)


def rgb(argb_value) -> tuple[int, int, int]:
    """The colour of a premultiplied ARGB32 overlay pixel, un-premultiplied."""
    v = int(argb_value)
    a = v >> 24
    assert a, "transparent"
    return tuple(min(255, round(((v >> s) & 255) * 255 / a)) for s in (16, 8, 0))


def near(c, hex_colour, tol=3) -> bool:
    from PySide6.QtGui import QColor

    q = QColor(hex_colour)
    return all(abs(a - b) <= tol for a, b in zip(c, (q.red(), q.green(), q.blue())))


def test_brush_and_cells_are_drawn_in_their_class_colour(window, qtbot):
    """Pixels, 8x8 and 16x16 cells take their class's hue (the type shows as fill, cell outline
    and hatching) and are drawn again when the class's colour changes."""
    edit_classes(window, qtbot, lambda d: add_class(qtbot, d, "scratch"))
    store, c = window.session.store, window.canvas
    defect, scratch = store.classes()
    key(qtbot, window, Qt.Key.Key_2)
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 30), (60, 30)])
    key(qtbot, window, Qt.Key.Key_K)
    click(c, 100, 90)  # cell row 11, col 12: x 96-103, y 88-95
    key(qtbot, window, Qt.Key.Key_L)
    click(c, 140, 100)  # cell row 6, col 8: x 128-143, y 96-111
    key(qtbot, window, Qt.Key.Key_1)
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 60), (60, 60)])  # a defect stroke
    arr = c.label_layer.array
    assert near(rgb(arr[30, 40]), scratch.colour) and near(rgb(arr[60, 40]), defect.colour)
    assert near(rgb(arr[88, 96]), scratch.colour) and near(rgb(arr[91, 99]), scratch.colour)
    assert near(rgb(arr[96, 128]), scratch.colour) and near(rgb(arr[96, 131]), scratch.colour)
    alpha = lambda y, x: int(arr[y, x]) >> 24  # noqa: E731
    # the type stays visible: a solid brush fill; a cell's outline bright, its inside faint;
    # 16x16 cells hatched along x + y
    assert alpha(30, 40) > alpha(91, 99) and alpha(88, 96) > alpha(91, 99)
    assert alpha(96, 128) == alpha(97, 128) > alpha(96, 131) == alpha(91, 99)

    def recolour(d):
        d.list.setCurrentRow(1)
        d.set_colour("#00ff00")

    edit_classes(window, qtbot, recolour)
    arr = c.label_layer.array
    for y, x in ((30, 40), (88, 96), (91, 99), (96, 128)):
        assert near(rgb(arr[y, x]), "#00ff00"), (y, x)
    assert near(rgb(arr[60, 40]), defect.colour)


def tag_screen_rect(canvas, tag):
    from PySide6.QtCore import QRect

    t = tag.deviceTransform(canvas.viewportTransform())
    return t.mapRect(tag.boundingRect()).toAlignedRect() if tag.isVisible() else QRect()


def test_class_names_are_tagged_on_the_canvas(window, qtbot):
    """A box's class name sits at its top-left corner in screen pixels at any zoom and hides when
    the box is tiny on screen; each pixel or cell region gets its class's tag too."""
    from PySide6.QtGui import QColor

    edit_classes(window, qtbot, lambda d: add_class(qtbot, d, "scratch"))
    c = window.canvas
    key(qtbot, window, Qt.Key.Key_2)
    key(qtbot, window, Qt.Key.Key_R)
    drag(c, [(60, 40), (120, 80)])  # a 60x40 scratch box
    (tag,) = c.box_tags.values()
    assert tag.name == "scratch" and tag.isVisible()
    corner = c.mapFromScene(tag.pos())
    assert abs(corner.x() - c.mapFromScene(60, 40).x()) <= 1 and abs(corner.y() - c.mapFromScene(60, 40).y()) <= 1
    rect = tag_screen_rect(c, tag)
    assert rect.bottom() <= corner.y() + 1 and 10 <= rect.height() <= 24  # above the corner
    # painted in the class's colour where it says
    shot = c.viewport().grab().toImage()
    px = QColor(shot.pixel(rect.left() + 2, rect.center().y()))
    assert near((px.red(), px.green(), px.blue()), window.session.store.classes()[1].colour, tol=10)
    for zoom in (c.zoom * 2, c.zoom / 2, 0.25):  # zoom in, out, out far: the tag keeps its screen size
        c.set_zoom(zoom)
        assert tag.deviceTransform(c.viewportTransform()).m11() == 1.0
        if tag.isVisible():
            assert abs(tag_screen_rect(c, tag).height() - rect.height()) <= 1
    assert 40 * c.zoom < tag.MIN_SCREEN_PX and not tag.isVisible()  # tiny on screen: no tag
    c.fit()
    assert tag.isVisible()
    # brush and cell regions: one tag each, named by class, after the edit
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(10, 10), (30, 10)])
    key(qtbot, window, Qt.Key.Key_1)
    key(qtbot, window, Qt.Key.Key_K)
    drag(c, [(20, 100), (40, 100)])
    qtbot.waitUntil(lambda: sorted((t.kind, t.name) for t in c.region_tags) == [("block8", "defect"), ("pixel", "scratch")])
    assert all(t.isVisible() for t in c.region_tags)

    def rename(d):
        d.list.setCurrentRow(1)
        d.name.clear()
        qtbot.keyClicks(d.name, "dent")
        qtbot.mouseClick(d.rename_button, Qt.MouseButton.LeftButton)

    edit_classes(window, qtbot, rename)
    assert tag.name == "dent" and sorted(t.name for t in c.region_tags) == ["defect", "dent"]


def test_image_list_shows_each_rows_class_chips(window, qtbot, monkeypatch):
    """Each row's icon is a colour chip per class of its labels, drawn from the model's cache
    (painting reads nothing from the project)."""
    from PySide6.QtGui import QColor, QIcon

    edit_classes(window, qtbot, lambda d: add_class(qtbot, d, "scratch"))
    store, c = window.session.store, window.canvas
    defect, scratch = store.classes()
    key(qtbot, window, Qt.Key.Key_2)
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 30), (60, 30)])  # brush pixels in scratch
    key(qtbot, window, Qt.Key.Key_1)
    key(qtbot, window, Qt.Key.Key_R)
    drag(c, [(60, 40), (120, 80)])  # a defect box
    model, view = window.image_list.model, window.image_list.view
    monkeypatch.setattr(store, "classes", lambda: (_ for _ in ()).throw(AssertionError("read per paint")))
    def chip_colours(row):
        icon = model.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
        assert isinstance(icon, QIcon)
        img = icon.pixmap(icon.availableSizes()[0]).toImage()
        return [QColor(img.pixel(x, img.height() // 2)).name() for x in range(3, img.width(), 10)]

    assert chip_colours(0) == [defect.colour, scratch.colour]
    assert chip_colours(1) == ["#787878"]  # unlabelled: one grey chip
    # on screen: both colours are in the first row's strip of the list
    window.image_list.view.viewport().repaint()
    shot = view.viewport().grab().toImage()
    r = view.visualRect(model.index(0, 0))
    seen = {QColor(shot.pixel(x, r.center().y())).name() for x in range(r.left(), r.left() + 60)}
    assert {defect.colour, scratch.colour} <= seen
    assert "defect, scratch" in model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)


def test_undo_and_redo_bring_labels_back_in_their_own_class(window, qtbot, small_project):
    """A class-2 stroke and cell, undone and redone while class 1 is picked, are class 2 again;
    a class-2 cell turned off and undone is class 2 again; the project holds the same."""
    store = window.session.store
    scratch = store.add_class("scratch").id
    c = window.canvas
    undo = lambda: key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # noqa: E731
    redo = lambda: key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)  # noqa: E731
    key(qtbot, window, Qt.Key.Key_2)
    key(qtbot, window, Qt.Key.Key_B)
    drag(c, [(20, 30), (60, 30)])  # a scratch stroke
    key(qtbot, window, Qt.Key.Key_K)
    click(c, 100, 90)  # a scratch cell
    doc = c.document
    pixels = doc.pixels.copy()
    assert set(pixels[pixels > 0]) == {scratch} and doc.labels.block_classes == {(8, 11, 12): scratch}
    key(qtbot, window, Qt.Key.Key_1)
    undo()
    undo()
    assert not doc.pixels.any() and not doc.labels.block_classes
    redo()
    redo()
    assert (doc.pixels == pixels).all() and doc.labels.block_classes == {(8, 11, 12): scratch}
    click(c, 100, 90)  # the scratch cell turned off with class 1 picked ...
    assert not doc.labels.block_classes
    undo()  # ... and back, as scratch
    assert doc.labels.block_classes == {(8, 11, 12): scratch}
    window.close()
    with ProjectStore.open(small_project) as s:
        rec = s.images()[0]
        lab = s.load_labels(rec.id, rec.hw)
    assert (lab.pixels == pixels).all()
    assert [lab.block_class(8, cell) for cell in lab.blocks[8]] == [scratch]
