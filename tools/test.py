"""``promptfusion-test``: the command's code is perception.cli.test; this file lets a checkout run it as
``python tools/test.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.test import main

if __name__ == "__main__":
    sys.exit(main())
