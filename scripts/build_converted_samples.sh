#!/usr/bin/env bash
# The TFLite samples Google's converter makes from Hugging Face models (engine/tflite/converted):
# restored from the cache keyed by the converter's version when they are there
# ($SUBNETSCOPE_CONVERTED_CACHE, else ~/.cache/subnetscope/converted), else converted here: the
# converter's environment (scripts/setup_converter.sh, about 70 s) and about 4 minutes of
# conversion on two cores. Needs the app's environment (scripts/setup.sh) and the demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
if .venv/bin/python -m engine tflite samples --json \
  | .venv/bin/python -c "import json, sys; sys.exit(0 if all(s['built'] for s in json.load(sys.stdin)['samples']) else 1)"; then
  echo "==> converter-made TFLite samples: all built (cache keyed by the converter's version)"
  exit 0
fi
./scripts/setup_converter.sh
echo "==> converting the TFLite samples with litert-torch (about 4 minutes)"
OMP_NUM_THREADS=1 .venv/bin/python -m engine tflite samples --build
