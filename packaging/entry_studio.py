"""PyInstaller entry point of the `semirest-studio` executable."""
import sys

from semirest.app.main import main

if __name__ == "__main__":
    sys.exit(main())
