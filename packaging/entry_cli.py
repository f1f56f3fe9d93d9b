"""PyInstaller entry point of the `semirest` executable (project commands; see packaging/README.md)."""
import sys

from semirest.core.cli import main

if __name__ == "__main__":
    sys.exit(main())
