"""Who latched, and a header holding two codes: from a libpto error to the outcome and JUnit.

The errors are the real ones a run raises: ``libpto.errors.check`` on a latched status with
the details ``Runtime`` decodes from a real ``pto_rt_error_info``. (A header with both codes
comes from a race between the orchestrator and a scheduler thread, which no test can order
deterministically; the header fields are filled here instead, and the C side that fills them
is the same ``latch()`` the runtime tests exercise.)
"""

from __future__ import annotations

import pytest

import libpto
from libpto._ffi import ffi, lib
from libpto.errors import check
from libpto.runtime import _error_details
from pytest_pto._junit_props import round_properties
from pytest_pto._vocabulary import PROPERTY_NAMES
from pytest_pto.outcomes import classify
from tests.plugin.conftest import round_plan


def _latched(status: int, orch: int, sched: int, thread: int, by: int) -> libpto.PtoError:
    info = ffi.new("pto_rt_error_info *")
    info.orch_error_code = orch
    info.sched_error_code = sched
    info.latch_thread = thread
    info.latched_by = by
    info.sub_class = libpto.STALL_S1 if sched == 100 and not orch else 0
    with pytest.raises(libpto.PtoError) as ei:
        check(status, "rank 0 Runtime.run", **_error_details(info, 0))
    return ei.value


def _props(err: BaseException) -> dict[str, str]:
    plan = round_plan(
        nodeid="t.py::t",
        base_id="t.py::t",
        round=1,
        rounds=1,
        variant=None,
        ranks=2,
        latch_policy="idle-iterations",
        init_timeout=10.0,
    )
    return dict(round_properties(plan, classify(err)))


def test_sibling_latch_reaches_junit() -> None:
    err = _latched(lib.PTO_E_SCHED, 0, 100, 1, lib.PTO_LATCHED_BY_SIBLING)
    assert isinstance(err, libpto.SchedulerTimeout) and err.latched_by == "sibling"
    props = _props(err)
    assert props["pto.outcome"] == "sched_error_code=100"
    assert props["pto.latched_by"] == "sibling"
    assert "pto.also_latched" not in props


def test_both_codes_classify_as_the_orchestrators_and_keep_the_other() -> None:
    err = _latched(lib.PTO_E_ORCH, 3, 100, lib.PTO_LATCH_THREAD_ORCH, lib.PTO_LATCHED_BY_NONE)
    assert isinstance(err, libpto.OrchestratorError)
    assert err.orch_error_code == 3 and err.sched_error_code == 100
    props = _props(err)
    assert props["pto.outcome"] == "orch_error_code=3"
    assert props["pto.error_code"] == "3"
    assert props["pto.also_latched"] == "sched_error_code=100"
    assert "pto.latched_by" not in props


def test_new_properties_are_documented_names() -> None:
    assert {"pto.latched_by", "pto.also_latched"} <= set(PROPERTY_NAMES)
