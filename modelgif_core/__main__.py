"""`python -m modelgif_core` is the `modelgif` command."""

import sys

from .cli import main

sys.exit(main())
