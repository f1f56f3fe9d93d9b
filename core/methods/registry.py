"""The method interface and the registry: each method registers its factory where it is defined (as
timm's ``register_model``), so the benchmark finds every method without importing them one by one."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from semirest.core.config import Config
from semirest.core.data.datasets import Category
from semirest.core.progress import ProgressFn


class Method(Protocol):
    """``fit`` on normal training images; ``predict`` maps at each image's own resolution."""

    def fit(self, images: list[np.ndarray], progress: ProgressFn) -> None: ...

    def predict(self, images: list[np.ndarray], progress: ProgressFn) -> list[np.ndarray]: ...


MethodFactory = Callable[[Config, torch.device, Category], Method]

METHODS: dict[str, MethodFactory] = {}


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: ``@register_method("patchcore")`` over a factory ``(config, device, category) -> Method``."""

    def register(factory: MethodFactory) -> MethodFactory:
        if name in METHODS:
            raise ValueError(f"method '{name}' is registered twice")
        METHODS[name] = factory
        return factory

    return register
