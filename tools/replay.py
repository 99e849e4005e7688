"""``promptfusion-replay``: the command's code is perception.cli.replay; this file lets a checkout run it as
``python tools/replay.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.replay import main

if __name__ == "__main__":
    sys.exit(main())
