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
#                  concurrent cells never use the same device (default: /tmp/pto-locks)
#   PTO_ROUNDS     override `rounds` of ci/matrix.yaml
#   PTO_CELL_TESTS, PTO_CELL_VARIANTS_FILE  override `tests` / `variants_file`
#   PYTHON         interpreter with pytest-pto installed (default: .venv/bin/python;
#                  bash ci/install.sh creates it)
#
# Sharding: the cell collects the items (pytest --collect-only), keeps those of this rank
# count (ids with a `ranks-N` part; tests without one run at --pto-ranks RANKS), and runs
# every NSHARDS-th of them starting at SHARD, in collection order — rounds are consecutive
# items, so shard K gets rounds K, K+N, ... of every test. Deterministic, no plugin option.
#
# Exit status: pytest's (0 all rounds passed, 1 some failed, ...); 0 with a message when the
# shard has no items; 2 on bad arguments.
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

# ci/matrix.yaml keys, overridable from the environment
read -r M_TESTS M_VARIANTS M_ROUNDS < <("$PY" - <<'PYEOF'
import yaml
m = yaml.safe_load(open("ci/matrix.yaml"))
print(m["tests"], m["variants_file"], m["rounds"])
PYEOF
)
[[ -n ${M_ROUNDS:-} ]] || { echo "run-cell.sh: cannot read tests/variants_file/rounds from ci/matrix.yaml" >&2; exit 2; }
TESTS=${PTO_CELL_TESTS:-$M_TESTS}
VARIANTS_FILE=${PTO_CELL_VARIANTS_FILE:-$M_VARIANTS}
ROUNDS=${PTO_ROUNDS:-$M_ROUNDS}

CELL="${PLATFORM}-${VARIANT}-r${RANKS}-s${SHARD}of${NSHARDS}"
ART=${PTO_ARTIFACTS:-artifacts/$CELL}
export PTO_LOCK_DIR=${PTO_LOCK_DIR:-/tmp/pto-locks}
mkdir -p "$ART" "$PTO_LOCK_DIR"

PTO_ARGS=(
  --pto-platform "$PLATFORM"
  --pto-ranks "$RANKS"
  --pto-rounds "$ROUNDS"
  --pto-variants "$VARIANTS_FILE"
  --pto-variant "$VARIANT"
  --pto-lock-dir "$PTO_LOCK_DIR"
)

echo "== cell $CELL: $TESTS, $ROUNDS rounds, lock dir $PTO_LOCK_DIR, artifacts $ART"
SELECTED="$ART/selected-items.txt"
"$PY" -m pytest -p no:cacheprovider --rootdir "$PWD" --collect-only -q "${PTO_ARGS[@]}" "$TESTS" "$@" >"$ART/collect.log" 2>&1 \
  || { cat "$ART/collect.log" >&2; echo "run-cell.sh: collection failed" >&2; exit 2; }
"$PY" - "$ART/collect.log" "$RANKS" "$SHARD" "$NSHARDS" >"$SELECTED" <<'PYEOF'
import re, sys
log, ranks, shard, nshards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
token = re.compile(r"(?:\[|-)ranks-(\d+)(?=-|\])")
items = []
for line in open(log, encoding="utf-8"):
    line = line.strip()
    if "::" not in line or line.startswith(("=", "<")) or " " in line:
        continue
    m = token.search(line)
    if m is None or int(m.group(1)) == ranks:
        items.append(line)
for i, nodeid in enumerate(items):
    if i % nshards == shard - 1:
        print(nodeid)
PYEOF
COUNT=$(wc -l <"$SELECTED")
if [[ $COUNT -eq 0 ]]; then
  echo "== cell $CELL: no items in this shard; nothing to run"
  exit 0
fi
echo "== cell $CELL: running $COUNT items (shard $SHARD/$NSHARDS)"

mapfile -t ITEMS <"$SELECTED"
set +e
"$PY" -m pytest -p no:cacheprovider --rootdir "$PWD" "${PTO_ARGS[@]}" \
  --junitxml="$ART/junit-$CELL.xml" \
  --pto-trace="$ART/trace-$CELL.json" \
  --pto-log-dir="$ART/logs" \
  "${ITEMS[@]}" "$@"
STATUS=$?
set -e
echo "== cell $CELL: pytest exit status $STATUS; artifacts:"
ls -l "$ART"
exit "$STATUS"
