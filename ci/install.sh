#!/usr/bin/env bash
# Create ./.venv if needed and install the project (compiling libpto's C runtime) with its
# dev tools. Idempotent; shared by ci/test.sh and ci/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
echo "== installing pytest-pto (builds libpto with cffi)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
