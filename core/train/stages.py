"""The stage sequence of paper 4.2, once: un / sup as one stage; semi as the un stage, then the semi
stage from its EMA model. ``SemiREST.fit`` and the studio's project run both call
:func:`train_stages`, so they cannot drift apart (distributed preparation, cancel handling)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from semirest.core import distributed
from semirest.core.config import Config, apply_setting
from semirest.core.progress import ProgressFn, no_progress
from semirest.core.train.trainer import ImageSet, Trainer, TrainingData, relabel


def unsupervised_stage(cfg: Config) -> Config:
    """The un configuration that precedes a semi run: same model, features and bank, the un
    hyper-parameters of paper 4.2, and the un length (make_config gives semi 3/8 of it)."""
    un = copy.deepcopy(cfg)
    apply_setting(un, "un")
    un.train.steps = max(1, int(round(cfg.train.steps * 8 / 3)))
    return un


@dataclass
class StagesResult:
    model: nn.Module  # the last stage's EMA model
    trainer: Trainer  # the last stage's trainer
    un_losses: list[float] = field(default_factory=list)  # the un stage's losses before a semi stage


def train_stages(cfg: Config, data: TrainingData, real: ImageSet | None, device,
                 progress: ProgressFn = no_progress, should_stop: Callable[[], bool] | None = None,
                 on_stage: Callable[[str, Config, TrainingData, Trainer], None] | None = None,
                 on_step: Callable[[dict], None] | None = None) -> StagesResult:
    """Train ``cfg``'s setting on prepared ``data`` (its normal and synthetic sets; ``data.real`` is
    not used) with ``real`` as the labelled images of the sup / semi stage (token labels as the
    setting wants them; semi: with their boxes).

    ``on_stage(name, stage_cfg, stage_data, trainer)`` is called before each stage trains (names
    "train un", "train sup", "train semi"), e.g. to keep the trainer for a save on cancel;
    ``on_step`` goes to every :class:`Trainer`. Cancelling raises
    :class:`~semirest.core.train.trainer.TrainingCancelled` from the stage that was running.
    """
    def stage(c: Config, d: TrainingData, name: str, model: nn.Module | None = None):
        trainer = Trainer(distributed.local_config(c), d, device, model=model, on_step=on_step)
        distributed.prepare_trainer(trainer)  # DDP + per-rank sampling under torchrun (no-op otherwise)
        if on_stage is not None:
            on_stage(name, c, d, trainer)
        return trainer, trainer.run(progress, should_stop)

    if cfg.setting != "semi":
        trainer, model = stage(cfg, replace(data, real=real if cfg.setting == "sup" else None), "train " + cfg.setting)
        return StagesResult(model, trainer)
    trainer, model = stage(unsupervised_stage(cfg), replace(data, real=None), "train un")
    un_losses = list(trainer.losses)
    semi_data = replace(data, synthetic=relabel(cfg, data.synthetic), real=real)
    trainer, model = stage(cfg, semi_data, "train semi", model=copy.deepcopy(model).train())
    return StagesResult(model, trainer, un_losses)
