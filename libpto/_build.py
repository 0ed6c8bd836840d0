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


def make_builder(relative: bool) -> FFI:
    """One FFI over every C module; ``relative`` source paths are what setuptools wants."""

    def path(p: Path) -> str:
        return os.path.relpath(p, ROOT) if relative else str(p)

    builder = FFI()
    for cdef in sorted(CSRC.glob("*.cdef")):
        builder.cdef(cdef.read_text())
    headers = sorted(h.name for h in CSRC.glob("*.h"))
    builder.set_source(
        "libpto._pto",
        "\n".join(f'#include "{h}"' for h in headers),
        sources=[path(c) for c in sorted(CSRC.glob("*.c"))],
        include_dirs=[path(CSRC)],
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
        py_limited_api=True,  # one file name (_pto.abi3.so) for pip and manual builds
    )
    return builder


# setuptools (``cffi_modules``) imports this name with the project root as working directory
ffibuilder = make_builder(relative=True)


def build_inplace() -> Path:
    """Compile outside the tree, then atomically replace ``libpto/_pto*.so``.

    Running processes keep the old file mapped; a rebuild never truncates it under them.
    """
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pto-build-") as tmp:
        builder = make_builder(relative=False)
        os.chdir(tmp)  # keep distutils away from the project's pyproject.toml
        built = Path(builder.compile(tmpdir=tmp, verbose=False))
        target = HERE / built.name
        staging = target.with_suffix(".new")
        shutil.copy2(built, staging)
        os.replace(staging, target)
    return target


if __name__ == "__main__":  # pragma: no cover - manual rebuild (ci/build-ext.sh)
    print(build_inplace())
