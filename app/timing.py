"""Active labeling time per image and label type (the paper's annotation-time study, Fig. 6).

Rules (also in docs/studio.md):

* a span of a label type (pixel, block8, block16, box) opens at the first edit of that type on an
  image, back-dated to the mouse press that began the edit (a drawn box counts from the press,
  not from the release); choosing a tool or moving to an image opens nothing;
* an open span counts the active time until an edit of another type (which closes it at that
  edit's press and opens the other type's span there), leaving the image, the window losing
  focus, or :data:`IDLE_SECONDS` (30 s) without input (it then ends 30 s after the last input);
* only input on the canvas is activity (:mod:`semirest.app.canvas.activity`); the image list,
  the panels and dialogs never are: input elsewhere in the window, or the keyboard leaving the
  canvas (Ctrl+G, Ctrl+F), pauses the count (the span stays open) until the next canvas input;
* an edit replayed after a large image loaded counts from its own press
  (:meth:`TimeTracker.press_mark`, :meth:`TimeTracker.replay_press`);
* each span is stored (image, label type, annotator, seconds, start, end); an open span is written
  every :data:`FLUSH_SECONDS` of counted time so a crash loses little.

:class:`TimeTracker` is plain Python with an injectable clock (tests drive it with a fake clock);
the Qt side only reports canvas input, edits, image changes and focus changes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from semirest.core.project.store import TimeSpan

IDLE_SECONDS = 30.0
FLUSH_SECONDS = 15.0


class TimeTracker:
    """Positions on one counter of active seconds: every input adds the time since the previous
    one (at most the idle limit); a span is the stretch of that counter between where it opened
    and where it closed, so an edit of another type can hand the seconds since its press over."""

    def __init__(
        self,
        write: Callable[[TimeSpan], None],
        annotator: str,
        clock: Callable[[], float] = time.monotonic,
        idle_seconds: float = IDLE_SECONDS,
    ):
        self.write = write
        self.annotator = annotator
        self.clock = clock
        self.idle_seconds = idle_seconds
        self.image_id: int | None = None
        self.label_type: str | None = None  # the open span's type; None while no span is open
        self.active = True  # window focus
        self._counted = 0.0  # active seconds counted so far
        self._last_input: float | None = None  # clock of the last counted input; None after a stop
        self._span_from = 0.0  # the counter where the open span began
        self._span_start_wall: datetime | None = None
        self._press: tuple[float, float] | None = None  # (counter, clock) at the press of the gesture under way
        self._stopped: tuple[float, float] = (0.0, clock())  # (counter, clock) where counting last stopped
        self.totals: dict[int, dict[str, float]] = {}  # stored time, kept in sync with spans written

    # -- inputs ---------------------------------------------------------------------------------
    def set_image(self, image_id: int | None) -> None:
        """The image on screen; leaving an image closes its span."""
        if image_id != self.image_id:
            self._stop(self.clock())
            self.image_id = image_id

    def note_input(self, press: bool = False) -> None:
        """Input on the canvas: counts the time since the previous input (up to the idle limit)
        for the open span. ``press``: a mouse press, where an edit that follows begins."""
        if not self.active or self.image_id is None:
            return
        now = self.clock()
        self._expire(now)
        if self._last_input is not None:
            self._counted += now - self._last_input
        self._last_input = now
        if press:
            self._press = (self._counted, now)
        self._flush()

    def note_elsewhere(self) -> None:
        """Input elsewhere in the window (image list, panels): the time up to it counts, the time
        until the next canvas input does not; the span stays open."""
        if not self.active or self._last_input is None:
            return
        now = self.clock()
        self._expire(now)
        if self._last_input is not None:
            self._counted += now - self._last_input
            self._last_input = None
            self._press = None

    def note_edit(self, label_type: str) -> None:
        """An edit of ``label_type`` on the canvas (after the input that made it was noted)."""
        if not self.active or self.image_id is None:
            return
        now = self.clock()
        self._expire(now)
        press, self._press = self._press, None
        if label_type == self.label_type:
            return
        at, at_clock = press if press is not None else (self._counted, now)
        if self.label_type is not None:
            self._close_span(at)
        self.label_type = label_type
        self._span_from = at
        self._span_start_wall = datetime.now(timezone.utc) - timedelta(seconds=max(0.0, now - at_clock))

    def press_mark(self) -> tuple[float, float] | None:
        """The press of the gesture under way, for an edit made later from it (a stroke queued
        while the full image loads is replayed, and becomes an edit, only once it has loaded)."""
        return self._press

    def replay_press(self, mark: tuple[float, float] | None) -> None:
        """The next edit began at ``mark`` (from :meth:`press_mark`): a replayed stroke's span
        opens at its own press. A press from before counting last stopped (idle limit, focus
        lost) counts from that stop: the time before it belongs to a closed stretch."""
        if mark is not None and mark[0] < self._stopped[0]:
            mark = self._stopped
        self._press = mark

    def set_active(self, active: bool) -> None:
        """Window focus: losing it closes the open span."""
        if not active:
            self._stop(self.clock())
        self.active = active

    def stop(self) -> None:
        """Close and write the open span (closing the window)."""
        self._stop(self.clock())

    # -- reading --------------------------------------------------------------------------------
    def running_seconds(self) -> float:
        """Counted seconds of the open span, including the time since the last input."""
        if self.label_type is None:
            return 0.0
        pending = 0.0 if self._last_input is None else min(self.clock() - self._last_input, self.idle_seconds)
        return self._counted - self._span_from + pending

    def seconds(self, image_id: int, label_type: str | None = None) -> float:
        """Stored plus running time for an image (one label type, or all)."""
        stored = self.totals.get(image_id, {})
        total = stored.get(label_type, 0.0) if label_type else sum(stored.values())
        if self.label_type is not None and self.image_id == image_id and label_type in (None, self.label_type):
            total += self.running_seconds()
        return total

    @property
    def running(self) -> bool:
        """A span is open and the last input is within the idle limit."""
        return (self.label_type is not None and self._last_input is not None
                and self.clock() - self._last_input <= self.idle_seconds)

    # -- spans ----------------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        """Past the idle limit: the open span ends idle_seconds after the last input."""
        if self._last_input is not None and now - self._last_input > self.idle_seconds:
            self._counted += self.idle_seconds
            self._stopped = (self._counted, self._last_input + self.idle_seconds)
            self._last_input = None
            self._press = None
            if self.label_type is not None:
                self._close_span(self._counted)

    def _stop(self, now: float) -> None:
        if self._last_input is not None:
            self._counted += min(max(0.0, now - self._last_input), self.idle_seconds)
        if self.label_type is not None:
            self._close_span(self._counted)
        self._stopped = (self._counted, now if self._last_input is None else min(now, self._last_input + self.idle_seconds))
        self._last_input = None
        self._press = None

    def _flush(self) -> None:
        """Write a long open span's counted part (up to the press of a gesture under way, whose
        seconds may still go to another type) and go on counting in a new span."""
        if self.label_type is None:
            return
        at = self._press[0] if self._press is not None else self._counted
        if at - self._span_from >= FLUSH_SECONDS:
            label_type = self.label_type
            self._close_span(at)
            self.label_type = label_type
            self._span_from = at

    def _close_span(self, end: float) -> None:
        """Write the open span up to counter ``end``; no span is open afterwards."""
        seconds = end - self._span_from
        label_type, self.label_type = self.label_type, None
        start = self._span_start_wall or datetime.now(timezone.utc)
        self._span_start_wall = start + timedelta(seconds=max(0.0, seconds))  # where a flushed span goes on
        if seconds <= 0.0 or self.image_id is None or label_type is None:
            return
        span = TimeSpan(
            self.image_id,
            label_type,
            self.annotator,
            round(seconds, 3),
            start.isoformat(timespec="milliseconds"),
            (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds"),
        )
        d = self.totals.setdefault(self.image_id, {})
        d[label_type] = d.get(label_type, 0.0) + span.seconds
        self.write(span)
