"""Runtime error codes and stall sub-classes as module constants (``libpto.SCHEDULER_TIMEOUT``).

The numbers are the real runtime's (docs/design.md §5); ``libpto.errors.ERROR_CODES`` maps the
same names, and a test checks the two agree with the C library's names.
"""

from __future__ import annotations

__all__ = [
    "ASYNC_COMPLETION_INVALID",
    "ASYNC_REGISTRATION_FAILED",
    "ASYNC_WAIT_OVERFLOW",
    "DEP_POOL_OVERFLOW",
    "EXPLICIT_ORCH_FATAL",
    "FLOW_CONTROL_DEADLOCK",
    "HEAP_RING_DEADLOCK",
    "INVALID_ARGS",
    "READY_QUEUE_OVERFLOW",
    "REQUIRE_SYNC_START_INVALID",
    "SCHEDULER_TIMEOUT",
    "SCOPE_DEADLOCK",
    "SCOPE_TASKS_OVERFLOW",
    "SIM_HEAP_COMMIT_FAILED",
    "SIM_KERNEL_FAILED",
    "STALL_S1",
    "STALL_S3",
    "STALL_S4",
    "STALL_S5",
    "STALL_UNKNOWN",
    "TENSORMAP_OVERFLOW",
    "TENSOR_WAIT_TIMEOUT",
]

SCOPE_DEADLOCK = 1
HEAP_RING_DEADLOCK = 2
FLOW_CONTROL_DEADLOCK = 3
DEP_POOL_OVERFLOW = 4
INVALID_ARGS = 5
REQUIRE_SYNC_START_INVALID = 7
TENSOR_WAIT_TIMEOUT = 8
EXPLICIT_ORCH_FATAL = 9
SCOPE_TASKS_OVERFLOW = 10
TENSORMAP_OVERFLOW = 11
SCHEDULER_TIMEOUT = 100
ASYNC_COMPLETION_INVALID = 101
ASYNC_WAIT_OVERFLOW = 102
ASYNC_REGISTRATION_FAILED = 103
READY_QUEUE_OVERFLOW = 104
# sim-only codes (the simulator's own conditions; upstream never latches them)
SIM_HEAP_COMMIT_FAILED = 90  # mprotect of a ring heap's next step failed (orchestrator family)
SIM_KERNEL_FAILED = 190  # a builtin kernel returned a failure (scheduler family)

# stall sub-classes of SCHEDULER_TIMEOUT (details["sub_class"] carries the name "S1", ...)
STALL_S1 = 1  # running-stalled
STALL_S3 = 3  # ready but all idle
STALL_S4 = 4  # dependency deadlock
STALL_S5 = 5  # orchestrator starvation
STALL_UNKNOWN = 99
