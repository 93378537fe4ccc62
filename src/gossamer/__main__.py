"""``python -m gossamer``."""

import sys

from gossamer.cli.main import main

sys.exit(main())
