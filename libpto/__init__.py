"""libpto: a simulated Ascend-style PTO device runtime (ring buffer, AICPU schedulers, AICore
cores with COND registers) with the real limits, error codes and scheduler latch policies.

Usable without pytest; ``pytest_pto`` builds on it.
"""

from __future__ import annotations

from libpto.errors import (
    ERROR_CODES,
    CommError,
    CommTimeout,
    ConfigError,
    InitFailed,
    InitTimeout,
    InvalidArgument,
    OrchestratorError,
    PeerDead,
    PtoError,
    RankCrashed,
    RankError,
    RankHang,
    RankOpFailed,
    RuntimeStateError,
    SchedulerError,
    SchedulerTimeout,
    StreamSyncTimeout,
    SystemCallError,
    error_name,
)

__all__ = [
    "ERROR_CODES",
    "CommError",
    "CommTimeout",
    "ConfigError",
    "InitFailed",
    "InitTimeout",
    "InvalidArgument",
    "OrchestratorError",
    "PeerDead",
    "PtoError",
    "RankCrashed",
    "RankError",
    "RankHang",
    "RankOpFailed",
    "RuntimeStateError",
    "SchedulerError",
    "SchedulerTimeout",
    "StreamSyncTimeout",
    "SystemCallError",
    "error_name",
]
