"""One round's result -> exactly one outcome class (DESIGN section 4 strings).

The classification reads the structured facts of the libpto error family (``RankError`` with
``rank`` and ``details``; ``SchedulerError``/``OrchestratorError`` with ``code``), never message
text, so a reworded message cannot change a dashboard's numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from libpto import errors as _e
from pytest_pto.devices import DeviceUnavailable
from pytest_pto.table import outcome_sort_key  # the one column order, shared with pto-report

__all__ = [
    "FIXED_OUTCOMES",
    "RoundHang",
    "RoundOutcome",
    "classify",
    "is_outcome",
    "outcome_sort_key",
]

PASSED = "passed"
FAILED = "failed"
STREAM_SYNC_TIMEOUT = "stream_sync_timeout"
INIT_FAILED = "init_failed"
INIT_TIMEOUT = "init_timeout"
RANK_CRASHED = "rank_crashed"
HANG = "hang"
DEVICE_UNAVAILABLE = "device_unavailable"
FIXED_OUTCOMES = (
    PASSED,
    FAILED,
    STREAM_SYNC_TIMEOUT,
    INIT_FAILED,
    INIT_TIMEOUT,
    RANK_CRASHED,
    HANG,
    DEVICE_UNAVAILABLE,
)
_CODED = re.compile(r"^(sched|orch)_error_code=(\d+)$")


def is_outcome(text: str) -> bool:
    return text in FIXED_OUTCOMES or _CODED.match(text) is not None


class RoundHang(Exception):
    """The plugin's own round watchdog fired outside ``World.run`` (the test body hung)."""

    def __init__(self, message: str, stacks: Mapping[int, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stacks = dict(stacks or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (RoundHang, (self.message, self.stacks))


@dataclass(frozen=True)
class RoundOutcome:
    """The classified end of one round."""

    outcome: str
    rank: int | None = None
    error_code: int | None = None
    error_name: str | None = None
    message: str = ""
    stacks: Mapping[int, str] = field(default_factory=dict)
    detail: str = ""  # the error's full text (tracebacks, stacks) when longer than ``message``

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    def headline(self) -> str:
        """The failure message: the outcome class first, then the rank and cause (one line)."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        # the class is said once: "hang: ranks 0, 1: op x ...", not "...: hang: op x ..."
        first = re.sub(
            rf"^((?:ranks? [0-9, ]+: )?){re.escape(self.outcome)}: ", r"\1", first, count=1
        )
        return f"{self.outcome}: {first}" if first else self.outcome


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return seen


def _detail(exc: BaseException, key: str) -> Any:
    details = getattr(exc, "details", None)
    if isinstance(details, dict) and key in details:
        return details[key]
    return getattr(exc, key, None) if not isinstance(exc, _e.PtoError) else None


def _rank(exc: BaseException) -> int | None:
    rank = _detail(exc, "rank")
    return int(rank) if isinstance(rank, int) and rank >= 0 else None


def _code_outcome(err: BaseException) -> tuple[str, int, str] | None:
    """sched/orch/stream-sync class of a libpto error (or of a rank's error record)."""
    if isinstance(err, _e.StreamSyncTimeout):
        return (STREAM_SYNC_TIMEOUT, 0, err.name or "STREAM_SYNC_TIMEOUT")
    code = getattr(err, "code", None) if isinstance(err, _e.PtoError) else None
    if not code:
        code = _detail(err, "error_code")
    if isinstance(err, _e.SchedulerError) or (isinstance(code, int) and code >= 100):
        code = int(code or 0)
        return (f"sched_error_code={code}", code, _e.error_name(code))
    if isinstance(err, _e.OrchestratorError) or (isinstance(code, int) and 0 < code < 100):
        code = int(code or 0)
        return (f"orch_error_code={code}", code, _e.error_name(code))
    return None


def classify(exc: BaseException | None) -> RoundOutcome:
    """The outcome of a round that ended with ``exc`` (None: the round passed)."""
    if exc is None:
        return RoundOutcome(PASSED)
    outcome = _classify(exc)
    full = outcome.message.strip()
    if "\n" in full:
        first, _, rest = full.partition("\n")
        outcome = replace(outcome, message=first, detail=rest.strip("\n"))
    return outcome


def _classify(exc: BaseException) -> RoundOutcome:
    for err in _chain(exc):
        msg = str(getattr(err, "message", None) or err)
        if isinstance(err, DeviceUnavailable):
            text = msg.removeprefix(f"{DEVICE_UNAVAILABLE}: ")
            return RoundOutcome(DEVICE_UNAVAILABLE, message=text)
        if isinstance(err, RoundHang):
            return RoundOutcome(HANG, message=msg, stacks=err.stacks)
        if isinstance(err, _e.RankHang):
            stacks = _detail(err, "stacks") or {}
            return RoundOutcome(HANG, _rank(err), message=msg, stacks=dict(stacks))
        if isinstance(err, _e.RankCrashed):
            return RoundOutcome(RANK_CRASHED, _rank(err), message=msg)
        if isinstance(err, _e.InitTimeout):
            return RoundOutcome(INIT_TIMEOUT, _rank(err), message=msg)
        if isinstance(err, _e.InitFailed):
            return RoundOutcome(INIT_FAILED, _rank(err), message=msg)
        if isinstance(err, _e.RankOpFailed):
            inner = _detail(err, "error")
            coded = _code_outcome(inner) if isinstance(inner, BaseException) else None
            if coded is None:
                coded = _code_outcome(err)
            if coded is not None:
                outcome, code, name = coded
                return RoundOutcome(
                    outcome, _rank(err), code or None, name if code else None, message=msg
                )
            return RoundOutcome(FAILED, _rank(err), message=msg)
        if isinstance(err, _e.PtoError):
            coded = _code_outcome(err)
            if coded is not None:
                outcome, code, name = coded
                return RoundOutcome(
                    outcome, _rank(err), code or None, name if code else None, message=msg
                )
    text = str(exc).strip()
    return RoundOutcome(FAILED, message=f"{type(exc).__name__}: {text}" if text else "")
