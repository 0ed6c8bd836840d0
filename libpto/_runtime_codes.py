"""Runtime error codes, stall sub-classes and C statuses, read from the compiled library.

The one list of codes is C's (the X-macros of ``libpto/csrc/pto_status.h``); this module
enumerates it once at import (``pto_error_code_at``, ``pto_stall_at``, ``pto_status_at``) into
the tables below and the module constants (``libpto.SCHEDULER_TIMEOUT``). The constants are
spelled out so type checkers and ``from libpto import X`` know them (``libpto.__all__`` is the
one list of the public names; this private module has none); their values come from C, and the
import fails loudly if a spelled-out name is missing in C. The numbers are the real
runtime's (docs/design.md §5); ``SIM_*`` are the simulator's own conditions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from libpto._ffi import ffi, lib


def _table(entry_at: Callable[[int, Any, Any], int]) -> dict[str, int]:
    """Name -> value of one C table, in declaration order (``entry_at`` returns 0 past the end)."""
    value, name = ffi.new("int *"), ffi.new("const char **")
    table: dict[str, int] = {}
    i = 0
    while entry_at(i, value, name):
        table[ffi.string(name[0]).decode("ascii")] = int(value[0])
        i += 1
    return table


# Runtime error codes latched in the device header (orchestrator 1..99, scheduler 100+), with
# NONE = 0; stall sub-classes by short name ("S1", ...); C statuses by name ("PTO_E_CONFIG").
ERROR_CODES: dict[str, int] = _table(lib.pto_error_code_at)
STALL_CLASSES: dict[str, int] = _table(lib.pto_stall_at)
STATUS_CODES: dict[str, int] = _table(lib.pto_status_at)

SCOPE_DEADLOCK = ERROR_CODES["SCOPE_DEADLOCK"]
HEAP_RING_DEADLOCK = ERROR_CODES["HEAP_RING_DEADLOCK"]
FLOW_CONTROL_DEADLOCK = ERROR_CODES["FLOW_CONTROL_DEADLOCK"]
DEP_POOL_OVERFLOW = ERROR_CODES["DEP_POOL_OVERFLOW"]
INVALID_ARGS = ERROR_CODES["INVALID_ARGS"]
REQUIRE_SYNC_START_INVALID = ERROR_CODES["REQUIRE_SYNC_START_INVALID"]
TENSOR_WAIT_TIMEOUT = ERROR_CODES["TENSOR_WAIT_TIMEOUT"]
EXPLICIT_ORCH_FATAL = ERROR_CODES["EXPLICIT_ORCH_FATAL"]
SCOPE_TASKS_OVERFLOW = ERROR_CODES["SCOPE_TASKS_OVERFLOW"]
TENSORMAP_OVERFLOW = ERROR_CODES["TENSORMAP_OVERFLOW"]
SCHEDULER_TIMEOUT = ERROR_CODES["SCHEDULER_TIMEOUT"]
ASYNC_COMPLETION_INVALID = ERROR_CODES["ASYNC_COMPLETION_INVALID"]
ASYNC_WAIT_OVERFLOW = ERROR_CODES["ASYNC_WAIT_OVERFLOW"]
ASYNC_REGISTRATION_FAILED = ERROR_CODES["ASYNC_REGISTRATION_FAILED"]
READY_QUEUE_OVERFLOW = ERROR_CODES["READY_QUEUE_OVERFLOW"]
SIM_HEAP_COMMIT_FAILED = ERROR_CODES["SIM_HEAP_COMMIT_FAILED"]  # sim-only, orchestrator family
SIM_KERNEL_FAILED = ERROR_CODES["SIM_KERNEL_FAILED"]  # sim-only, scheduler family

STALL_S1 = STALL_CLASSES["S1"]  # running-stalled
STALL_S3 = STALL_CLASSES["S3"]  # ready but all idle
STALL_S4 = STALL_CLASSES["S4"]  # dependency deadlock
STALL_S5 = STALL_CLASSES["S5"]  # orchestrator starvation
STALL_UNKNOWN = STALL_CLASSES["UNKNOWN"]
