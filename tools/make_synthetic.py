"""``promptfusion-make-synthetic``: the command's code is perception.cli.make_synthetic; this file lets a
checkout run it as ``python tools/make_synthetic.py``."""

import sys

from perception.cli.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())
