"""`python -m retier`: the same as the `retier` command."""

import sys

from retier.cli import main

sys.exit(main())
