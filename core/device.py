"""Which device a process computes on: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``, or the rank's GPU
under torchrun (``local_rank``)."""
from __future__ import annotations

import torch

from semirest.core.config import Config


def pick_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """CUDA when present (or asked for), else the CPU.

    ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK`` when a torchrun rank passes its ``local_rank``
    (modulo the GPUs present); ``cpu`` and an explicit ``cuda:N`` are honoured. Asking for CUDA
    where there is none raises RuntimeError.
    """
    if spec in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank is None:
            return torch.device("cuda")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if spec == "auto":
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{spec}' was requested but no CUDA device is available")
    return dev


def autocast(cfg: Config, device: torch.device):
    """bf16 autocast for the Swin when ``train.amp`` is on (losses are computed in float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(cfg.train.amp))
