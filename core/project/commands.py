"""`semirest project ...` sub-commands (placeholder until the store lands)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("project", help="create, export and inspect labeling projects")
    p.set_defaults(func=lambda args: p.print_help())
