#!/usr/bin/env bash
# Mutation check of the core behaviours: apply each curated mutant of ci/mutants.yaml (one at a
# time, to a scratch copy of the tree - never the working tree), rebuild the C extension where
# C changed, run the tests that state that behaviour's contract (-x), and print one line per
# mutant, then `killed K/N` and the elapsed time. Exits 1 if any mutant survives, 2 if a
# mutant is stale (its search string no longer occurs exactly once) or a baseline fails.
#
#   bash ci/mutants.sh                 # every mutant (under 10 minutes on a 2-core machine)
#   bash ci/mutants.sh aging deadlock-branch     # some, by id
#   bash ci/mutants.sh --list          # what is checked
#
# Run it before resolving any issue that touches a behaviour listed there. Adding a behaviour:
# add a mutant to ci/mutants.yaml (its header says how) and see it killed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
[[ -x $PY ]] || bash ci/install.sh
exec "$PY" ci/mutants.py "$@"
