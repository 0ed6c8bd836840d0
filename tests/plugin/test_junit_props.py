"""The JUnit properties of one round (docs/design.md section 4 names), from a classified outcome.

Unit tests of ``round_properties``: which property appears when, with what text. Rank 0 and
code-less outcomes are the boundaries a truthiness test (``if outcome.rank:``) would lose.
"""

from __future__ import annotations

import dataclasses

from pytest_pto._junit_props import round_properties
from pytest_pto._rounds import RoundPlan
from pytest_pto._vocabulary import PROPERTY_NAMES, properties_dict
from pytest_pto.outcomes import RoundOutcome
from tests.plugin.conftest import round_plan


def plan(variant: str | None = "latch-fix") -> RoundPlan:
    return round_plan(nodeid="t.py::test_x[round-2]", variant=variant)


def test_a_failure_on_rank_0_with_a_code_has_every_property_in_order() -> None:
    outcome = RoundOutcome(
        "orch_error_code=3",
        0,
        3,
        "FLOW_CONTROL_DEADLOCK",
        "rank 0: ...",
        latched_by="sibling",
        also_latched="sched_error_code=100",
    )
    props = round_properties(
        plan(),
        outcome,
        devices=(2, 3, 4, 5),
        init_skew_ms=1.23456,
        init_skew_partial=True,
        lock_wait_ms=0.0,
        host="ci-7",
        rank_hosts=("a", "a", "b", "b"),
        verdict="product",
        attempt=2,
        first_outcome="device_unavailable",
        first_devices=(0, 1, 2, 3),
        decision="flaky",
    )
    assert props == [
        ("pto.outcome", "orch_error_code=3"),
        ("pto.round", "2"),
        ("pto.rounds", "5"),
        ("pto.ranks", "4"),
        ("pto.devices", "2,3,4,5"),
        ("pto.variant", "latch-fix"),
        ("pto.failed_rank", "0"),
        ("pto.error_code", "3"),
        ("pto.error_name", "FLOW_CONTROL_DEADLOCK"),
        ("pto.latched_by", "sibling"),
        ("pto.also_latched", "sched_error_code=100"),
        ("pto.init_skew_ms", "1.235"),
        ("pto.init_skew_partial", "true"),
        ("pto.lock_wait_ms", "0.000"),
        ("pto.host", "ci-7"),
        ("pto.hosts", "a,a,b,b"),
        ("pto.verdict", "product"),
        ("pto.attempt", "2"),
        ("pto.first_outcome", "device_unavailable"),
        ("pto.first_devices", "0,1,2,3"),
        ("pto.seed", "0"),
        ("pto.decision", "flaky"),
        ("pto.decision_rounds", "2"),
        ("pto.target_fail_rate", "0.05"),
    ]
    assert [name for name, _ in props] == list(PROPERTY_NAMES)


def test_a_pass_has_only_what_applies() -> None:
    props = dict(round_properties(plan(variant=None), RoundOutcome("passed")))
    assert props == {
        "pto.outcome": "passed",
        "pto.round": "2",
        "pto.rounds": "5",
        "pto.ranks": "4",
        "pto.seed": "0",
    }


def test_the_seed_is_the_one_the_round_ran_with_and_auto_rounds_carry_their_state() -> None:
    pinned = dataclasses.replace(plan(), env={"PTO_SIM_MALLOC_SEED": "77"})
    assert dict(round_properties(pinned, RoundOutcome("passed")))["pto.seed"] == "77"
    running = dict(round_properties(plan(), RoundOutcome("passed"), decision="running"))
    assert running["pto.decision"] == "running" and "pto.decision_rounds" not in running


def test_stream_sync_timeout_names_its_rank_but_no_code() -> None:
    props = dict(round_properties(plan(), RoundOutcome("stream_sync_timeout", 1)))
    assert props["pto.failed_rank"] == "1"
    assert "pto.error_code" not in props and "pto.error_name" not in props


def test_properties_dict_keeps_pto_entries_last_one_winning() -> None:
    user = [("pto.outcome", "failed"), ("other", 1), ("pto.outcome", "passed"), ("pto.round", 3)]
    assert properties_dict(user) == {"pto.outcome": "passed", "pto.round": "3"}
