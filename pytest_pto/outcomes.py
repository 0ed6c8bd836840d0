"""One round's result -> exactly one outcome class (docs/design.md section 4 strings).

A failed rank is described as a :class:`~pytest_pto.RankFailure` (rank, phase, kind, exception
type, message, integer code, exit status, signal, log tail) and offered, in this order, to the
``pytest_pto_classify`` hook (a conftest), to the round's runtime adapter (its ``classify``;
the ``libpto`` adapter maps libpto's ``SchedulerError``/``OrchestratorError``/
``StreamSyncTimeout`` to ``sched_error_code=N``/``orch_error_code=N``/``stream_sync_timeout``),
and finally to the built-in classes (``init_failed``, ``init_timeout``, ``rank_crashed``,
``hang``, ``failed``). What a hook or adapter returns must follow the one outcome grammar
(:mod:`pytest_pto._vocabulary`); anything else is a ``failed`` round naming who returned
it. The built-in classes read structured facts (exception types, codes, wait statuses), never
message text, so a reworded message cannot change a dashboard's numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from libpto import errors as _e
from pytest_pto._adapter import Classified, RankFailure, RuntimeAdapter
from pytest_pto._vocabulary import (
    DEVICE_UNAVAILABLE,
    FAILED,
    FIXED_OUTCOMES,
    HANG,
    INIT_FAILED,
    INIT_TIMEOUT,
    OUTCOME_RULE,
    PASSED,
    RANK_CRASHED,
    int_value,
    outcome_parts,
    outcome_sort_key,
)
from pytest_pto.devices import DeviceUnavailable

__all__ = [
    "FIXED_OUTCOMES",
    "RoundHang",
    "RoundOutcome",
    "classify",
    "outcome_sort_key",
    "rank_failures",
]

LOG_TAIL_BYTES = 16 * 1024  # of a failed rank's log, for classify


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
    #: who latched a SCHEDULER_TIMEOUT: "owner", "sibling" or "no-owner" (None: not code 100)
    latched_by: str | None = None
    #: the other family's code when the header held both ("sched_error_code=100"), else None
    also_latched: str | None = None

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


def _log_tail(path: Any) -> str:
    if not path:
        return ""
    try:
        with open(Path(path), "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(size - LOG_TAIL_BYTES, 0))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def rank_failures(
    err: _e.RankError,
    nodeid: str = "",
    rank_devices: Mapping[int, Sequence[int]] | None = None,
    logs: Mapping[int, Path] | None = None,
) -> list[RankFailure]:
    """The failed ranks of ``err`` as classify sees them, the one that failed first first
    (a hang or an init timeout offers every rank still running, kind ``timeout``). ``logs``
    maps ranks to their log files (the World's ``logs``)."""
    devices = rank_devices or {}
    d = err.details

    def make(rank: int, phase: str, kind: str, **kw: Any) -> RankFailure:
        path = (logs or {}).get(rank) or (d.get("log") if rank == d.get("rank") else None)
        return RankFailure(
            rank=rank,
            phase=phase,
            kind=kind,
            log=_log_tail(path),
            device_ids=tuple(devices.get(rank, ())),
            nodeid=nodeid,
            **kw,
        )

    rank = d.get("rank")
    if isinstance(err, (_e.InitFailed, _e.RankOpFailed, _e.RankCloseFailed)):
        if not isinstance(rank, int) or rank < 0:
            return []
        phase = (
            "init"
            if isinstance(err, _e.InitFailed)
            else ("close" if isinstance(err, _e.RankCloseFailed) else "op")
        )
        inner = d.get("error")
        return [
            make(
                rank,
                phase,
                "exception",
                exc_type=d.get("exc_type") or _qualname(inner),
                message=str(d.get("exc_message") or (inner if inner is not None else err)),
                code=d.get("exc_code") if isinstance(d.get("exc_code"), int) else None,
                error=inner if isinstance(inner, BaseException) else None,
            )
        ]
    if isinstance(err, _e.RankCrashed):
        if not isinstance(rank, int) or rank < 0:
            return []
        sig = d.get("signal")
        code = d.get("exitcode")
        return [
            make(
                rank,
                str(d.get("phase") or "op"),
                "signal" if sig else "exit",
                message=str(err.message).splitlines()[0],
                exit_status=code if isinstance(code, int) else None,
                signal=int(sig) if sig else None,
            )
        ]
    if isinstance(err, (_e.RankHang, _e.InitTimeout)):
        phase = "op" if isinstance(err, _e.RankHang) else "init"
        ranks = d.get("stuck_ranks") if phase == "op" else d.get("missing")
        if not ranks and isinstance(rank, int) and rank >= 0:
            ranks = [rank]
        first = str(err.message).splitlines()[0]
        return [make(int(r), phase, "timeout", message=first) for r in ranks or []]
    return []


def _qualname(exc: Any) -> str | None:
    if not isinstance(exc, BaseException):
        return None
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


#: One classifier: ``(failure) -> verdict``; ``source`` names it in an invalid verdict's error.
Classifier = tuple[str, Callable[[RankFailure], Any]]


class _Invalid(Exception):
    """A hook or adapter returned something that is not an outcome class."""


def _verdict(source: str, value: Any) -> Classified | None:
    if value is None:
        return None
    verdict = Classified(value) if isinstance(value, str) else value
    if not isinstance(verdict, Classified):
        raise _Invalid(
            f"{source} returned {value!r}: not an outcome string, a pytest_pto.Classified or None"
        )
    if outcome_parts(verdict.outcome) is None or verdict.outcome == PASSED:
        raise _Invalid(
            f"{source} returned {verdict.outcome!r}: not an outcome class for a failed rank "
            f"({OUTCOME_RULE}; not 'passed')"
        )
    for key in ("error_name", "detail"):
        extra = getattr(verdict, key)
        if extra is not None and not isinstance(extra, str):
            raise _Invalid(f"{source} returned Classified({key}={extra!r}): must be a str or None")
    return verdict


def _ask(classifiers: Sequence[Classifier], failure: RankFailure) -> Classified | None:
    for source, fn in classifiers:
        try:
            value = fn(failure)
        except Exception as exc:
            raise _Invalid(f"{source} raised {type(exc).__name__}: {exc}") from exc
        verdict = _verdict(source, value)
        if verdict is not None:
            return verdict
    return None


def classify(
    exc: BaseException | None,
    adapter: RuntimeAdapter | None = None,
    *,
    hook: Callable[..., Any] | None = None,
    runtime: str = "libpto",
    nodeid: str = "",
    rank_devices: Mapping[int, Sequence[int]] | None = None,
    logs: Mapping[int, Path] | None = None,
) -> RoundOutcome:
    """The outcome of a round that ended with ``exc`` (None: the round passed).

    ``hook`` (the ``pytest_pto_classify`` hook caller) and then ``adapter`` (the round's
    runtime adapter; default the ``libpto`` one) are asked about the failed rank before the
    built-in classes."""
    if exc is None:
        return RoundOutcome(PASSED)
    if adapter is None:
        from pytest_pto._libpto_adapter import LibptoAdapter

        adapter = LibptoAdapter()
    classifiers: list[Classifier] = []
    if hook is not None:
        classifiers.append(("hook pytest_pto_classify", lambda f: hook(failure=f)))
    classifiers.append(
        (
            f"runtime adapter {runtime!r} ({type(adapter).__module__}."
            f"{type(adapter).__qualname__}).classify",
            adapter.classify,
        )
    )
    outcome = _classify(exc, classifiers, lambda e: rank_failures(e, nodeid, rank_devices, logs))
    full = outcome.message.strip()
    if "\n" in full:
        first, _, rest = full.partition("\n")
        outcome = replace(outcome, message=first, detail=rest.strip("\n"))
    return outcome


def _builtin(err: _e.RankError, msg: str) -> RoundOutcome:
    rank = _rank(err)
    if isinstance(err, _e.RankHang):
        stacks = _detail(err, "stacks") or {}
        return RoundOutcome(HANG, rank, message=msg, stacks=dict(stacks))
    if isinstance(err, _e.RankCrashed):
        return RoundOutcome(RANK_CRASHED, rank, message=msg)
    if isinstance(err, _e.InitTimeout):
        return RoundOutcome(INIT_TIMEOUT, rank, message=msg)
    if isinstance(err, _e.InitFailed):
        return RoundOutcome(INIT_FAILED, rank, message=msg)
    return RoundOutcome(FAILED, rank, message=msg)


def _adapted(base: RoundOutcome, failure: RankFailure, verdict: Classified) -> RoundOutcome:
    from pytest_pto._libpto_adapter import libpto_header_facts  # empty for other runtimes

    code = int_value(verdict.outcome)
    message = base.message
    if verdict.detail:
        first, nl, rest = message.partition("\n")
        message = f"{first} ({verdict.detail}){nl}{rest}"
    return replace(
        base,
        outcome=verdict.outcome,
        rank=failure.rank if failure.rank >= 0 else base.rank,
        error_code=code or None,
        error_name=verdict.error_name if code or verdict.error_name else None,
        message=message,
        **libpto_header_facts(failure.error),
    )


def _classify(
    exc: BaseException,
    classifiers: Sequence[Classifier],
    failures_of: Callable[[_e.RankError], list[RankFailure]],
) -> RoundOutcome:
    for err in _chain(exc):
        msg = str(getattr(err, "message", None) or err)
        if isinstance(err, DeviceUnavailable):
            text = msg.removeprefix(f"{DEVICE_UNAVAILABLE}: ")
            return RoundOutcome(DEVICE_UNAVAILABLE, message=text)
        if isinstance(err, RoundHang):
            return RoundOutcome(HANG, message=msg, stacks=err.stacks)
        if isinstance(err, _e.RankError):
            base = _builtin(err, msg)
            for failure in failures_of(err):
                try:
                    verdict = _ask(classifiers, failure)
                except _Invalid as bad:
                    return replace(
                        base,
                        outcome=FAILED,
                        rank=failure.rank,
                        message=f"rank {failure.rank}: pytest-pto: {bad}; the rank's failure: "
                        f"{msg}",
                    )
                if verdict is not None:
                    return _adapted(base, failure, verdict)
            return base
        if isinstance(err, _e.PtoError):  # libpto's own error, raised in this process
            from pytest_pto._libpto_adapter import classify_libpto_error, libpto_header_facts

            coded = classify_libpto_error(err)
            if coded is not None:
                code = int_value(coded.outcome) or None
                return RoundOutcome(
                    coded.outcome,
                    _rank(err),
                    code,
                    coded.error_name if code else None,
                    msg,
                    **libpto_header_facts(err),
                )
    text = str(exc).strip()
    return RoundOutcome(FAILED, message=f"{type(exc).__name__}: {text}" if text else "")
