"""The one exception hierarchy of libpto, and the one place a C status becomes an exception.

Every C function returns an int status (``pto_status``) and leaves detail text behind in
``pto_last_error()``. :func:`check` turns a non-zero status into the matching exception here, so
callers never interpret raw numbers themselves.

Exceptions pickle (they cross process boundaries from chip workers to the parent): each keeps
its constructor arguments in ``self._init`` and rebuilds from them in ``__reduce__``.
"""

from __future__ import annotations

from typing import Any

from libpto._runtime_codes import ERROR_CODES

__all__ = [
    "ERROR_CODES",
    "CommError",
    "CommTimeout",
    "ConfigError",
    "DeviceError",
    "InitFailed",
    "InitTimeout",
    "InvalidArgument",
    "OrchestratorError",
    "PeerDead",
    "PtoError",
    "RankCloseFailed",
    "RankCrashed",
    "RankError",
    "RankHang",
    "RankOpFailed",
    "RuntimeAdapterError",
    "RuntimeStateError",
    "SchedulerError",
    "SchedulerTimeout",
    "StreamSyncTimeout",
    "SystemCallError",
    "check",
    "error_name",
]

# ERROR_CODES (runtime error code name -> number) is read from the C library's one list.
_CODE_NAMES = {v: k for k, v in ERROR_CODES.items()}


def error_name(code: int) -> str:
    """Name of a runtime error code, ``UNKNOWN`` for numbers the runtime does not define."""
    return _CODE_NAMES.get(code, "UNKNOWN")


class PtoError(Exception):
    """Root of every libpto error.

    ``code`` is the runtime error code where one applies (0 otherwise), ``name`` its name or the
    C status name, ``details`` any further structured facts (sub-class, rank, ...).
    """

    def __init__(
        self, message: str, *, code: int = 0, name: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.name = name if name is not None else (error_name(code) if code else "")
        self.details: dict[str, Any] = dict(details)
        self._init = (message, code, self.name, self.details)

    def __getattr__(self, item: str) -> Any:
        # details are reachable as attributes (err.sub_class, err.rank) without a property each
        details = self.__dict__.get("details")
        if details is not None and item in details:
            return details[item]
        raise AttributeError(item)

    def __reduce__(self) -> tuple[Any, ...]:
        message, code, name, details = self._init
        return (_rebuild, (type(self), message, code, name, details))

    def __str__(self) -> str:
        return self.message


def _rebuild(
    cls: type[PtoError], message: str, code: int, name: str, details: dict[str, Any]
) -> PtoError:
    err = cls.__new__(cls)
    PtoError.__init__(err, message, code=code, name=name, **details)
    return err


class InvalidArgument(PtoError, ValueError):
    """An argument broke a documented rule; the message names the argument and the rule."""


class ConfigError(InvalidArgument):
    """A configuration value (usually an environment variable) is invalid; names it and the rule."""


class RuntimeStateError(PtoError):
    """The call is not allowed in the object's current state (closed runtime, run in flight)."""


class RuntimeAdapterError(PtoError):
    """The runtime adapter of a world (``WorldConfig.runtime``) cannot be used in the forking
    process: it does not load, its ``preload`` raised, or ``preload`` started a thread.
    ``runtime`` names it."""


class SystemCallError(PtoError, OSError):
    """An OS call inside the runtime failed."""


class OrchestratorError(PtoError):
    """The orchestrator latched ``orch_error_code`` (1..99)."""


class SchedulerError(PtoError):
    """A scheduler thread latched ``sched_error_code`` (100+). Details also carry both header
    codes (``orch_error_code``, ``sched_error_code``: the header can hold one of each) and, for
    code 100, ``latched_by``: ``owner`` (the latching thread owned a RUNNING task), ``sibling``
    (it did not, another thread did) or ``no-owner`` (no thread did: the deadlock branch)."""


class SchedulerTimeout(SchedulerError):
    """``SCHEDULER_TIMEOUT`` (100); details: ``sub_class`` (S1/S3/S4/S5/UNKNOWN), ``stuck_task``,
    ``core``, ``latch_thread``, ``latched_by``, ``latch_attempts`` (bitmap), ``completed``,
    ``total``."""


class DeviceError(PtoError):
    """The device itself reported a fault: ``code`` is the device's error code (e.g. Ascend
    507899), ``device_id`` the device, ``phase`` when it surfaced (``init``: bringing the
    device up, ``op``: running work on it). A device that raised one may be unusable for every
    later user (see pytest-pto's quarantine), unlike a scheduler or orchestrator code, which
    is about the graph that ran."""


class StreamSyncTimeout(PtoError):
    """The host's stream sync exceeded its budget: an outer failure, separate from device codes."""


class CommError(PtoError):
    """A comm-window operation failed."""


class CommTimeout(CommError):
    """A comm-window wait or barrier did not complete in time (a peer is missing or slow)."""


class PeerDead(CommError):
    """A peer process of a shared object has died."""


class RankError(PtoError):
    """A failure of one rank of a chip-worker group; ``rank`` names it (``-1``: no single rank)."""


class InitFailed(RankError):
    """A rank reported INIT_FAILED; the message carries the rank's own error text."""


class InitTimeout(RankError):
    """The INIT_DONE barrier deadline passed; ``missing`` lists the ranks that did not arrive."""


class RankCrashed(RankError):
    """A rank process died (signal or exit) while it was expected to live."""


class RankHang(RankError):
    """A round exceeded its deadline; ``stacks`` maps every rank to its stack dump."""


class RankCloseFailed(RankError):
    """A rank's runtime failed to close after the round's ops (``phase`` is ``close``)."""


class RankOpFailed(RankError):
    """The op raised inside a rank.

    ``error`` is the libpto error, or ``traceback`` the Python one."""


# The one mapping from a C status to its exception class, keyed by the names C gives
# (pto_strerror); a test checks every failing status of C's list has exactly one entry.
_STATUS_CLASSES: dict[str, type[PtoError]] = {
    "PTO_E_INVALID_ARG": InvalidArgument,
    "PTO_E_CONFIG": ConfigError,
    "PTO_E_NOMEM": SystemCallError,
    "PTO_E_STATE": RuntimeStateError,
    "PTO_E_TIMEOUT": CommTimeout,
    "PTO_E_STREAM_SYNC_TIMEOUT": StreamSyncTimeout,
    "PTO_E_ORCH": OrchestratorError,
    "PTO_E_SCHED": SchedulerError,
    "PTO_E_SYS": SystemCallError,
    "PTO_E_NOT_FOUND": CommError,
    "PTO_E_EXISTS": CommError,
    "PTO_E_PEER_DEAD": PeerDead,
    "PTO_E_ABORTED": PtoError,
    "PTO_E_RANGE": InvalidArgument,
}


def check(status: int, context: str, **details: Any) -> None:
    """Raise the exception for a non-zero C status; ``context`` names the call or its source.

    For ``PTO_E_ORCH``/``PTO_E_SCHED`` pass the decoded error info as ``details`` (``code`` and
    friends); a scheduler code 100 becomes :class:`SchedulerTimeout`.
    """
    if status == 0:
        return
    from libpto._ffi import lib  # late: the extension is only needed once something failed

    status_name = lib_str(lib.pto_strerror(status))
    detail = lib_str(lib.pto_last_error())
    code = int(details.pop("code", 0) or 0)
    cls = _STATUS_CLASSES.get(status_name, PtoError)
    if status_name == "PTO_E_SCHED" and code == ERROR_CODES["SCHEDULER_TIMEOUT"]:
        cls = SchedulerTimeout
    name = error_name(code) if code else status_name
    text = f"{context}: {detail}" if detail else f"{context}: {status_name}"
    if code:
        text = f"{text} (code {code} {name})"
    raise cls(text, code=code, name=name, status=status_name, **details)


def lib_str(ptr: Any) -> str:
    """Decode a ``const char *`` returned by the C library."""
    from libpto._ffi import ffi

    return "" if ptr == ffi.NULL else ffi.string(ptr).decode("utf-8", "replace")
