"""`semirest` command line: thin sub-commands over the core API.

Each command group lives next to what it drives and registers itself here through a
``register(subparsers)`` function, so this file stays a table of contents plus the two
commands of the foundation (``benchmark`` and ``demo``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from semirest.core import __version__


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


class TqdmProgress:
    """Draws one tqdm bar per pipeline stage from ProgressEvents (on stderr)."""

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
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in event.info.items()}, refresh=False)
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
    from semirest.core.config import ConfigError, make_config

    overrides = list(args.overrides)
    if getattr(args, "steps", None) is not None:
        overrides.append(f"train.steps={args.steps}")
    if getattr(args, "device", None):
        overrides.append(f"device={json.dumps(args.device)}")
    try:
        return make_config(args.preset, getattr(args, "setting", "un"), overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _user_errors():
    """Exception types whose message is meant for the user (no traceback)."""
    from semirest.core.config import ConfigError
    from semirest.core.data.datasets import DatasetLayoutError
    from semirest.core.data.images import ImageReadError
    errors = [ConfigError, DatasetLayoutError, ImageReadError, FileNotFoundError]
    try:  # absent from the desktop package, which leaves PyTorch out
        from semirest.core.features.backbones import BackboneError
        from semirest.core.train.checkpoint import CheckpointError

        errors += [BackboneError, CheckpointError]
    except ImportError:
        pass
    return tuple(errors)


# -- benchmark ------------------------------------------------------------------------------------
def cmd_benchmark(args: argparse.Namespace) -> int:
    from semirest.core.benchmark import format_table, run_benchmark, write_json
    from semirest.core.data.datasets import list_categories

    cfg = config_from_args(args)
    categories = args.category or list_categories(args.data)
    results = []
    for cat in categories:
        for method in args.method:
            progress = TqdmProgress(enabled=not args.quiet)
            size = (f"x{cfg.features.input_scale:g} scale" if cfg.features.input_scale > 0
                    else f"{cfg.features.image_size}px")
            print(f"[{cat}] {method} ({cfg.preset} preset, {cfg.features.backbone} @ {size})", file=sys.stderr)
            try:
                result = run_benchmark(cfg, args.data, cat, method, progress)
            finally:
                progress.close()
            results.append(result)
            print(format_table([result]).splitlines()[-1], file=sys.stderr)
    print(format_table(results))
    if args.json:
        out = Path(args.json)
        if len(results) == 1:
            write_json(results[0], out)
        else:
            write_json({"results": results}, out)
        print(f"wrote {out}", file=sys.stderr)
    return 0


# -- demo -----------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from semirest.core.benchmark import evaluate_category, format_table, write_json
    from semirest.core.config import make_config
    from semirest.core.data.datasets import load_mvtec_category
    from semirest.core.data.demo import make_demo_dataset
    from semirest.core.data.images import write_png
    from semirest.core.maps import overlay

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="semirest-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / "data"
    make_demo_dataset(data_root, seed=args.seed)
    cat = load_mvtec_category(data_root, "demo")
    cfg = make_config("fast", "un", args.overrides)
    print(f"demo dataset: {len(cat.train)} normal training images, {len(cat.test)} test images in {data_root}", file=sys.stderr)
    progress = TqdmProgress()
    try:
        ev = evaluate_category(cfg, cat, "patchcore", progress)
    finally:
        progress.close()
    heat_dir = out / "heatmaps"
    heat_dir.mkdir(exist_ok=True)
    # one colour scale for all images, so maps are comparable: 1st to 99.9th percentile
    allv = np.concatenate([m.ravel() for m in ev.maps])
    vmin, vmax = float(np.percentile(allv, 1)), float(np.percentile(allv, 99.9))
    for s, im, m, mask in zip(ev.samples, ev.images, ev.maps, ev.masks):
        panel = np.concatenate([im, overlay(im, m, vmin, vmax, 0.5), np.repeat(mask[:, :, None], 3, 2).astype(np.uint8) * 255], axis=1)
        write_png(heat_dir / f"{s.defect_type}_{s.path.stem}.png", panel)
    table = format_table([ev.result])
    from semirest.core.files import write_atomic

    write_atomic(out / "metrics.txt", table + "\n")
    write_json(ev.result, out / "metrics.json")
    print(table)
    print(f"\nheatmaps (image | overlay | ground truth): {heat_dir}\nmetrics: {out / 'metrics.txt'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semirest", description="SemiREST anomaly detection with budget annotation")
    parser.add_argument("--version", action="version", version=f"semirest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("benchmark", help="fit and evaluate methods on MVTec-layout categories")
    p.add_argument("--data", required=True, help="dataset root (<root>/<category>/train/good ...)")
    p.add_argument("--category", action="append", help="category (repeatable; default: all under --data)")
    p.add_argument("--method", action="append", help="method (repeatable): patchcore, semirest")
    p.add_argument("--json", help="write the result(s) as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("demo", help="build a small synthetic defect dataset and run the baseline on it")
    p.add_argument("--out", help="output folder (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)

    from semirest.core import inspection
    from semirest.core.project import commands as project_commands
    from semirest.core.train import commands as train_commands
    from semirest.core.train import export_command

    for module in (project_commands, train_commands, export_command, inspection):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "method", "unset") is None:
        args.method = ["patchcore"]
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"semirest: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # before _user_errors(), which imports torch-based modules
        # the packaged studio (packaging/) leaves PyTorch out; training needs the pip install
        if (exc.name or "").split(".")[0] not in ("torch", "torchvision", "timm", "faiss"):
            raise
        print(
            f"semirest: error: this command needs {exc.name.split('.')[0]}, which this build does not include; "
            "install with pip (see the README's quick start) to train, predict or benchmark",
            file=sys.stderr,
        )
        return 2
    except _user_errors() as exc:
        print(f"semirest: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semirest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the imported module's main, so errors raised by command modules (which import
    # semirest.core.cli) are the same CliError class that main() catches.
    from semirest.core.cli import main as _main

    sys.exit(_main())
