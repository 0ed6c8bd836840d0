"""A complete runtime adapter for a vendor NPU runtime (here: its test double, vendor_rt_double).

Use it with ``--pto-runtime=vendor_adapter:VendorRuntimeAdapter`` or per test with
``@pytest.mark.pto(runtime="vendor_adapter:VendorRuntimeAdapter")``; ops then get the binding's
``NativeRuntime`` as ``chip.runtime``.

The runtime's binding raises a plain ``RuntimeError("finalize_native_run failed with code -100
(run_id=3)")``; everything else it knows went to fd 2. So ``classify`` reads the code from the
message (sign: simulator or hardware; 1-11 orchestrator, 100+ scheduler) and the name and the
stall class from the rank's log, where the runtime wrote::

    [ERROR] PTO2 runtime failed: orch_error_code=0 sched_error_code=100
    [ERROR] error detail: sched0 latched SCHEDULER_TIMEOUT - task 1 on core 0: ...
    [ERROR] stall diagnosis: sub_class=S1 stuck_task=1 core=0 completed=1/3

and turns them into ``sched_error_code=100`` with ``error_name`` ``SCHEDULER_TIMEOUT`` and
``detail`` ``sub_class=S1 stuck_task=1 core=0 on simulator``. It is only asked about ranks that
failed, and it claims nothing without the code in the exception (or, for a rank the watchdog
killed, a ``PTO2 runtime failed`` line): the ``[ERROR]`` lines this runtime prints in passing
runs, or next to an ordinary assertion, change no outcome.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_pto import Classified, RankFailure, RuntimeAdapter

__all__ = ["VendorRuntimeAdapter", "classify_native"]

#: The runtime's code names (what ``error detail`` says when the log is cut short).
CODE_NAMES = {
    1: "SCOPE_DEADLOCK",
    2: "HEAP_RING_DEADLOCK",
    3: "FLOW_CONTROL_DEADLOCK",
    4: "DEP_POOL_OVERFLOW",
    5: "INVALID_ARGS",
    7: "REQUIRE_SYNC_START_INVALID",
    8: "TENSOR_WAIT_TIMEOUT",
    9: "EXPLICIT_ORCH_FATAL",
    10: "SCOPE_TASKS_OVERFLOW",
    11: "TENSORMAP_OVERFLOW",
    100: "SCHEDULER_TIMEOUT",
    101: "ASYNC_COMPLETION_INVALID",
    102: "ASYNC_WAIT_OVERFLOW",
    103: "ASYNC_REGISTRATION_FAILED",
}
_FINALIZE = re.compile(r"finalize_native_run failed with code (-?\d+)")
_PTO2 = re.compile(r"PTO2 runtime failed: orch_error_code=(\d+) sched_error_code=(\d+)")
_DETAIL = re.compile(r"error detail: .*?\b([A-Z][A-Z0-9_]{2,}) - ")
_STALL = re.compile(r"\b(sub_class=\w+)(?: (stuck_task=-?\d+))?(?: (core=-?\d+))?")


def _side(code: int) -> str | None:
    if 1 <= code <= 11:
        return "orch"
    if code >= 100:
        return "sched"
    return None


def classify_native(message: str, log: str, killed: bool = False) -> Classified | None:
    """The outcome of a rank from its exception message and log tail (see the module doc)."""
    signed: int | None = None
    target = ""
    if (m := _FINALIZE.search(message)) is not None:
        signed = int(m.group(1))
        target = "on simulator" if signed < 0 else "on hardware"
    # the runtime's own summary: the last one in the log is the run that failed
    summaries = _PTO2.findall(log)
    logged = next((int(o) or int(s) for o, s in reversed(summaries)), None)
    if signed is None and killed and logged:
        signed = logged  # the watchdog killed it after the runtime wrote its diagnosis
    if signed is None:
        return None
    code = abs(signed)
    side = _side(code)
    if side is None:
        return Classified(f"native_error_code={signed}", None, message.strip() or None)
    name = CODE_NAMES.get(code)
    details: list[str] = []
    if logged == code:  # the log's lines describe this very failure
        tail = log[log.rfind("PTO2 runtime failed") :]
        if (d := _DETAIL.search(tail)) is not None:
            name = d.group(1)
        if (s := _STALL.search(tail)) is not None:
            details.extend(part for part in s.groups() if part)
    if target:
        details.append(target)
    return Classified(f"{side}_error_code={code}", name, " ".join(details) or None)


class VendorRuntimeAdapter(RuntimeAdapter):
    """The vendor runtime as pytest-pto's chip runtime."""

    def preload(self) -> None:
        import vendor_rt_double  # the binding's import is the heavy part: once per session

        _ = vendor_rt_double

    def init(self, chip: Any) -> object:
        from vendor_rt_double import NativeRuntime

        return NativeRuntime(chip.local_device_id, rank=chip.rank, comm=chip.comm)

    def close(self, chip: Any, runtime: object) -> None:
        if runtime is not None:
            runtime.close()  # type: ignore[attr-defined]

    def classify(self, failure: RankFailure) -> str | Classified | None:
        return classify_native(failure.message, failure.log, killed=failure.kind == "timeout")
