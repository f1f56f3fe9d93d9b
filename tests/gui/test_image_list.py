"""The image list's sorting as a user clicks it."""
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest


def _click_header(view, section: int) -> None:
    h = view.horizontalHeader()
    x = h.sectionViewportPosition(section) + h.sectionSize(section) // 2
    QTest.mouseClick(h.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(x, h.height() // 2))


def test_first_click_on_score_puts_the_most_anomalous_image_first(window, qtbot):
    panel = window.image_list
    records = window.session.records
    scores = {r.id: s for r, s in zip(records, (0.2, 0.9, 0.5))}
    panel.set_scores(scores)
    _click_header(panel.view, 3)
    qtbot.waitUntil(lambda: panel.view.horizontalHeader().sortIndicatorSection() == 3, timeout=3000)
    order = [records[row].id for row in panel.visible_order()]
    assert [scores[i] for i in order] == [0.9, 0.5, 0.2]
    _click_header(panel.view, 3)  # the second click turns it round
    qtbot.waitUntil(lambda: [scores[records[r].id] for r in panel.visible_order()] == [0.2, 0.5, 0.9], timeout=3000)
    _click_header(panel.view, 0)  # other columns keep Qt's ascending first click
    assert panel.view.horizontalHeader().sortIndicatorOrder() == Qt.SortOrder.AscendingOrder
    panel.sort_by_score(most_anomalous_first=False)  # asked for in code: kept as asked
    assert [scores[records[r].id] for r in panel.visible_order()] == [0.2, 0.5, 0.9]


import pytest  # noqa: E402

from tests.gui.conftest import key, open_window  # noqa: E402

KEYS = [f"test/{kind}/{n:03d}" for kind in ("crack", "scratch_neck", "good") for n in range(4)]


@pytest.fixture
def keyed_project(tmp_path):
    """12 rows with MVTec-style keys over three small real files (row i uses file i % 3)."""
    from semirest.core.project.store import NewImage, ProjectStore
    from tests.conftest import make_images

    paths = make_images(tmp_path / "images")
    store = ProjectStore.create(tmp_path / "keyed.sqlite")
    store.add_images([NewImage(paths[i % 3], k) for i, k in enumerate(KEYS)])
    store.close()
    return tmp_path / "keyed.sqlite"


@pytest.fixture
def kw(qtbot, keyed_project, clock):
    w = open_window(qtbot, keyed_project, clock)
    yield w
    if w.isVisible():
        w.close()


def _type(qtbot, widget, text):
    for ch in text:
        qtbot.keyClick(widget, ch)


def test_filter_by_name_and_ctrl_f_then_enter_gives_keys_back(kw, qtbot):
    lst, s = kw.image_list, kw.session
    key(qtbot, kw, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert lst.filter_bar.name.hasFocus()
    _type(qtbot, lst.filter_bar.name, "scratch")
    qtbot.keyClick(lst.filter_bar.name, Qt.Key.Key_Return)
    assert [s.records[r].key for r in lst.visible_order()] == KEYS[4:8]
    assert kw.canvas.hasFocus()
    key(qtbot, kw, Qt.Key.Key_D)  # from image 0 (filtered out): the first shown image
    assert s.record.key == "test/scratch_neck/000"
    key(qtbot, kw, Qt.Key.Key_D)
    assert s.record.key == "test/scratch_neck/001"
    assert "4 of 12 images shown" in lst.shown_label.text()


def test_filter_labelled_and_u_goes_to_next_unlabelled(kw, qtbot):
    lst, s, c = kw.image_list, kw.session, kw.canvas
    from tests.gui.conftest import click

    for _ in range(2):  # label images 0 and 1 with one 8x8 cell each
        key(qtbot, kw, Qt.Key.Key_K)
        click(c, 5, 5)
        key(qtbot, kw, Qt.Key.Key_D)
    s.open_index(0)
    key(qtbot, kw, Qt.Key.Key_U)
    assert s.index == 2
    bar = lst.filter_bar
    bar.labelled.setCurrentIndex(bar.labelled.findData(True))
    assert lst.visible_order() == [0, 1]
    bar.labelled.setCurrentIndex(bar.labelled.findData(False))
    assert lst.visible_order() == list(range(2, 12))
    bar.label_type.setCurrentIndex(bar.label_type.findData("block8"))
    assert lst.visible_order() == []  # unlabelled and with 8x8 cells: none


def test_s_goes_to_next_score_above_threshold_and_a_d_follow_the_score_sort(kw, qtbot):
    lst, s = kw.image_list, kw.session
    scores = {r.id: (i * 7 % 12) / 12 for i, r in enumerate(s.records)}
    lst.set_scores(scores)
    lst.sort_by_score()
    shown = [scores[s.records[r].id] for r in lst.visible_order()]
    assert shown == sorted(scores.values(), reverse=True)
    first = lst.visible_order()[0]
    s.open_index(first)
    key(qtbot, kw, Qt.Key.Key_D)
    assert s.index == lst.visible_order()[1]
    key(qtbot, kw, Qt.Key.Key_A)
    assert s.index == first
    kw.train_panels.score_threshold = lambda: 0.7
    s.open_index(0)  # score 0: S goes down the list to the next one above 0.7
    key(qtbot, kw, Qt.Key.Key_S)
    assert scores[s.record.id] > 0.7
    seen = {s.index}
    for _ in range(3):
        key(qtbot, kw, Qt.Key.Key_S)
        seen.add(s.index)
    assert {scores[s.records[i].id] > 0.7 for i in seen} == {True} and len(seen) == 3  # 0.75, 0.83, 0.92


def test_ctrl_g_goes_to_the_typed_number(kw, qtbot):
    key(qtbot, kw, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    box = kw.image_list.filter_bar.go_to_box
    assert box.hasFocus()
    _type(qtbot, box, "7")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert kw.session.index == 6 and kw.canvas.hasFocus()
    assert "image 7/12" in kw.status_labels["image"].text()


def test_arrow_keys_in_the_list_move_the_current_image(kw, qtbot):
    lst, s = kw.image_list, kw.session
    rect = lst.view.visualRect(lst.model.index(2, 0))
    QTest.mouseClick(lst.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    assert s.index == 2 and lst.view.hasFocus()
    qtbot.keyClick(lst.view, Qt.Key.Key_Down)
    assert s.index == 3
    qtbot.keyClick(lst.view, Qt.Key.Key_Up)
    qtbot.keyClick(lst.view, Qt.Key.Key_Up)
    assert s.index == 1
    key(qtbot, kw, Qt.Key.Key_D)  # letters stay the window's shortcuts while the list has the focus
    assert s.index == 2


def test_enter_in_the_steps_box_returns_focus_then_d_works(window, qtbot):
    steps = window.train_panels.training.steps
    steps.setFocus()
    qtbot.waitUntil(steps.hasFocus, timeout=3000)
    qtbot.keyClick(steps, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)  # over the "preset" text
    qtbot.keyClick(steps, Qt.Key.Key_5)
    qtbot.keyClick(steps, Qt.Key.Key_Return)
    assert steps.value() == 5 and window.canvas.hasFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D)
    assert window.session.index == 1
    window.image_list.filter_bar.name.setFocus()
    qtbot.keyClick(window.image_list.filter_bar.name, Qt.Key.Key_Escape)
    assert window.canvas.hasFocus()


def test_keys_elide_at_the_start(window):
    assert window.image_list.view.textElideMode() == Qt.TextElideMode.ElideLeft


def test_clock_emits_only_the_current_time_cell(window, qtbot, clock):
    model = window.image_list.model
    cells = []
    model.dataChanged.connect(lambda a, b: cells.append((a.row(), a.column(), b.row(), b.column())))
    resets = []
    model.layoutChanged.connect(lambda: resets.append(1))
    model.modelReset.connect(lambda: resets.append(1))
    from tests.gui.conftest import click, move

    key(qtbot, window, Qt.Key.Key_K)
    click(window.canvas, 5, 5)  # an edit: the tracker times image 0 from here
    qtbot.wait(10)
    cells.clear()  # the edit's own row update
    for i in range(4):
        clock.advance(0.5)
        move(window.canvas, 20 + i, 20)  # canvas input keeps the span open
        qtbot.wait(500)
    assert cells and set(cells) == {(0, 2, 0, 2)} and not resets
    cells.clear()
    clock.advance(120)  # idle past the pause: the time no longer changes
    qtbot.wait(600)
    cells.clear()
    qtbot.wait(2000)
    assert cells == []


def test_new_scores_while_sorted_do_not_read_every_row(tmp_path, qtbot, clock):
    from semirest.core.project.store import NewImage, ProjectStore
    from tests.conftest import make_images

    paths = make_images(tmp_path / "images")
    store = ProjectStore.create(tmp_path / "many.sqlite")
    store.add_images([NewImage(paths[i % 3], f"img{i:05d}") for i in range(3000)])
    store.close()
    w = open_window(qtbot, tmp_path / "many.sqlite", clock)
    lst, model = w.image_list, w.image_list.model
    ids = [r.id for r in w.session.records]
    lst.set_scores({i: 0.0 for i in ids})
    lst.sort_by_score()
    qtbot.wait(50)
    calls = []
    real = model.data
    model.data = lambda index, role=Qt.ItemDataRole.DisplayRole: (calls.append(index.row()), real(index, role))[1]
    scores = {}
    for n in range(10):  # scores stream in
        scores.update({i: (i * 37 % 1000) / 1000 for i in ids[n * 300:(n + 1) * 300]})
        lst.set_scores(dict(scores))
        qtbot.wait(60)
    qtbot.wait(700)
    top = lst.visible_order()[:3]
    assert [scores[w.session.records[r].id] for r in top] == sorted(scores.values(), reverse=True)[:3]
    assert 0 < len(calls) < 3000  # the rows on screen, not every row per score
    w.close()


def test_class_filter_and_score_sort_keep_unscored_last(keyed_project, qtbot, clock):
    from semirest.app.panels.image_list import SCORE, ImageFilter, ImageListOrder
    from semirest.core.labels.boxes import RotatedBox
    from semirest.core.project.store import ProjectStore

    with ProjectStore.open(keyed_project) as store:
        recs = store.images()
        scratch = store.add_class("scratch")
        store.set_blocks(recs[1].id, 8, on=[(0, 0)], class_id=scratch.id)
        store.add_box(recs[5].id, RotatedBox(20, 20, 10, 4, 30.0), class_id=scratch.id)
        store.set_blocks(recs[2].id, 8, on=[(1, 1)])  # default class
        assert store.classes_by_image() == {recs[1].id: {scratch.id}, recs[5].id: {scratch.id}, recs[2].id: {1}}
    w = open_window(qtbot, keyed_project, clock)
    lst = w.image_list
    bar = lst.filter_bar
    bar.label_class.reload()
    bar.label_class.setCurrentIndex(bar.label_class.findData(scratch.id))
    assert lst.visible_order() == [1, 5]
    # the row's tooltip names its classes
    tips = [lst.model.data(lst.model.index(p, 0), Qt.ItemDataRole.ToolTipRole) for p in range(2)]
    assert all("(scratch)" in t for t in tips)
    w.close()
    order = ImageListOrder(["b", "a", "c"], [10, 11, 12])
    order.set_scores({10: 0.3, 12: 0.9})
    for descending, want in ((True, [2, 0, 1]), (False, [0, 2, 1])):
        order.column, order.descending = SCORE, descending
        order.apply()
        assert order.rows.tolist() == want
    order.filter = ImageFilter(score_min=0.5)
    order.apply()
    assert order.rows.tolist() == [2] and order.step(0, +1) == 2 and order.position(0) == -1
