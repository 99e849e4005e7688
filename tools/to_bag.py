"""``promptfusion-to-bag``: the command's code is perception.cli.to_bag; this file lets a checkout run it as
``python tools/to_bag.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.to_bag import main

if __name__ == "__main__":
    sys.exit(main())
