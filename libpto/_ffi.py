"""Loads the compiled cffi extension with an error that says how to build it."""

from __future__ import annotations

try:
    from libpto._pto import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "libpto's C extension (libpto._pto) is not built: install the project with "
        "`pip install -e .` (it compiles libpto/csrc with cffi), or run `bash ci/test.sh`"
    ) from exc

__all__ = ["ffi", "lib"]
