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
