#!/usr/bin/env bash
# Run one CI matrix cell: the pto tests of ci/matrix.yaml for one platform, variant, rank
# count and shard, writing JUnit XML, a Chrome trace and per-rank logs into an artifacts dir.
#
#   bash ci/run-cell.sh PLATFORM VARIANT RANKS SHARD/NSHARDS [extra pytest args...]
#   e.g. bash ci/run-cell.sh sim before-fixes 2 1/2
#
# Environment:
#   PTO_ARTIFACTS  output directory (default: artifacts/<cell name>)
#   PTO_LOCK_DIR   device lock directory, SHARED by every job on one runner machine so
#                  concurrent cells never use the same device (default: the plugin's own
#                  default, <tmp>/pto-locks-<user>, asked from pytest_pto so a cell and a
#                  plain pytest session on one machine always exclude each other)
#   PTO_ROUNDS     override `rounds` of the matrix
#   PTO_CELL_TESTS, PTO_CELL_VARIANTS_FILE  override `tests` (space-separated paths) /
#                  `variants_file`
#   PTO_MATRIX     matrix file (default: ci/matrix.yaml)
#   PYTHON         interpreter with pytest-pto installed (default: .venv/bin/python;
#                  bash ci/install.sh creates it)
#
# `tests:` in the matrix is one path, several space-separated paths, or a YAML list.
#
# Sharding: the cell collects the items (pytest in collect-only mode, node ids taken from the
# collected items by a small in-process plugin, so extra arguments such as -q/-v cannot change
# what is parsed; -k/-m do narrow the selection), keeps those of this rank count (ids with a
# `ranks-N` part; tests without one run at --pto-ranks RANKS), and runs every NSHARDS-th of
# them starting at SHARD, in collection order -- rounds are consecutive items, so shard K gets
# rounds K, K+N, ... of every test. Deterministic, no plugin option.
#
# Exit status: pytest's (0 all rounds passed, 1 some failed, ...); 2 on bad arguments, a
# missing or broken matrix file, or a collection error; 5 (pytest's "no tests collected") when
# the cell selects nothing -- a cell that runs nothing is never green.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bash ci/run-cell.sh PLATFORM VARIANT RANKS SHARD/NSHARDS [pytest args...]" >&2; exit 2; }
[[ $# -ge 4 ]] || usage
PLATFORM=$1 VARIANT=$2 RANKS=$3 SHARDSPEC=$4
shift 4
[[ $RANKS =~ ^[1-9][0-9]*$ ]] || { echo "run-cell.sh: RANKS=$RANKS: must be an integer >= 1" >&2; exit 2; }
if [[ ! $SHARDSPEC =~ ^([1-9][0-9]*)/([1-9][0-9]*)$ ]] || (( BASH_REMATCH[1] > BASH_REMATCH[2] )); then
  echo "run-cell.sh: SHARD/NSHARDS=$SHARDSPEC: must be K/N with 1 <= K <= N" >&2; exit 2
fi
SHARD=${BASH_REMATCH[1]} NSHARDS=${BASH_REMATCH[2]}
[[ $PLATFORM =~ ^[A-Za-z0-9_.-]+$ && $VARIANT =~ ^[A-Za-z0-9_.+-]+$ ]] \
  || { echo "run-cell.sh: PLATFORM and VARIANT must be plain names" >&2; exit 2; }

PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || { echo "run-cell.sh: $PY not found: run 'bash ci/install.sh' first or set PYTHON" >&2; exit 2; }
MATRIX=${PTO_MATRIX:-ci/matrix.yaml}

# The matrix keys, one per line (tests: one line per path), or the script's own message + 2.
MATRIX_OUT=$("$PY" - "$MATRIX" <<'PYEOF'
import sys

path = sys.argv[1]
def fail(msg):
    print(f"run-cell.sh: {path}: {msg}", file=sys.stderr)
    sys.exit(2)
try:
    import yaml
    with open(path, encoding="utf-8") as f:
        m = yaml.safe_load(f)
except OSError as e:
    fail(f"cannot read it ({e.strerror})")
except yaml.YAMLError as e:
    fail(f"not valid YAML: {' '.join(str(e).split())}")
if not isinstance(m, dict):
    fail("must be a mapping with keys tests, variants_file, rounds")
missing = [k for k in ("tests", "variants_file", "rounds") if k not in m]
if missing:
    fail(f"missing key(s): {', '.join(missing)}")
tests = m["tests"]
if isinstance(tests, str):
    tests = tests.split()
if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
    fail("tests: must be a path, space-separated paths or a list of paths")
if not isinstance(m["variants_file"], str) or not m["variants_file"].strip():
    fail("variants_file: must be a path")
rounds = m["rounds"]
if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
    fail(f"rounds: {rounds!r}: must be an integer >= 1")
print(m["variants_file"].strip())
print(rounds)
for t in tests:
    print(t.strip())
PYEOF
) || exit 2
mapfile -t M_LINES <<<"$MATRIX_OUT"
M_VARIANTS=${M_LINES[0]} M_ROUNDS=${M_LINES[1]}
if [[ -n ${PTO_CELL_TESTS:-} ]]; then
  read -r -a TESTS <<<"$PTO_CELL_TESTS"
else
  TESTS=("${M_LINES[@]:2}")
fi
VARIANTS_FILE=${PTO_CELL_VARIANTS_FILE:-$M_VARIANTS}
ROUNDS=${PTO_ROUNDS:-$M_ROUNDS}

CELL="${PLATFORM}-${VARIANT}-r${RANKS}-s${SHARD}of${NSHARDS}"
ART=${PTO_ARTIFACTS:-artifacts/$CELL}
if [[ -z ${PTO_LOCK_DIR:-} ]]; then
  PTO_LOCK_DIR=$("$PY" -c 'from pytest_pto._settings import default_lock_dir; print(default_lock_dir())') \
    || { echo "run-cell.sh: cannot ask pytest_pto for its default lock dir" >&2; exit 2; }
fi
export PTO_LOCK_DIR
mkdir -p "$ART" "$PTO_LOCK_DIR"

# '=' forms only: a path in the space form would be a rootdir candidate for pytest
PTO_ARGS=(
  "--pto-platform=$PLATFORM"
  "--pto-ranks=$RANKS"
  "--pto-rounds=$ROUNDS"
  "--pto-variants=$VARIANTS_FILE"
  "--pto-variant=$VARIANT"
  "--pto-lock-dir=$PTO_LOCK_DIR"
)

echo "== cell $CELL: ${TESTS[*]}, $ROUNDS rounds, lock dir $PTO_LOCK_DIR, artifacts $ART"
SELECTED="$ART/selected-items.txt"
# Collection: node ids come from the collected items themselves, never from parsing the
# terminal output (whose format -q/-v/-rA... would change).
set +e
"$PY" - "$ART/collected-items.txt" -p no:cacheprovider --rootdir="$PWD" --collect-only \
  "${PTO_ARGS[@]}" "${TESTS[@]}" "$@" >"$ART/collect.log" 2>&1 <<'PYEOF'
import sys

import pytest

out, args = sys.argv[1], sys.argv[2:]


class Items:
    def pytest_collection_finish(self, session):
        with open(out, "w", encoding="utf-8") as f:
            f.writelines(item.nodeid + "\n" for item in session.items)


sys.exit(int(pytest.main(args, plugins=[Items()])))
PYEOF
COLLECT=$?
set -e
if [[ $COLLECT -ne 0 && $COLLECT -ne 5 ]]; then
  cat "$ART/collect.log" >&2
  echo "run-cell.sh: collection failed (pytest exit $COLLECT)" >&2
  exit 2
fi
touch "$ART/collected-items.txt"
"$PY" - "$ART/collected-items.txt" "$RANKS" "$SHARD" "$NSHARDS" >"$SELECTED" <<'PYEOF'
import re, sys
path, ranks, shard, nshards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
token = re.compile(r"(?:\[|-)ranks-(\d+)(?=-|\])")
items = []
for line in open(path, encoding="utf-8"):
    nodeid = line.rstrip("\n")
    if not nodeid:
        continue
    m = token.search(nodeid)
    if m is None or int(m.group(1)) == ranks:
        items.append(nodeid)
for i, nodeid in enumerate(items):
    if i % nshards == shard - 1:
        print(nodeid)
PYEOF
COUNT=$(wc -l <"$SELECTED")
if [[ $COUNT -eq 0 ]]; then
  TOTAL=$(wc -l <"$ART/collected-items.txt")
  echo "run-cell.sh: cell $CELL selects nothing: $TOTAL items collected from ${TESTS[*]}," \
    "none of them for ranks $RANKS in shard $SHARD/$NSHARDS (see $ART/collect.log)" >&2
  exit 5
fi
echo "== cell $CELL: running $COUNT items (shard $SHARD/$NSHARDS)"

mapfile -t ITEMS <"$SELECTED"
set +e
"$PY" -m pytest -p no:cacheprovider --rootdir="$PWD" "${PTO_ARGS[@]}" \
  --junitxml="$ART/junit-$CELL.xml" \
  --pto-trace="$ART/trace-$CELL.json" \
  --pto-log-dir="$ART/logs" \
  "${ITEMS[@]}" "$@"
STATUS=$?
set -e
echo "== cell $CELL: pytest exit status $STATUS; artifacts:"
ls -l "$ART"
exit "$STATUS"
