#!/usr/bin/env bash
# One box, every core: N app processes on ports BASE..BASE+N-1 behind nginx on PORT, sessions sticky.
#   deploy/serve_many.sh [N (default: the number of cores)] [PORT (default 8501)]
# Needs nginx on the PATH (apt-get install nginx-light). Stops everything on Ctrl-C. `make run` stays the
# one-process default; this is for a workshop (README: how many students per core).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-$(nproc)}
PORT=${2:-8501}
BASE=${BASE:-8601}
PY=${PY:-.venv/bin/python}
CONF=$(mktemp /tmp/nested-lab-nginx.XXXXXX.conf)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; nginx -c "$CONF" -s stop 2>/dev/null || true; rm -f "$CONF"; }
trap cleanup EXIT INT TERM
upstreams=""
for i in $(seq 0 $((N - 1))); do
  p=$((BASE + i))
  NESTED_TORCH_THREADS=1 "$PY" -m app.serve --server.port "$p" --server.address 127.0.0.1 \
    --server.headless true --browser.gatherUsageStats false >"/tmp/nested-lab-$p.log" 2>&1 &
  pids+=($!)
  upstreams+="        server 127.0.0.1:$p;"$'\n'
done
python3 - "$CONF" "$PORT" "$upstreams" <<'PYEOF'
import sys
conf, port, upstreams = sys.argv[1:]
text = open("deploy/nginx.conf.template").read().replace("__UPSTREAMS__", upstreams.rstrip()).replace("__PORT__", port)
open(conf, "w").write(text)
PYEOF
for i in $(seq 0 $((N - 1))); do  # every replica healthy (models warm) before nginx takes traffic
  until curl -sf "http://127.0.0.1:$((BASE + i))/_stcore/health" >/dev/null; do sleep 1; done
done
nginx -c "$CONF" -g "daemon off;" &
pids+=($!)
echo "Nested Learning Lab: $N processes behind http://localhost:$PORT (logs /tmp/nested-lab-*.log)"
wait
