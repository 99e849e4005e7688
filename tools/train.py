"""``promptfusion-train``: the command's code is perception.cli.train; this file lets a checkout run it as
``python tools/train.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
