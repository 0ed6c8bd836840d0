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
# A sanitizer failure must not hide the main suite's result (nor the reverse): run both, then
# fail at the end naming every stage that failed.
SANITIZE=skipped
if [[ -z ${PTO_SKIP_SANITIZE:-} ]]; then
  echo "== C runtime under AddressSanitizer+UBSan and ThreadSanitizer"
  SANITIZE=0
  bash ci/sanitize.sh || SANITIZE=$?
fi
echo "== pytest"
PYTEST=0
.venv/bin/python -m pytest "$@" || PYTEST=$?
echo "== ci/test.sh summary: sanitizers: $SANITIZE (0 = clean), pytest: exit $PYTEST"
if [[ $PYTEST -ne 0 ]]; then
  exit "$PYTEST"
fi
if [[ $SANITIZE != skipped && $SANITIZE -ne 0 ]]; then
  echo "ci/test.sh: the sanitizer stage failed (see its summary above)" >&2
  exit 1
fi
