"""cffi builder (API mode) for the libpto C runtime.

Every ``csrc/*.c`` file is compiled into one extension, ``libpto._pto``. Every ``csrc/*.cdef``
file holds the declarations Python may call (cffi cannot parse the real headers' macros), so a
new C module only adds its ``.c``, ``.h`` and ``.cdef`` and needs no change here.

``PTO_CFLAGS`` / ``PTO_LDFLAGS`` add flags, which is how ``ci/sanitize.sh`` builds the runtime
under AddressSanitizer/UBSan or ThreadSanitizer without a second build system.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
ROOT = HERE.parent


def _rel(p: Path) -> str:
    # setuptools insists on source paths relative to the project root
    try:
        return os.path.relpath(p, Path.cwd())
    except ValueError:  # pragma: no cover - different drive
        return str(p)


ffibuilder = FFI()
for _cdef in sorted(CSRC.glob("*.cdef")):
    ffibuilder.cdef(_cdef.read_text(), override=False)

_headers = sorted(h.name for h in CSRC.glob("*.h"))
ffibuilder.set_source(
    "libpto._pto",
    "\n".join(f'#include "{h}"' for h in _headers),
    sources=[_rel(c) for c in sorted(CSRC.glob("*.c"))],
    include_dirs=[_rel(CSRC)],
    define_macros=[("_GNU_SOURCE", "1")],
    extra_compile_args=[
        "-std=gnu11",
        "-O2",
        "-g",
        "-pthread",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        *shlex.split(os.environ.get("PTO_CFLAGS", "")),
    ],
    extra_link_args=["-pthread", *shlex.split(os.environ.get("PTO_LDFLAGS", ""))],
    libraries=["rt", "m"],
)

if __name__ == "__main__":  # pragma: no cover - manual rebuild: python libpto/_build.py
    os.chdir(ROOT)
    ffibuilder.compile(tmpdir=str(ROOT), verbose=True)
