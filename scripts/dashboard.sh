#!/usr/bin/env bash
# Command 1 of the README: set everything up, then serve the dashboard on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

port=${PORT:-8501}
if ! .venv/bin/python - "$port" <<'PY'
import socket, sys
with socket.socket() as s:
    sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0)
PY
then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
echo "==> SubnetScope: open http://127.0.0.1:${port} in your browser (Ctrl-C stops it)"
exec .venv/bin/python -m streamlit run dashboard/app.py --server.port "$port"
