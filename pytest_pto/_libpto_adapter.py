"""The built-in ``libpto`` runtime adapter: today's behaviour expressed through the contract.

``init`` creates libpto's simulated runtime bound to the round's comm window (the chip's own
default when libpto runs without the plugin), ``close`` closes it, and ``classify`` turns the
libpto error family into its outcome classes: ``SchedulerError`` -> ``sched_error_code=N``,
``OrchestratorError`` -> ``orch_error_code=N``, ``StreamSyncTimeout`` -> ``stream_sync_timeout``,
and ``DeviceError`` (the device's own fault, e.g. a simulated one of ``PTO_SIM_DEVICE_FAULTS``,
in init or in an op) -> ``device_error_code=N``; ``poison_codes`` are Ascend's codes after which
a device is quarantined.
Those classes read the exception's structured facts (type and ``code``), never message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from libpto import errors as _e
from pytest_pto._adapter import Classified, RankFailure, RuntimeAdapter

__all__ = ["LibptoAdapter", "classify_libpto_error", "libpto_header_facts"]

STREAM_SYNC_TIMEOUT = "stream_sync_timeout"
DEVICE_ERROR_CODE = "device_error_code"


def classify_libpto_error(err: BaseException | None) -> Classified | None:
    """The outcome class of a libpto error (None: not a coded libpto error)."""
    if not isinstance(err, _e.PtoError):
        return None
    if isinstance(err, _e.StreamSyncTimeout):
        return Classified(STREAM_SYNC_TIMEOUT)
    if isinstance(err, _e.DeviceError):  # the device's code, not a scheduler's (>= 100 too)
        return Classified(f"{DEVICE_ERROR_CODE}={int(err.code)}", err.name or None)
    code = err.code
    if not code:
        code = err.details.get("error_code") or 0
    if isinstance(err, _e.SchedulerError) or (isinstance(code, int) and code >= 100):
        return Classified(f"sched_error_code={int(code)}", _e.error_name(int(code)))
    if isinstance(err, _e.OrchestratorError) or (isinstance(code, int) and 0 < code < 100):
        return Classified(f"orch_error_code={int(code)}", _e.error_name(int(code)))
    return None


def libpto_header_facts(err: BaseException | None) -> dict[str, Any]:
    """``latched_by`` and ``also_latched`` of a libpto latch error (empty for anything else).

    The device header can hold an orchestrator and a scheduler code at once (as upstream's).
    The round's one class is the orchestrator's code: it is the primary code of the C status
    (upstream's runtime_status_from_error_codes reads it first), and a scheduler timeout next
    to an orchestrator fatal is usually its consequence (the orchestrator stopped feeding). The
    scheduler's code is kept as ``also_latched``."""
    if not isinstance(err, _e.PtoError):
        return {}
    facts: dict[str, Any] = {}
    by = err.details.get("latched_by")
    if isinstance(by, str) and by:
        facts["latched_by"] = by
    orch, sched = err.details.get("orch_error_code"), err.details.get("sched_error_code")
    if isinstance(orch, int) and isinstance(sched, int) and orch and sched:
        facts["also_latched"] = f"sched_error_code={sched}"
    return facts


class LibptoAdapter(RuntimeAdapter):
    """libpto's simulated device runtime (the default ``--pto-runtime``)."""

    #: The device error codes after which an Ascend device is not to be trusted.
    poison_codes: ClassVar[frozenset[int]] = frozenset(
        {207001, 507000, 507015, 507018, 507046, 507899}
    )

    def preload(self) -> None:
        import libpto.runtime  # the C extension and the Runtime class, once in the zygote

        _ = libpto.runtime

    def init(self, chip: Any) -> object:
        from libpto._worker import open_libpto_runtime

        return open_libpto_runtime(chip)

    def close(self, chip: Any, runtime: object) -> None:
        close = getattr(runtime, "close", None)
        if close is not None:
            close()

    def budgets(self, env: Mapping[str, str]) -> dict[str, float]:
        """``PTO_STREAM_SYNC_TIMEOUT_MS`` and, once either variable was set (libpto's own
        coherence check does the same: the defaults are the incident's known pair),
        ``PTO_SCHEDULER_TIMEOUT_MS``. An invalid value is left to the workers' own error."""
        from libpto._config import build_config, config_dict

        keys = ("PTO_SCHEDULER_TIMEOUT_MS", "PTO_STREAM_SYNC_TIMEOUT_MS")
        try:
            values = config_dict(build_config({k: env[k] for k in keys if k in env}, None, {}))
        except _e.PtoError:
            return {}
        out = {"stream_sync": values["PTO_STREAM_SYNC_TIMEOUT_MS"] / 1000.0}
        if any(k in env for k in keys):
            out["scheduler"] = values["PTO_SCHEDULER_TIMEOUT_MS"] / 1000.0
        return out

    def classify(self, failure: RankFailure) -> Classified | None:
        if failure.kind == "exception" and (
            isinstance(failure.error, _e.DeviceError)
            or (failure.error is None and failure.exc_type == "libpto.errors.DeviceError")
        ):  # the device's own fault, in init or in an op: device_error_code=N
            code = failure.code if failure.error is None else failure.error.code
            if code:
                name = getattr(failure.error, "name", None) or None
                return Classified(f"{DEVICE_ERROR_CODE}={int(code)}", name)
        if failure.phase != "op" or failure.kind != "exception":
            return None  # init errors stay init_failed, crashes rank_crashed, as before
        return classify_libpto_error(failure.error)
