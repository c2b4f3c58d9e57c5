"""`python -m metering.cli ...`: the `metering` command without the installed script."""

import sys

from metering.cli.main import main

sys.exit(main())
