"""`python -m semirest.core.cli` (and `torchrun -m semirest.core.cli`): the `semirest` command."""
import sys

from semirest.core.cli import main

sys.exit(main())
