"""`semirest` command line: thin sub-commands over the core API.

Each command group lives next to what it drives and registers itself here through a
``register(subparsers)`` function, so this file stays a table of contents.
"""
from __future__ import annotations

import argparse
import sys

from semirest.core import __version__


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semirest", description="SemiREST anomaly detection")
    parser.add_argument("--version", action="version", version=f"semirest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from semirest.core.project import commands as project_commands

    for module in (project_commands,):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"semirest: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semirest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
