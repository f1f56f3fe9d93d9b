"""One way to work off the GUI thread: a :class:`Worker` runs one function in a :class:`Lane`, and
reports through signals that arrive in the GUI thread.

The pattern is napari's (superqt's ``thread_worker``: a runnable with ``returned`` / ``errored``
/ ``finished`` signals); it is written here, in one small class, because the studio needs two
things superqt's workers do not give. Each kind of work has its own lane, one thread that runs
its jobs in order, not Qt's global pool: that pool has as many threads as cores (2 on the
reference machine), so a training run and an inference would hold both, and decoding the image
on screen would wait behind them. And the image cache needs a job's state without waiting for
the event loop: ``done()``, a blocking ``result()`` for small files, and ``cancel()`` of a
read-ahead that has not started.

Users: the training run (:mod:`.training`), the maps of finished runs (:mod:`.inference`) and
image decoding (:mod:`semirest.app.image_cache`). Values a job sends while it runs go through
extra signals on its own :class:`WorkerSignals` subclass (training: progress, live heatmaps).
"""
from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class WorkerSignals(QObject):
    """Created in the GUI thread, so slots connected to it run there (queued from the lane)."""

    returned = Signal(object)  # the function's return value
    errored = Signal(str)  # "Type: message" and a short traceback: every error becomes a message
    finished = Signal()  # after returned or errored; a job cancelled before it started sends nothing


class Lane(QThreadPool):
    """One background thread for one kind of work; jobs run in the order they were started."""

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setObjectName(name)
        self.setMaxThreadCount(1)
        self._unfinished: list[Worker] = []

    def start_worker(self, worker: Worker) -> Worker:
        worker.lane = self
        self._unfinished = [w for w in self._unfinished if not w.ended()] + [worker]
        self.start(worker)
        return worker

    def stop(self, ms: int = 10000) -> bool:
        """Cancel the jobs that have not started and wait for the running one."""
        for w in self._unfinished:
            w.cancel()
        self._unfinished = []
        return self.waitForDone(ms)


class Worker(QRunnable):
    """``fn(*args, **kwargs)`` in a lane; its state can be read from any thread at any time."""

    def __init__(self, fn, *args, signals: WorkerSignals | None = None, **kwargs):
        super().__init__()
        self.setAutoDelete(False)  # the Python side keeps it and reads its result after it ran
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = signals if signals is not None else WorkerSignals()
        self.lane: Lane | None = None
        self._lock = threading.Lock()
        self._state = "pending"  # -> running -> done, or pending -> cancelled
        self._ended = threading.Event()
        self._result = None
        self._error: BaseException | None = None

    def run(self) -> None:  # called by the lane's thread
        with self._lock:
            if self._state != "pending":
                return
            self._state = "running"
        try:
            self._result = self.fn(*self.args, **self.kwargs)
        except Exception as exc:
            self._error = exc
        with self._lock:
            self._state = "done"
        self._ended.set()
        if self._error is None:
            self.signals.returned.emit(self._result)
        else:
            e = self._error
            self.signals.errored.emit(f"{type(e).__name__}: {e}\n\n{''.join(traceback.format_exception(e, limit=6))}")
        self.signals.finished.emit()

    def cancel(self) -> bool:
        """Drop the job if it has not started (True); a running job is not interrupted."""
        with self._lock:
            if self._state != "pending":
                return self._state == "cancelled"
            self._state = "cancelled"
        if self.lane is not None:
            self.lane.tryTake(self)
        self._ended.set()
        return True

    def ended(self) -> bool:
        return self._ended.is_set()

    def done(self) -> bool:
        return self._state == "done"

    def running(self) -> bool:
        return self._state == "running"

    def cancelled(self) -> bool:
        return self._state == "cancelled"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended or was cancelled (scripts, tests, small files)."""
        return self._ended.wait(timeout)

    def result(self, timeout: float | None = None):
        """The return value, waiting for it; re-raises the function's error."""
        if not self._ended.wait(timeout):
            raise TimeoutError("the background job has not ended")
        if self._state == "cancelled":
            raise RuntimeError("the background job was cancelled before it started")
        if self._error is not None:
            raise self._error
        return self._result
