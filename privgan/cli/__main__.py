"""``python -m privgan.cli``: the same as the ``privgan`` command."""

import sys

from privgan.cli import main

sys.exit(main())
