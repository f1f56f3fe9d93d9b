"""What every `semirest` command shares: the one-line user error, progress bars, config arguments."""
from __future__ import annotations

import argparse
import json

from semirest.core.config import ConfigError, make_config
from semirest.core.data.datasets import DatasetLayoutError
from semirest.core.data.images import ImageReadError


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


class TqdmProgress:
    """Draws one tqdm bar per stage (features, coreset, train, ...) from ProgressEvents (on stderr)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._stage = None

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if event.stage != self._stage:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total, desc=f"{event.stage:>10}", leave=False, dynamic_ncols=True)
        bar = self._bar
        bar.total = event.total
        bar.n = event.done
        if event.info:
            info = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in event.info.items() if k != "eta_s"}
            if isinstance(event.info.get("eta_s"), (int, float)):  # the stage's own ETA (a bar set by hand has none)
                info["eta"] = tqdm.format_interval(event.info["eta_s"])
            bar.set_postfix(info, refresh=False)
        bar.refresh()
        if event.done >= event.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None


def add_config_arguments(p: argparse.ArgumentParser, setting: bool = True) -> None:
    """The knobs shared by every command that builds a model."""
    p.add_argument("--preset", default="fast", help="named configuration: fast (default), paper, or patchcore (the PatchCore baseline's own settings)")
    if setting:
        p.add_argument("--setting", default="un", choices=["un", "sup", "semi"], help="supervision setting")
    p.add_argument("--steps", type=int, default=None, help="training steps (overrides the preset)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set features.image_size=320 (repeatable)",
    )


def config_from_args(args: argparse.Namespace):
    overrides = list(args.overrides)
    if getattr(args, "steps", None) is not None:
        overrides.append(f"train.steps={args.steps}")
    if getattr(args, "device", None):
        overrides.append(f"device={json.dumps(args.device)}")
    try:
        return make_config(args.preset, getattr(args, "setting", "un"), overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def user_errors():
    """Exception types whose message is meant for the user (no traceback)."""
    errors = [ConfigError, DatasetLayoutError, ImageReadError, FileNotFoundError]
    try:  # absent from the desktop package, which leaves PyTorch out
        from semirest.core.features.backbones import BackboneError
        from semirest.core.train.checkpoint import CheckpointError
        from semirest.core.train.trainer import TrainingDataError

        errors += [BackboneError, CheckpointError, TrainingDataError]
    except ImportError:
        pass
    return tuple(errors)
