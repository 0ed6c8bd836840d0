"""``classify()`` maps every outcome class, boundaries included (docs/design.md section 4 strings).

Unit tests over the real libpto exception classes (the objects a round really raises, built
with the facts their producers attach), so a changed comparison (``>= 100`` -> ``> 100``), a
reordered ``isinstance`` chain or a lost rank fails here by name, not only through an inner
session's JUnit.
"""

from __future__ import annotations

import pytest

from libpto import errors as e
from pytest_pto._vocabulary import outcome_parts
from pytest_pto.devices import DeviceUnavailable
from pytest_pto.outcomes import FIXED_OUTCOMES, RoundHang, classify


def test_no_exception_is_passed() -> None:
    out = classify(None)
    assert out.outcome == "passed" and out.passed
    assert out.rank is None and out.error_code is None


@pytest.mark.parametrize(
    ("code", "outcome", "name"),
    [
        (1, "orch_error_code=1", "SCOPE_DEADLOCK"),  # lowest orchestrator code
        (2, "orch_error_code=2", "HEAP_RING_DEADLOCK"),
        (99, "orch_error_code=99", "UNKNOWN"),  # highest orchestrator number
        (100, "sched_error_code=100", "SCHEDULER_TIMEOUT"),  # lowest scheduler code
        (101, "sched_error_code=101", "ASYNC_COMPLETION_INVALID"),
        (250, "sched_error_code=250", "UNKNOWN"),
    ],
)
def test_code_boundaries_through_a_rank_op_failure(code: int, outcome: str, name: str) -> None:
    """A rank's op failed with a libpto error that carries only the number (no scheduler or
    orchestrator class): the number alone decides orchestrator (1..99) or scheduler (100+)."""
    inner = e.PtoError(f"code {code}", code=code)
    err = e.RankOpFailed(f"rank 3: code {code}", rank=3, error=inner, error_code=code)
    out = classify(err)
    assert (out.outcome, out.rank, out.error_code, out.error_name) == (outcome, 3, code, name)
    assert outcome_parts(out.outcome) is not None


@pytest.mark.parametrize("code", [0, -1, -100])
def test_zero_and_negative_codes_are_not_device_codes(code: int) -> None:
    inner = e.PtoError(f"code {code}", code=code)
    out = classify(
        e.RankOpFailed("rank 1: op raised ValueError", rank=1, error=inner, error_code=code)
    )
    assert (out.outcome, out.rank, out.error_code) == ("failed", 1, None)


@pytest.mark.parametrize(
    ("err", "outcome", "code"),
    [
        (e.SchedulerTimeout("sched", code=100, sub_class="S1"), "sched_error_code=100", 100),
        (e.SchedulerError("sched", code=101), "sched_error_code=101", 101),
        (e.OrchestratorError("orch", code=99), "orch_error_code=99", 99),
        (e.OrchestratorError("orch", code=3), "orch_error_code=3", 3),
    ],
)
def test_libpto_errors_in_the_test_process(err: e.PtoError, outcome: str, code: int) -> None:
    out = classify(err)
    assert (out.outcome, out.error_code, out.error_name) == (outcome, code, e.error_name(code))
    assert out.rank is None


def test_inner_libpto_error_of_a_rank_wins_over_the_wrapper() -> None:
    inner = e.SchedulerTimeout("rank 2 sched", code=100, sub_class="S4")
    out = classify(e.RankOpFailed("rank 2: SCHEDULER_TIMEOUT", rank=2, error=inner, code=100))
    assert (out.outcome, out.rank, out.error_code) == ("sched_error_code=100", 2, 100)
    inner_orch = e.OrchestratorError("orch", code=4)
    out = classify(e.RankOpFailed("rank 0: DEP_POOL_OVERFLOW", rank=0, error=inner_orch))
    assert (out.outcome, out.rank, out.error_name) == ("orch_error_code=4", 0, "DEP_POOL_OVERFLOW")


def test_stream_sync_timeout_has_no_device_code() -> None:
    out = classify(e.StreamSyncTimeout("stream sync timed out after 100 ms"))
    assert (out.outcome, out.error_code, out.error_name) == ("stream_sync_timeout", None, None)
    wrapped = e.RankOpFailed(
        "rank 1: stream sync", rank=1, error=e.StreamSyncTimeout("stream sync timed out")
    )
    assert (classify(wrapped).outcome, classify(wrapped).rank) == ("stream_sync_timeout", 1)


@pytest.mark.parametrize(
    ("err", "outcome", "rank"),
    [
        (e.InitFailed("rank 2: INIT_FAILED: bad config", rank=2), "init_failed", 2),
        (
            e.InitTimeout("INIT_DONE barrier: ranks 1 missing", rank=1, missing=[1]),
            "init_timeout",
            1,
        ),
        (e.RankCrashed("rank 0 died of SIGKILL", rank=0), "rank_crashed", 0),
        (e.RankHang("ranks 0, 1: hang", rank=-1, stacks={0: "s0", 1: "s1"}), "hang", None),
        (e.RankOpFailed("rank 1: op raised ValueError: boom", rank=1), "failed", 1),
    ],
)
def test_every_rank_error_kind(err: e.RankError, outcome: str, rank: int | None) -> None:
    out = classify(err)
    assert (out.outcome, out.rank) == (outcome, rank)
    assert out.error_code is None
    assert out.message == str(err).splitlines()[0]


def test_rank_hang_keeps_every_rank_stack() -> None:
    out = classify(e.RankHang("rank 1: hang\nstack text", rank=1, stacks={0: "a", 1: "b"}))
    assert (out.outcome, out.rank, dict(out.stacks)) == ("hang", 1, {0: "a", 1: "b"})
    assert out.message == "rank 1: hang" and out.detail == "stack text"


def test_device_unavailable_and_round_hang() -> None:
    out = classify(DeviceUnavailable("device_unavailable: waited 1.0 s for 2 of devices 0,1"))
    assert out.outcome == "device_unavailable"
    assert out.message == "waited 1.0 s for 2 of devices 0,1"  # prefix not repeated
    out = classify(RoundHang("round watchdog: test body hung", stacks={-1: "main"}))
    assert (out.outcome, dict(out.stacks)) == ("hang", {-1: "main"})


def test_plain_exceptions_are_failed_with_their_type() -> None:
    out = classify(AssertionError("rank 0 got 3"))
    assert (out.outcome, out.message) == ("failed", "AssertionError: rank 0 got 3")
    assert classify(KeyError()).message == ""  # no text: no invented message
    out = classify(ValueError("line one\nline two"))
    assert (out.message, out.detail) == ("ValueError: line one", "line two")


def test_cause_chain_is_searched() -> None:
    try:
        try:
            raise e.RankCrashed("rank 3 died", rank=3)
        except e.RankCrashed as crash:
            raise RuntimeError("round failed") from crash
    except RuntimeError as outer:
        out = classify(outer)
    assert (out.outcome, out.rank) == ("rank_crashed", 3)


def test_every_fixed_class_is_reachable() -> None:
    """The cases above produce every fixed outcome string at least once."""
    produced = {
        classify(None).outcome,
        classify(ValueError("x")).outcome,
        classify(e.StreamSyncTimeout("x")).outcome,
        classify(e.InitFailed("x", rank=0)).outcome,
        classify(e.InitTimeout("x", rank=0)).outcome,
        classify(e.RankCrashed("x", rank=0)).outcome,
        classify(RoundHang("x")).outcome,
        classify(DeviceUnavailable("x")).outcome,
    }
    assert produced == set(FIXED_OUTCOMES)
