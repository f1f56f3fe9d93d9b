"""Running under ``torchrun``: one process per GPU (or CPU worker), on one machine or several.

``semirest train`` calls :func:`init_from_env` first. Without torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``) nothing happens and every helper here is a plain loop, so the
single-process path is unchanged. Under torchrun:

* the process group is NCCL when the process's device is a GPU (``cuda:LOCAL_RANK``), gloo on the
  CPU; pickled Python objects (feature chunks, k-NN rows) always travel over a gloo group, so they
  never take a detour through GPU memory;
* preparation is spread over the ranks and gathered, so every rank ends with the same arrays:
  feature extraction and the k-NN precompute (:func:`map_gather`); the coreset is selected once, on
  rank 0, and its indices broadcast (:func:`on_main`), so the banks are identical by construction,
  not by floating-point luck;
* the Swin is wrapped in ``DistributedDataParallel`` (:func:`prepare_trainer`); each rank samples
  its share of the global batch (``ceil(b / world_size)`` images of each kind, see
  :func:`local_config`) with a generator seeded by (seed, rank); gradients are averaged by DDP, so
  the weights, and therefore the EMA, are identical on every rank after each step;
* only rank 0 draws progress and writes the checkpoint and ``train.json``
  (``semirest.core.cli.train``); everyone meets at a barrier before the group is destroyed.

For a fixed seed and world size a run is reproducible: sampling depends only on (seed, rank), the
gathered arrays are put together in rank order, and gloo / NCCL reductions are deterministic for a
fixed world size (NCCL on GPUs up to the usual cuDNN / atomics caveats).
"""
from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from semirest.core.device import pick_device

# How long a rank waits for the others at a collective (rank 0 may be selecting a large coreset
# while the others wait for its indices). SEMIREST_DIST_TIMEOUT_MIN overrides it.
DEFAULT_TIMEOUT_MIN = 120


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group
    object_group: Any = None  # gloo group used for pickled objects

    @property
    def active(self) -> bool:
        """True when there is more than one process to talk to."""
        return self.backend is not None and self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CONTEXT = DistContext()


def current() -> DistContext:
    return _CONTEXT


def launched_by_torchrun(env: dict | None = None) -> bool:
    env = os.environ if env is None else env
    return all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_from_env(device_spec: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the torchrun job described by the environment (if any); returns (context, device).

    Without torchrun's variables this returns the single-process context and the device that
    ``pick_device`` chooses; under torchrun, ``auto`` / ``cuda`` mean this rank's GPU.
    """
    global _CONTEXT
    import torch.distributed as dist

    if not launched_by_torchrun():
        return _CONTEXT, pick_device(device_spec)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = pick_device(device_spec, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(minutes=float(os.environ.get("SEMIREST_DIST_TIMEOUT_MIN", DEFAULT_TIMEOUT_MIN)))
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    group = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    _CONTEXT = DistContext(rank, world, local, backend, group)
    return _CONTEXT, device


def shutdown() -> None:
    """Barrier, then destroy the process group (no-op without one)."""
    global _CONTEXT
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            barrier()
        finally:
            dist.destroy_process_group()
    _CONTEXT = DistContext()


def barrier() -> None:
    ctx = _CONTEXT
    if ctx.backend is None:
        return
    import torch.distributed as dist

    dist.barrier(group=ctx.object_group)


# -- collectives on Python objects ------------------------------------------------------------------
def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    ctx = _CONTEXT
    if not ctx.active:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj, group=ctx.object_group)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    ctx = _CONTEXT
    if not ctx.active:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src, group=ctx.object_group)
    return box[0]


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and give its result to every rank."""
    ctx = _CONTEXT
    if not ctx.active:
        return fn()
    return broadcast(fn() if ctx.is_main else None)


def map_gather(fn: Callable[[list[int]], Sequence[Any]], n: int, per_rank: int,
               emit: Callable[[int, Any], None], on_round: Callable[[int], None] | None = None) -> None:
    """Apply ``fn`` to the items 0..n-1 in batches, spread over the ranks, and hand every result to
    ``emit(i, result)`` on every rank, in item order.

    Round t covers items [t * W * B, (t + 1) * W * B) (W ranks, B = ``per_rank``); rank r computes
    the r-th slice of B items, and the slices are gathered in rank order. In a single process this
    is a plain loop over batches of B consecutive items (the order and batching of the serial code).
    Memory: one round's results (W * B items) at a time. ``on_round(done)`` reports progress.
    """
    ctx = _CONTEXT
    w = ctx.world_size if ctx.active else 1
    r = ctx.rank if ctx.active else 0
    per_rank = max(1, int(per_rank))
    for start in range(0, n, w * per_rank):
        lo = min(n, start + r * per_rank)
        hi = min(n, lo + per_rank)
        mine = list(fn(list(range(lo, hi)))) if hi > lo else []
        parts = all_gather(mine)
        i = start
        for part in parts:
            for item in part:
                emit(i, item)
                i += 1
        if on_round is not None:
            on_round(min(n, start + w * per_rank))


# -- training ---------------------------------------------------------------------------------------
def rank_seed(seed: int, rank: int) -> int:
    """A 63-bit seed derived from (seed, rank); independent streams for different ranks."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def local_config(cfg):
    """The config one rank trains with: each kind of image in the batch (b1 normal, b2 synthetic,
    b3 real) is split over the ranks, ``ceil(b / world_size)`` per rank, so the global batch is
    the configured one when the world size divides it (and at most world_size - 1 images larger
    per kind otherwise). The single-process config is returned unchanged."""
    ctx = _CONTEXT
    if not ctx.active:
        return cfg
    out = copy.deepcopy(cfg)
    for name in ("b1", "b2", "b3"):
        b = getattr(out.train, name)
        if b > 0:
            setattr(out.train, name, int(math.ceil(b / ctx.world_size)))
    return out


def prepare_trainer(trainer) -> None:
    """Make a freshly built :class:`~semirest.core.train.trainer.Trainer` a DDP participant: its
    sampling generator (and the global torch RNG, used by drop-path) seeded by (seed, rank), and its
    model wrapped in ``DistributedDataParallel``. The EMA copy and the optimiser keep referring to
    the same parameters. No-op in a single process."""
    ctx = _CONTEXT
    if not ctx.active:
        return
    from torch.nn.parallel import DistributedDataParallel as DDP

    s = rank_seed(trainer.cfg.seed, ctx.rank)
    trainer.generator.manual_seed(s)
    device = trainer.device
    kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
    # DDP's constructor broadcasts rank 0's parameters, so all ranks start identical.
    trainer.model = DDP(trainer.model, **kwargs)
    torch.manual_seed(s)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper (or the module itself)."""
    return getattr(model, "module", model)


def log_main(msg: str) -> None:
    """Print on rank 0 only (stderr)."""
    if _CONTEXT.is_main:
        print(msg, file=sys.stderr)
