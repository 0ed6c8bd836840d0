#!/usr/bin/env bash
# The README's first Quick start command: the allreduce incident of docs/design.md section 1,
# reproduced by mechanism on the built-in `sim` platform.
#
# Runs examples/test_incident.py (2- and 4-rank mesh allreduce) under the four variants of
# examples/variants.yaml, 30 rounds each, then merges the JUnit XML with `pto-report`, which
# adds pass-rate intervals and Fisher's exact test between the variants.
#
# Outputs in out/demo/: junit.xml, trace.json (open in https://ui.perfetto.dev), logs/,
# report.md, report.html (the self-contained page; docs/img/report.png is its screenshot). Extra arguments go to pytest (e.g. --pto-rounds=10, -k ranks-2).
# Exit status: 0 when the demo ran (failing rounds are its point), pytest's status otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install.sh
OUT=out/demo
rm -rf "$OUT"
mkdir -p "$OUT"
echo "== pytest examples/test_incident.py (4 variants x ranks 2, 4 x 30 rounds)"
set +e
.venv/bin/python -m pytest examples/test_incident.py -p no:cacheprovider -q \
  --pto-variants examples/variants.yaml --pto-ranks=2 --pto-rounds=30 \
  --junitxml "$OUT/junit.xml" --pto-trace "$OUT/trace.json" --pto-log-dir "$OUT/logs" \
  --tb=no "$@"
status=$?
set -e
if [[ $status -ne 0 && $status -ne 1 ]]; then
  echo "demo: pytest exited with status $status (not a test failure): see above" >&2
  exit "$status"
fi
echo
echo "== pto-report $OUT/junit.xml (also written as Markdown to $OUT/report.md)"
.venv/bin/pto-report "$OUT/junit.xml" --baseline before-fixes
.venv/bin/pto-report "$OUT/junit.xml" --baseline before-fixes --format markdown \
  --output "$OUT/report.md" >/dev/null
.venv/bin/pto-report "$OUT/junit.xml" --baseline before-fixes --format html \
  --title "pytest-pto demo: the allreduce incident" --output "$OUT/report.html"
