"""``promptfusion-export``: the command's code is perception.cli.export; this file lets a checkout run it as
``python tools/export_onnx.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
