"""``promptfusion-world-report``: the command's code is perception.cli.world_report; this file lets a checkout run it as
``python tools/world_report.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.world_report import main

if __name__ == "__main__":
    sys.exit(main())
