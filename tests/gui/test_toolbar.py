"""The main toolbar fits a small window: at 1024x600 and 1280x720 every toolbar action has its
own button shown inside the toolbar, none hidden behind the overflow arrow."""
import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QToolBar, QToolButton


def toolbar_layout(window):
    bar = window.findChild(QToolBar, "tools_toolbar")
    shown = []
    for a in bar.actions():
        if a.isSeparator():
            continue
        w = bar.widgetForAction(a)
        shown.append((a.objectName(), w is not None and w.isVisible() and QRect(w.mapTo(bar, w.rect().topLeft()), w.size()),
                      a.isVisible()))
    return bar, shown


@pytest.mark.parametrize("size", [(1024, 600), (1280, 720)])
def test_every_toolbar_action_is_visible_inside_the_toolbar(window, qtbot, size):
    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() == size[0])
    bar, shown = toolbar_layout(window)
    assert len(shown) >= 12
    extension = bar.findChild(QToolButton, "qt_toolbar_ext_button")
    assert extension is None or not extension.isVisible(), "the overflow arrow is shown"
    for name, rect, action_visible in shown:
        assert action_visible, name
        assert rect, f"{name} has no visible button"
        assert bar.rect().contains(rect), f"{name} at {rect} is outside the toolbar {bar.rect()}"


def test_toolbar_buttons_trigger_their_action_at_1024(window, qtbot):
    """A click on the short-labelled buttons does what the menu item does."""
    window.resize(1024, 600)
    qtbot.waitUntil(lambda: window.width() == 1024)
    bar = window.findChild(QToolBar, "tools_toolbar")
    a = window.actions_
    qtbot.mouseClick(bar.widgetForAction(a["box"]), Qt.MouseButton.LeftButton)
    assert a["box"].isChecked() and window.canvas.tool is window.tools["box"]
    qtbot.mouseClick(bar.widgetForAction(a["block16"]), Qt.MouseButton.LeftButton)
    assert window.canvas.tool is window.tools["block16"]
    # the menus keep the full names; the toolbar's short names keep the shortcut in the tooltip
    assert a["block16"].text().startswith("Blocks 16×16") and "L" in a["block16"].toolTip()
