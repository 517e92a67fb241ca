"""Entry point of `python -m engine`."""

import os
import sys

# Keep library chatter (progress bars, hub warnings) out of the CLI's stdout/stderr contract.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from engine.cli import main

sys.exit(main())
