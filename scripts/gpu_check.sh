#!/usr/bin/env bash
# The GPU check (issue 19): on one H100 / H200, no network, under 8 minutes. Builds the 1B and 8B
# zoo models from their configs on the GPU and times every method on them; writes a JSON report
# (cache/benchmarks/gpu_check-<UTC time>.json, or --out PATH) and exits 1 naming any step that
# failed or ran past its budget. `scripts/gpu_check.sh --dry` checks on a CPU that it would run.
# Needs the project's environment (scripts/setup.sh) and about 40 GB of disk under cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
python="python3"
[ -x .venv/bin/python ] && python=".venv/bin/python"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
export TOKENIZERS_PARALLELISM=false
exec "$python" -m benchmarks.gpu_check "$@"
