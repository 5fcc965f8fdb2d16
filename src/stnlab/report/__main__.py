"""``python -m stnlab.report`` = ``stnlab-report``."""

import sys

from stnlab.cli.report import main

sys.exit(main())
