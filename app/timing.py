"""Active labeling time per image and label type (the paper's annotation-time study, Fig. 6).

Rules (also in docs/studio.md):

* the clock runs only while the inspector gives input (mouse or keyboard in the window);
* it stops :data:`IDLE_SECONDS` (30 s) after the last input, and at once when the window loses
  focus or the image or the label type changes;
* time goes to the current image and to the label type of the current tool (brush and eraser:
  pixel; K: block8; L: block16; R: box);
* each stretch of activity is stored as a span (image, label type, annotator, seconds, start,
  end); a running span is written every :data:`FLUSH_SECONDS` so a crash loses little.

:class:`TimeTracker` is plain Python with an injectable clock (tests drive it with a fake clock);
the Qt side only reports input and focus changes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from semirest.core.project.store import TimeSpan

IDLE_SECONDS = 30.0
FLUSH_SECONDS = 15.0


class TimeTracker:
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
        self.label_type: str | None = None
        self.active = True  # window focus
        self._running = False
        self._span_seconds = 0.0
        self._span_start_wall: datetime | None = None
        self._last_input = 0.0
        self.totals: dict[int, dict[str, float]] = {}  # stored time, kept in sync with spans written

    # -- inputs ---------------------------------------------------------------------------------
    def set_target(self, image_id: int | None, label_type: str | None) -> None:
        """The image and label type that the next input counts for."""
        if (image_id, label_type) != (self.image_id, self.label_type):
            now = self.clock()
            was_running = self.running and self.active
            self._stop(now)
            self.image_id, self.label_type = image_id, label_type
            if was_running and image_id is not None and label_type is not None:
                self._open_span(now)  # the input that switched (a key, a click) starts the new clock

    def note_input(self) -> None:
        """The inspector did something: count the time since the last input (up to the idle
        limit) and keep the clock running."""
        if not self.active or self.image_id is None or self.label_type is None:
            return
        now = self.clock()
        if self._running:
            gap = now - self._last_input
            if gap > self.idle_seconds:  # the clock stopped in between: close that span
                self._span_seconds += self.idle_seconds
                self._close_span(self._last_input + self.idle_seconds)
                self._open_span(now)
            else:
                self._span_seconds += gap
        else:
            self._open_span(now)
        self._last_input = now
        if self._span_seconds >= FLUSH_SECONDS:
            self._close_span(now)
            self._open_span(now)

    def set_active(self, active: bool) -> None:
        """Window focus: time stops when the window is not active."""
        if not active:
            self._stop(self.clock())
        self.active = active

    def stop(self) -> None:
        """Stop and write the running span (image switch, closing the window)."""
        self._stop(self.clock())

    # -- reading --------------------------------------------------------------------------------
    def running_seconds(self) -> float:
        if not self._running:
            return 0.0
        return self._span_seconds + min(self.clock() - self._last_input, self.idle_seconds)

    def seconds(self, image_id: int, label_type: str | None = None) -> float:
        """Stored plus running time for an image (one label type, or all)."""
        stored = self.totals.get(image_id, {})
        total = stored.get(label_type, 0.0) if label_type else sum(stored.values())
        if self._running and self.image_id == image_id and (label_type in (None, self.label_type)):
            total += self.running_seconds()
        return total

    @property
    def running(self) -> bool:
        return self._running and self.clock() - self._last_input <= self.idle_seconds

    # -- spans ----------------------------------------------------------------------------------
    def _open_span(self, now: float) -> None:
        self._running = True
        self._span_seconds = 0.0
        self._span_start_wall = datetime.now(timezone.utc) - timedelta(seconds=max(0.0, self.clock() - now))
        self._last_input = now

    def _stop(self, now: float) -> None:
        if not self._running:
            return
        self._span_seconds += min(max(0.0, now - self._last_input), self.idle_seconds)
        self._close_span(min(now, self._last_input + self.idle_seconds))
        self._running = False

    def _close_span(self, end: float) -> None:
        seconds = self._span_seconds
        self._span_seconds = 0.0
        if seconds <= 0.0 or self.image_id is None or self.label_type is None:
            return
        start = self._span_start_wall or datetime.now(timezone.utc)
        span = TimeSpan(
            self.image_id,
            self.label_type,
            self.annotator,
            round(seconds, 3),
            start.isoformat(timespec="milliseconds"),
            (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds"),
        )
        d = self.totals.setdefault(self.image_id, {})
        d[self.label_type] = d.get(self.label_type, 0.0) + span.seconds
        self.write(span)
