#!/usr/bin/env bash
# Rebuild the cffi extension in place (libpto/_pto*.so) after editing libpto/csrc.
# Serialised with flock so concurrent rebuilds never interleave.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
if ! flock /tmp/pto-build.lock "$PY" libpto/_build.py >/tmp/pto-build.$$.log 2>&1; then
  cat /tmp/pto-build.$$.log; rm -f /tmp/pto-build.$$.log; exit 1
fi
rm -f /tmp/pto-build.$$.log
