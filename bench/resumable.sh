# Sourced by the training scripts in bench/: one thread per run, and train OUT ARGS... that skips a finished
# run (OUT/model exists) and resumes a stopped one (OUT/last exists).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
train() {  # out, then train's arguments
  local out=$1; shift
  [ -f "$out/model/config.json" ] && return 0
  local r=""; [ -d "$out/last" ] && r=--resume
  "$PY" -m nested train "$@" --out "$out" $r --quiet
}
