"""Progress of long steps without Qt: the CLI draws a bar from the events, the studio a widget."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ProgressEvent:
    """What a long step reports: the CLI draws a bar from it, the studio a progress widget."""

    stage: str
    done: int
    total: int
    info: dict = field(default_factory=dict)


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    """The default progress function: reports nothing."""


class WithEta:
    """Passes events on with ``info["eta_s"]`` (seconds left at the stage's pace so far) added to
    every stage that does not report its own, so each long stage (features, coreset, k-NN rows,
    synthetic pool, calibration, scoring) shows an ETA in the studio and on the command line."""

    def __init__(self, progress: ProgressFn, clock: Callable[[], float] | None = None):
        import time

        self.progress = progress
        self.clock = clock or time.perf_counter
        self._stage: str | None = None
        self._start = (0.0, 0)  # (time, done) of the stage's first event

    def __call__(self, ev: ProgressEvent) -> None:
        now = self.clock()
        if ev.stage != self._stage or ev.done < self._start[1]:
            self._stage, self._start = ev.stage, (now, ev.done)
        t0, d0 = self._start
        if "eta_s" not in ev.info and ev.total > 0 and ev.done > d0:
            ev = ProgressEvent(ev.stage, ev.done, ev.total, dict(ev.info))
            ev.info["eta_s"] = round((now - t0) / (ev.done - d0) * (ev.total - ev.done), 1)
        self.progress(ev)
