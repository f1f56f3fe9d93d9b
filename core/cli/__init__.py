"""`semirest` command line: thin sub-commands over the core API, one command group per module.

``benchmark`` (benchmark, demo), ``train`` (train, predict) and ``project`` (create, export,
import, info, train, runs) each add their sub-commands through ``register(subparsers)``;
``common`` holds what they share.
"""
from __future__ import annotations

import argparse
import sys

from semirest.core import __version__
from semirest.core.cli import benchmark, export_model, inspect, project, train
from semirest.core.cli.common import CliError, user_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semirest", description="SemiREST anomaly detection with budget annotation")
    parser.add_argument("--version", action="version", version=f"semirest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for module in (benchmark, project, train, export_model, inspect):
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
    except ModuleNotFoundError as exc:  # before user_errors(), which imports torch-based modules
        # the packaged studio (packaging/) leaves PyTorch out; training needs the pip install
        if (exc.name or "").split(".")[0] not in ("torch", "torchvision", "timm", "faiss"):
            raise
        print(
            f"semirest: error: this command needs {exc.name.split('.')[0]}, which this build does not include; "
            "install with pip (see the README's quick start) to train, predict or benchmark",
            file=sys.stderr,
        )
        return 2
    except user_errors() as exc:
        print(f"semirest: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semirest: interrupted", file=sys.stderr)
        return 130
