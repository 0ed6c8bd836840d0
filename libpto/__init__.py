"""libpto: a simulated Ascend-style PTO device runtime (ring buffer, AICPU schedulers, AICore
cores with COND registers) with the real limits, error codes and scheduler latch policies.

Usable without pytest; ``pytest_pto`` builds on it.

The names below are imported from their modules on first use (PEP 562): importing a light
submodule (``libpto._checks``, as pytest-pto's option parsing does in every pytest session)
must not load the C extension, cffi and every other module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypy and readers see; at run time names load on first use
    from libpto._comm import CommWindow
    from libpto._footprint import cleanup_stale, new_name, owner_temp_dir, parse_name, pid_alive
    from libpto._procs import is_sigterm_cleanup
    from libpto._runtime_codes import (
        ASYNC_COMPLETION_INVALID,
        ASYNC_REGISTRATION_FAILED,
        ASYNC_WAIT_OVERFLOW,
        DEP_POOL_OVERFLOW,
        EXPLICIT_ORCH_FATAL,
        FLOW_CONTROL_DEADLOCK,
        HEAP_RING_DEADLOCK,
        INVALID_ARGS,
        READY_QUEUE_OVERFLOW,
        REQUIRE_SYNC_START_INVALID,
        SCHEDULER_TIMEOUT,
        SCOPE_DEADLOCK,
        SCOPE_TASKS_OVERFLOW,
        SIM_HEAP_COMMIT_FAILED,
        SIM_KERNEL_FAILED,
        STALL_S1,
        STALL_S3,
        STALL_S4,
        STALL_S5,
        STALL_UNKNOWN,
        TENSOR_WAIT_TIMEOUT,
        TENSORMAP_OVERFLOW,
    )
    from libpto.errors import (
        ERROR_CODES,
        CommError,
        CommTimeout,
        ConfigError,
        DeviceError,
        InitFailed,
        InitTimeout,
        InvalidArgument,
        OrchestratorError,
        PeerDead,
        PtoError,
        RankCloseFailed,
        RankCrashed,
        RankError,
        RankHang,
        RankOpFailed,
        RuntimeAdapterError,
        RuntimeStateError,
        SchedulerError,
        SchedulerTimeout,
        StreamSyncTimeout,
        SystemCallError,
        error_name,
    )
    from libpto.runtime import Buffer, Graph, MemRef, RunInfo, Runtime, comm_ref
    from libpto.world import Chip, World, WorldConfig

__all__ = [
    "ASYNC_COMPLETION_INVALID",
    "ASYNC_REGISTRATION_FAILED",
    "ASYNC_WAIT_OVERFLOW",
    "DEP_POOL_OVERFLOW",
    "ERROR_CODES",
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
    "Buffer",
    "Chip",
    "CommError",
    "CommTimeout",
    "CommWindow",
    "ConfigError",
    "DeviceError",
    "Graph",
    "InitFailed",
    "InitTimeout",
    "InvalidArgument",
    "MemRef",
    "OrchestratorError",
    "PeerDead",
    "PtoError",
    "RankCloseFailed",
    "RankCrashed",
    "RankError",
    "RankHang",
    "RankOpFailed",
    "RunInfo",
    "Runtime",
    "RuntimeAdapterError",
    "RuntimeStateError",
    "SchedulerError",
    "SchedulerTimeout",
    "StreamSyncTimeout",
    "SystemCallError",
    "World",
    "WorldConfig",
    "cleanup_stale",
    "comm_ref",
    "error_name",
    "is_sigterm_cleanup",
    "new_name",
    "owner_temp_dir",
    "parse_name",
    "pid_alive",
]

_WHERE: dict[str, str] = {
    "CommWindow": "libpto._comm",
    "cleanup_stale": "libpto._footprint",
    "new_name": "libpto._footprint",
    "owner_temp_dir": "libpto._footprint",
    "parse_name": "libpto._footprint",
    "pid_alive": "libpto._footprint",
    "is_sigterm_cleanup": "libpto._procs",
    "ASYNC_COMPLETION_INVALID": "libpto._runtime_codes",
    "ASYNC_REGISTRATION_FAILED": "libpto._runtime_codes",
    "ASYNC_WAIT_OVERFLOW": "libpto._runtime_codes",
    "DEP_POOL_OVERFLOW": "libpto._runtime_codes",
    "EXPLICIT_ORCH_FATAL": "libpto._runtime_codes",
    "FLOW_CONTROL_DEADLOCK": "libpto._runtime_codes",
    "HEAP_RING_DEADLOCK": "libpto._runtime_codes",
    "INVALID_ARGS": "libpto._runtime_codes",
    "READY_QUEUE_OVERFLOW": "libpto._runtime_codes",
    "REQUIRE_SYNC_START_INVALID": "libpto._runtime_codes",
    "SCHEDULER_TIMEOUT": "libpto._runtime_codes",
    "SCOPE_DEADLOCK": "libpto._runtime_codes",
    "SCOPE_TASKS_OVERFLOW": "libpto._runtime_codes",
    "SIM_HEAP_COMMIT_FAILED": "libpto._runtime_codes",
    "SIM_KERNEL_FAILED": "libpto._runtime_codes",
    "STALL_S1": "libpto._runtime_codes",
    "STALL_S3": "libpto._runtime_codes",
    "STALL_S4": "libpto._runtime_codes",
    "STALL_S5": "libpto._runtime_codes",
    "STALL_UNKNOWN": "libpto._runtime_codes",
    "TENSOR_WAIT_TIMEOUT": "libpto._runtime_codes",
    "TENSORMAP_OVERFLOW": "libpto._runtime_codes",
    "ERROR_CODES": "libpto.errors",
    "CommError": "libpto.errors",
    "CommTimeout": "libpto.errors",
    "ConfigError": "libpto.errors",
    "DeviceError": "libpto.errors",
    "InitFailed": "libpto.errors",
    "InitTimeout": "libpto.errors",
    "InvalidArgument": "libpto.errors",
    "OrchestratorError": "libpto.errors",
    "PeerDead": "libpto.errors",
    "PtoError": "libpto.errors",
    "RankCloseFailed": "libpto.errors",
    "RankCrashed": "libpto.errors",
    "RankError": "libpto.errors",
    "RankHang": "libpto.errors",
    "RankOpFailed": "libpto.errors",
    "RuntimeAdapterError": "libpto.errors",
    "RuntimeStateError": "libpto.errors",
    "SchedulerError": "libpto.errors",
    "SchedulerTimeout": "libpto.errors",
    "StreamSyncTimeout": "libpto.errors",
    "SystemCallError": "libpto.errors",
    "error_name": "libpto.errors",
    "Buffer": "libpto.runtime",
    "Graph": "libpto.runtime",
    "MemRef": "libpto.runtime",
    "RunInfo": "libpto.runtime",
    "Runtime": "libpto.runtime",
    "comm_ref": "libpto.runtime",
    "Chip": "libpto.world",
    "World": "libpto.world",
    "WorldConfig": "libpto.world",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'libpto' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
