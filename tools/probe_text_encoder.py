"""``promptfusion-probe-text``: the code is perception.language.probe; this file lets a checkout run it as
``python tools/probe_text_encoder.py``."""

import sys

from perception.language.probe import main

if __name__ == "__main__":
    sys.exit(main())
