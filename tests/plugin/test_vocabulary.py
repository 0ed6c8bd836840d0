"""The one vocabulary (pytest_pto._vocabulary): outcome grammar, test ids, the property reader.

Negative error codes are the boundary the grammar must hold: the plugin writes whatever code
an adapter or hook classifies with, and every reader (the terminal summary, ``pto-report``'s
JUnit reader, the JSON table) must read back the same class and code.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from pytest_pto._junit_props import round_properties
from pytest_pto._rounds import RoundPlan
from pytest_pto._vocabulary import (
    PROPERTY_NAMES,
    PropertyError,
    TestId,
    format_test_id,
    int_value,
    outcome_parts,
    outcome_sort_key,
    parse_outcome,
    parse_test_id,
    round_record,
    strip_round_id,
    strip_variant_id,
)
from pytest_pto.outcomes import RoundOutcome
from pytest_pto.report._cli import EXIT_OK, main
from pytest_pto.report._junit_read import read_junit
from tests.plugin.conftest import junit_cases, round_plan

# --- outcome grammar -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts", "code"),
    [
        ("passed", ("passed", None), None),
        ("sched_error_code=100", ("sched_error_code", "100"), 100),
        ("device_error_code=-1", ("device_error_code", "-1"), -1),
        ("device_error_code=-507018", ("device_error_code", "-507018"), -507018),
        ("hccl_error=EI0006", ("hccl_error", "EI0006"), None),
        ("x=1.5", ("x", "1.5"), None),
    ],
)
def test_outcome_grammar_accepts_what_the_plugin_writes(
    text: str, parts: tuple[str, str | None], code: int | None
) -> None:
    assert outcome_parts(text) == parts
    assert int_value(text) == code
    assert parse_outcome(f" {text} ") == text


@pytest.mark.parametrize("text", ["", "Passed", "1x", "a=", "a=b c", "a==1", "=1"])
def test_outcome_grammar_rejects(text: str) -> None:
    assert outcome_parts(text) is None
    with pytest.raises(ValueError):
        parse_outcome(text)


def test_negative_codes_sort_before_positive_ones_within_their_family() -> None:
    classes = ["sched_error_code=100", "hang", "sched_error_code=-2", "passed", "dev=-1", "dev=3"]
    assert sorted(classes, key=outcome_sort_key) == [
        "passed",
        "sched_error_code=-2",
        "sched_error_code=100",
        "hang",
        "dev=-1",
        "dev=3",
    ]


# --- test ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "rnd"),
    [
        ("t.py::test_allreduce[2-before-fixes-round-3]", "t.py::test_allreduce[2-before-fixes]", 3),
        ("test_x[round-1]", "test_x", 1),
        ("test_x[round-12-2]", "test_x[2]", 12),
        ("test_x[a-round-7-b]", "test_x[a-b]", 7),
        ("test_x[ground-3]", "test_x[ground-3]", None),
        ("test_x[round-auto]", "test_x[round-auto]", None),
        ("test_x", "test_x", None),
        ("test_x[2]", "test_x[2]", None),
    ],
)
def test_strip_round_id(name: str, base: str, rnd: int | None) -> None:
    assert strip_round_id(name) == (base, rnd)


@pytest.mark.parametrize(
    ("name", "variant", "out"),
    [
        ("test_a[2-before-fixes]", "before-fixes", "test_a[2]"),
        ("test_a[before-fixes-2]", "before-fixes", "test_a[2]"),
        ("test_a[before-fixes]", "before-fixes", "test_a"),
        ("test_a[2-not-before-fixes-x]", "before-fixes", "test_a[2-not-x]"),
        ("test_a[2-fixes]", "before-fixes", "test_a[2-fixes]"),
        ("test_a[2-latch-fix]", None, "test_a[2-latch-fix]"),
    ],
)
def test_strip_variant_id(name: str, variant: str | None, out: str) -> None:
    assert strip_variant_id(name, variant) == out


@pytest.mark.parametrize(
    ("nodeid", "variant", "tid"),
    [
        ("f.py::t[4-latch-fix-round-30]", "latch-fix", TestId("f.py::t[4]", "latch-fix", 30)),
        (
            "t.py::f[2-before-fixes-round-3]",
            "before-fixes",
            TestId("t.py::f[2]", "before-fixes", 3),
        ),
        ("t.py::f[round-1]", None, TestId("t.py::f", None, 1)),
        ("t.py::f[v-round-1]", "v", TestId("t.py::f", "v", 1)),
        ("t.py::f[ranks-4-v-round-2]", "v", TestId("t.py::f[ranks-4]", "v", 2)),
        (
            "t.py::C::f[x-y-ranks-2-a-b-round-12]",
            "a-b",
            TestId("t.py::C::f[x-y-ranks-2]", "a-b", 12),
        ),
        ("t.py::f", None, TestId("t.py::f", None, None)),
    ],
)
def test_test_id_parse_format_round_trip(nodeid: str, variant: str | None, tid: TestId) -> None:
    assert parse_test_id(nodeid, variant) == tid
    assert tid.format() == nodeid
    assert format_test_id(tid.base, tid.variant, tid.round) == nodeid


VARIANTS = """
before-fixes:
  init_barrier: false
latch-fix:
  latch_policy: owned-wallclock
"""


def test_collected_ids_parse_to_the_plans_base_id(ptester: pytest.Pytester) -> None:
    """The ids pytest-pto really collects (own params, ranks-N, variant, round-K) take apart
    into the base the plan uses and format back to themselves."""
    ptester.makefile(".yaml", variants=VARIANTS)
    ptester.makepyfile(
        test_ids=textwrap.dedent(
            """
            import json, pytest
            from pytest_pto._vocabulary import parse_test_id

            @pytest.mark.parametrize("n", [1, 2])
            @pytest.mark.pto(ranks=[1, 2])
            def test_x(n, pto_world, request):
                plan = pto_world.plan
                tid = parse_test_id(request.node.nodeid, plan.variant)
                print("ID " + json.dumps([request.node.nodeid, plan.base_id, tid.base,
                                          tid.variant, tid.round, plan.round, tid.format()]))
            """
        )
    )
    result = ptester.runpytest(
        "-s", "--pto-variants=variants.yaml", "--pto-rounds=2", "-p", "no:randomly"
    )
    assert result.ret == 0, result.stdout.str()
    lines = [line[line.index("ID [") + 3 :] for line in result.stdout.lines if "ID [" in line]
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 2 * 2 * 2 * 2  # params x ranks x variants x rounds
    for nodeid, plan_base, base, variant, rnd, plan_round, formatted in rows:
        assert base == plan_base and rnd == plan_round and formatted == nodeid
        assert variant in ("before-fixes", "latch-fix") and "round-" not in base


# --- the one property reader -----------------------------------------------------------------


def _plan() -> RoundPlan:
    return round_plan(nodeid="t.py::test_x[v-round-2]", variant="v")


def test_a_negative_code_round_trips_through_the_writer_and_the_reader() -> None:
    outcome = RoundOutcome("device_error_code=-5", 1, -5, "E_NEG", "bad")
    props = dict(round_properties(_plan(), outcome, devices=[0, 1, 2, 3]))
    assert list(props) == [n for n in PROPERTY_NAMES if n in props]
    for strict in (True, False):
        rec = round_record(props, "t.py::test_x[v-round-2]", strict=strict)
        assert (rec.test, rec.variant, rec.round, rec.rounds) == ("t.py::test_x", "v", 2, 5)
        assert (rec.outcome, rec.error_code, rec.rank, rec.ranks) == (
            "device_error_code=-5",
            -5,
            1,
            4,
        )


def test_the_reader_is_strict_or_lenient_about_bad_values() -> None:
    props = {"pto.outcome": "hang", "pto.ranks": "four", "pto.verdict": "maybe"}
    with pytest.raises(PropertyError, match=r"property pto.ranks='four': must be an integer"):
        round_record(props, "t[round-1]")
    rec = round_record(props, "t[round-1]", strict=False)
    assert (rec.ranks, rec.verdict, rec.round) == (None, None, 1)
    with pytest.raises(PropertyError, match=r"property pto.outcome 'Not!' is not an outcome"):
        round_record({"pto.outcome": "Not!"}, "t", strict=False)


NEGATIVE = """
import pytest

class DeviceError(Exception):
    pass

def failing(chip):
    if chip.rank == 1:
        raise DeviceError("aclrt said -5")

@pytest.mark.pto(ranks=2)
def test_neg(pto_world):
    pto_world.run(failing)
"""

CONFTEST = """
import pytest_pto

def pytest_pto_classify(failure):
    return pytest_pto.Classified("device_error_code=-5", "E_NEG")
"""


def test_a_negative_code_reaches_every_reader(
    ptester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plugin writes it (JUnit), the terminal summary counts it, pto-report reads it back."""
    ptester.makeconftest(CONFTEST)
    ptester.makepyfile(test_neg=NEGATIVE)
    junit = ptester.path / "junit.xml"
    result = ptester.runpytest_subprocess("--pto-rounds=2", f"--junitxml={junit}")
    assert result.ret == 1
    out = result.stdout.str()
    assert "FAILED device_error_code=-5" in out or "device_error_code=-5: rank 1" in out, out
    table = out[out.index("pto rounds") :]
    assert "device_error_code=-5" in table and "device_error_code=-5: rank 1 (2)" in table
    cases = junit_cases(junit)
    for rnd in (1, 2):
        props = cases[f"test_neg[round-{rnd}]"]["props"]
        assert (props["pto.outcome"], props["pto.error_code"]) == ("device_error_code=-5", "-5")
    records = read_junit(junit).records
    assert [(r.outcome, r.error_code, r.rank, r.round) for r in records] == [
        ("device_error_code=-5", -5, 1, 1),
        ("device_error_code=-5", -5, 1, 2),
    ]
    capsys.readouterr()
    assert main(["--format", "json", str(junit)]) == EXIT_OK
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["outcomes"] == {"device_error_code=-5": 2}
    assert row["failed_ranks"] == {"device_error_code=-5": {"1": 2}}
