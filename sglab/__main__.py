"""``python -m sglab`` is the ``sglab`` command."""

import sys

from sglab.cli import main

sys.exit(main())
