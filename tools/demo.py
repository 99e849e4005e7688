"""``promptfusion-demo``: the command's code is perception.cli.demo; this file lets a checkout run it as
``python tools/demo.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
