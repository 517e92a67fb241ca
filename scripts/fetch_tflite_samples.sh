#!/usr/bin/env bash
# Real TFLite models written by others, for the TFLite explorer's tests and demo: the 14 .tflite
# files inside the mediapipe 0.10.21 wheel (later wheels carry none). Downloaded from PyPI once,
# extracted (not installed) into cache/testdata/mediapipe/.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=cache/testdata/mediapipe
if compgen -G "$dest/*.tflite" >/dev/null; then
  exit 0
fi
echo "==> fetching mediapipe 0.10.21's .tflite models (35 MB wheel, extracted, not installed)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m pip download --quiet --no-deps mediapipe==0.10.21 -d "$tmp" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
mkdir -p "$dest"
.venv/bin/python - "$tmp" "$dest" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("mediapipe-*.whl"))
dest = pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as zf:
    for member in zf.namelist():
        if member.endswith(".tflite"):
            (dest / pathlib.PurePosixPath(member).name).write_bytes(zf.read(member))
print(f"{len(list(dest.glob('*.tflite')))} models in {dest}")
PY
