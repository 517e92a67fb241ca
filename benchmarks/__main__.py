"""Entry point of `python -m benchmarks`."""

import os
import sys

# Keep library chatter (progress bars, hub warnings) out of the printed table.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.runner import main

sys.exit(main())
