"""Periodic checkpoints during ``semirest train`` (``--checkpoint-every N``).

Kept apart from the trainer: a progress callback that, every N training steps, writes the EMA
model so far with the bank and residual scale to ``last.safetensors`` in the run folder (through
:func:`save_checkpoint`, so atomically: a kill leaves the previous complete file). Its metadata
says ``partial: true`` and the step reached. The final model still goes to ``model.safetensors``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from semirest.core.train.checkpoint import save_checkpoint

PARTIAL_NAME = "last.safetensors"


class PeriodicCheckpoint:
    """Wraps a progress function; ``method`` is a :class:`semirest.core.methods.semirest.SemiREST`."""

    def __init__(self, method, path: str | Path, every: int, progress=None):
        if every < 1:
            raise ValueError("checkpoint interval must be at least 1 step")
        self.method = method
        self.path = Path(path)
        self.every = every
        self.progress = progress
        self.saved = 0

    def close(self) -> None:
        if hasattr(self.progress, "close"):
            self.progress.close()

    def __call__(self, event) -> None:
        if self.progress is not None:
            self.progress(event)
        if event.stage != "train" or event.done % self.every or event.done >= event.total:
            return
        trainer, data = self.method.trainer, self.method.data
        if trainer is None or data is None:
            return
        save_checkpoint(self.path, trainer.cfg, trainer.ema.model, data.bank, data.residual_scale, {
            "category": str(self.method.category_name), "partial": "true",
            "step": str(event.done), "steps": str(event.total),
        })
        self.saved += 1
        print(f"checkpoint: step {event.done} of {event.total} in {self.path}", file=sys.stderr, flush=True)
