#!/usr/bin/env bash
# The README's second Quick start command and what .ci/run calls: install, then lint,
# type-check and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
if [[ -z ${PTO_SKIP_SANITIZE:-} ]]; then
  echo "== C runtime under AddressSanitizer+UBSan and ThreadSanitizer"
  bash ci/sanitize.sh
fi
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
