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
