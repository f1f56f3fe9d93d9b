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
