"""Seeded random draws that work whatever device the data lives on.

A ``torch.Generator`` lives on one device (usually the CPU); drawing directly on a CUDA tensor with
a CPU generator fails. Every stochastic step of the training code (Eq. 12 k-NN choice and noise,
Eq. 13 dropout, MixUp) therefore draws on the generator's device and moves the result to the data's
device, so a fixed seed gives the same draws on CPU and GPU.
"""
from __future__ import annotations

import numpy as np
import torch


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def uniform(shape, generator: torch.Generator | None, device=None, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) samples of ``shape`` on ``device``."""
    x = torch.rand(tuple(shape), generator=generator, device=_gen_device(generator), dtype=dtype)
    return x.to(device) if device is not None else x


def normal(shape, std: float, generator: torch.Generator | None, device=None, dtype=torch.float32) -> torch.Tensor:
    """N(0, std**2) samples of ``shape`` on ``device``."""
    x = torch.randn(tuple(shape), generator=generator, device=_gen_device(generator), dtype=dtype) * std
    return x.to(device) if device is not None else x


def permutation(n: int, generator: torch.Generator | None, device=None) -> torch.Tensor:
    """A random permutation of ``range(n)`` (int64) on ``device``."""
    p = torch.randperm(n, generator=generator, device=_gen_device(generator))
    return p.to(device) if device is not None else p


def beta(n: int, a: float, b: float, generator: torch.Generator | None, device=None,
         dtype=torch.float32) -> torch.Tensor:
    """``n`` samples of Beta(a, b).

    torch's Beta sampler takes no generator, so a seed is drawn from ``generator`` and numpy's
    Beta sampler does the work; the result is deterministic for a seeded generator.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=_gen_device(generator)).item())
    x = np.random.default_rng(seed).beta(a, b, size=n)
    return torch.as_tensor(x, dtype=dtype, device=device)
