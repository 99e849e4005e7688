"""``promptfusion-make-prompts``: the command's code is perception.cli.make_prompts; this file lets a checkout run it as
``python tools/make_prompts.py`` (and torchrun, which takes a script path)."""

import sys

from perception.cli.make_prompts import main

if __name__ == "__main__":
    sys.exit(main())
