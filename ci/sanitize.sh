#!/usr/bin/env bash
# Build libpto with ASan+UBSan, and separately with TSan, into TEMPORARY copies of the tree (the
# shared libpto/_pto.abi3.so is never touched), and run the tests of the C code (runtime, comm
# window, mailboxes) under each sanitizer. ci/test.sh runs it; PTO_SKIP_SANITIZE=1 skips it there.
#
#   bash ci/sanitize.sh            # both
#   bash ci/sanitize.sh asan       # one of: asan tsan
#
# How: copy libpto/, pytest_pto/, tests/, conftest.py and pyproject.toml into a temp dir, build
# the extension there with PTO_CFLAGS/PTO_LDFLAGS, and run pytest from that dir with it first
# on PYTHONPATH and the sanitizer runtime LD_PRELOADed (Python itself is not instrumented).
# detect_leaks=0: CPython's own allocations at exit are not ours. halt_on_error=1 everywhere,
# so any report fails the run. TSan runs under `setarch -R` (no ASLR): its shadow layout
# rejects the high-entropy mmap bases of recent kernels.
#
# No `pytest -x`, and a failing sanitizer does not stop the next one: every stage runs to the
# end so one failure never hides another; the script then prints a summary line per stage and
# exits 1 if any stage failed (ci/test.sh still runs the main suite after it, then fails).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
WHICH=${*:-asan tsan}
# every test that drives C code in-process; PTO_SANITIZE_TESTS narrows or widens it
TESTS=${PTO_SANITIZE_TESTS:-"tests/runtime tests/world/test_mailbox.py"}
TMP=$(mktemp -d /tmp/pto-sanitize.XXXXXX)
trap '[ -n "${PTO_SANITIZE_KEEP:-}" ] || rm -rf "$TMP"' EXIT

stage() { # dir cflags ldflags
  local dir=$TMP/$1
  mkdir -p "$dir"
  cp -r libpto pytest_pto tests conftest.py pyproject.toml "$dir/"
  rm -f "$dir"/libpto/_pto*.so
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  (cd "$dir" && PTO_CFLAGS="$2" PTO_LDFLAGS="$3" "$PY" libpto/_build.py >/dev/null)
}

run_tests() { # dir preload envs...
  local dir=$TMP/$1 preload=$2 status=0
  shift 2
  (cd "$dir" && env PYTHONPATH="$dir" PTO_SANITIZER="$1" "${@:2}" LD_PRELOAD="$preload" \
    "$PY" -c "import libpto, sys; assert libpto.__file__.startswith('$dir'), libpto.__file__" &&
    env PYTHONPATH="$dir" PTO_SANITIZER="$1" "${@:2}" \
      ${SETARCH:-} env LD_PRELOAD="$preload" "$PY" -m pytest -q -rfE -p no:cacheprovider $TESTS) || status=$?
  # reports written while pytest captured fd 2 would otherwise be lost
  if compgen -G "$TMP/report-$1*" >/dev/null; then
    cat "$TMP"/report-"$1"*
    echo "$1: sanitizer reports above" >&2
    [[ $status -ne 0 ]] || status=1
  fi
  return "$status"
}

FAILED=() PASSED=()
record() { # name status
  if [[ $2 -eq 0 ]]; then PASSED+=("$1"); else FAILED+=("$1 (exit $2)"); fi
}

for s in $WHICH; do
  case $s in
  asan)
    echo "== ASan + UBSan"
    rc=0
    stage asan "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1" \
      "-fsanitize=address,undefined" || rc=$?
    [[ $rc -ne 0 ]] || run_tests asan "$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" asan \
      ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$TMP/report-asan \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$TMP/report-asan || rc=$?
    record asan "$rc"
    ;;
  tsan)
    echo "== TSan"
    rc=0
    stage tsan "-fsanitize=thread -O1 -g" "-fsanitize=thread" || rc=$?
    # Dynamic TLS: glibc allocates the __thread data of a dlopen'ed module lazily and frees it
    # (_dl_deallocate_tls) when another thread reuses a finished thread's stack, with no sync
    # TSan can see -- it reports that free as a race. libpto keeps no __thread data (status.c
    # uses a pthread key); cffi's _cffi_backend does (its errno save area), so it is preloaded
    # here: a module loaded at start-up gets static TLS, which glibc never frees this way.
    CFFI_BACKEND=$("$PY" -c 'import _cffi_backend; print(_cffi_backend.__file__)')
    [[ $rc -ne 0 ]] || SETARCH="setarch $(uname -m) -R" run_tests tsan "$(gcc -print-file-name=libtsan.so):$CFFI_BACKEND" tsan \
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0:log_path=$TMP/report-tsan || rc=$?
    record tsan "$rc"
    ;;
  *)
    echo "unknown sanitizer $s (asan|tsan)" >&2
    exit 2
    ;;
  esac
done
echo "== sanitizer summary: passed: ${PASSED[*]:-none}; failed: ${FAILED[*]:-none}"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "sanitizers FAILED: ${FAILED[*]}" >&2
  exit 1
fi
echo "sanitizers clean: $WHICH"
