"""Scripted input: drive the real studio window from a file of edits (tests, the self-check).

Each line of the script is a JSON object; the edits go through the same tool code as mouse input
(``press`` / ``move`` / ``release`` in image coordinates), so they reach the project through the
document, the session and the store exactly as a drawn stroke does. After an edit is committed
the runner prints ``ack <n>`` on stdout and flushes, so a test can kill the process at any moment
and know which edits the studio had reported as saved. Operations::

    {"op": "tool", "name": "brush"}                 any action of app/actions.py (tools, next_image...)
    {"op": "goto", "index": 3}                      open image 3 of the list
    {"op": "drag", "points": [[x, y], ...]}         press at the first point, move, release at the last
    {"op": "brush_size", "size": 6}
    {"op": "sleep", "seconds": 0.05}
    {"op": "quit"}                                  close the window normally

Lines that are empty or start with ``#`` are skipped. A failed save prints ``unsaved <n>`` and
the message instead of an ack.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication


class _Event:
    """What the tools read from a mouse event: the left button held, no modifier."""

    def buttons(self):
        return Qt.MouseButton.LeftButton

    def button(self):
        return Qt.MouseButton.LeftButton

    def modifiers(self):
        return Qt.KeyboardModifier.NoModifier


def read_script(path: str | Path) -> list[dict]:
    text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    ops = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            op = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {n}: not JSON ({exc.msg})") from None
        if not isinstance(op, dict) or "op" not in op:
            raise ValueError(f"{path}, line {n}: expected an object with an 'op' field")
        ops.append(op)
    return ops


def run_script(window, ops: list[dict], out=None) -> int:
    """Apply ``ops`` to ``window`` (a MainWindow). Returns the number of edits acknowledged."""
    out = out or sys.stdout
    app = QApplication.instance()
    session, canvas = window.session, window.canvas
    ev = _Event()
    acked = 0
    for n, op in enumerate(ops):
        kind = op["op"]
        if kind == "tool":
            window.actions_[op["name"]].trigger()
        elif kind == "goto":
            session.open_index(int(op["index"]))
            session.wait_until_shown()
        elif kind == "brush_size":
            canvas.set_brush_size(int(op["size"]))
        elif kind == "sleep":
            time.sleep(float(op["seconds"]))
        elif kind == "quit":
            window.close()
            break
        elif kind == "drag":
            session.wait_until_shown()
            tool = canvas.tool
            if tool is None or canvas.document is None:
                raise RuntimeError(f"script op {n}: no tool or no image to draw on")
            if window.tools.get("box") is tool:
                canvas.select_box(None)  # a new box, never a handle of the last one
            pts = [QPointF(float(x), float(y)) for x, y in op["points"]]
            tool.press(pts[0], ev)
            for p in pts[1:]:
                tool.move(p, ev)
            tool.release(pts[-1], ev)
            if session.has_unsaved:
                print(f"unsaved {op.get('id', n)} {session.save_error}", file=out, flush=True)
            else:
                acked += 1
                print(f"ack {op.get('id', n)}", file=out, flush=True)
        else:
            raise ValueError(f"script op {n}: unknown op {kind!r}")
        app.processEvents()
    return acked
