#!/usr/bin/env bash
# The converter's own environment, .venv-converter: Google's litert-torch (which pulls in JAX,
# ai-edge-quantizer and litert-lm-builder) beside the app's pins, never inside .venv.
# About 70 s and 2.1 GB. Only the converter-made TFLite samples need it
# (scripts/build_converted_samples.sh); the app and its tests read what it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-converter
# Keep these equal to engine/tflite/converted/specs.py (CONVERTER_VERSION) and the app's pins.
PINS=(torch==2.13.0 litert-torch==0.10.0 transformers==5.24.0)
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('litert-torch') == '0.10.0'" 2>/dev/null; then
  exit 0
fi
echo "==> installing the converter's environment ($VENV: litert-torch 0.10.0, about 70 s)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# torch first, pinned: it is the CPU wheel on this disk, and litert-torch accepts it (>=2.4, <2.15)
"$VENV/bin/pip" install -q "${PINS[0]}"
"$VENV/bin/pip" install -q "${PINS[@]}"
