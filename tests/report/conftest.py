"""Helpers for the report tests: JUnit XML of a stand-in run, and hand-built XML.

``make_run`` is a test double of the plugin's JUnit writer, not a plugin run: a real pytest
session (real ``--junitxml``, xdist included, so the files have exactly pytest's structure)
whose tests record the docs/design.md section 4 properties by hand from a plan, and fail the way the
plugin does (message naming the outcome class and rank). By construction every failure is on
rank ``STAND_IN_FAILED_RANK`` and the error name is the one of the planned code. The pto
plugin is disabled in these inner sessions. pto-report over JUnit of a real plugin run (real
chip workers) is tested in tests/plugin/test_incident_demo.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

STAND_IN_FAILED_RANK = 1

INNER_TEST = """
import pytest

from libpto.errors import error_name

PLAN = {plan!r}
RANKS = {ranks!r}
ROUNDS = max(len(v) for v in PLAN.values())


def _code(outcome):
    return int(outcome.split("=", 1)[1]) if "_error_code=" in outcome else None


@pytest.mark.parametrize("k", range(1, ROUNDS + 1), ids=lambda k: f"round-{{k}}")
@pytest.mark.parametrize("variant", list(PLAN))
@pytest.mark.parametrize("ranks", RANKS)
def test_allreduce(ranks, variant, k, record_property):
    outcome = PLAN[variant][k - 1]
    record_property("pto.outcome", outcome)
    record_property("pto.round", k)
    record_property("pto.rounds", ROUNDS)
    record_property("pto.ranks", ranks)
    record_property("pto.devices", ",".join(str(d) for d in range(ranks)))
    record_property("pto.variant", variant)
    record_property("pto.init_skew_ms", 10.0 * k)
    record_property("pto.lock_wait_ms", 0.5)
    if outcome != "passed":
        record_property("pto.failed_rank", {rank})
        code = _code(outcome)
        if code is not None:
            record_property("pto.error_code", code)
            record_property("pto.error_name", error_name(code))
        pytest.fail(f"{{outcome}}: rank {rank}: stand-in failure of round {{k}}", pytrace=False)


def test_not_distributed():
    pass
"""

MakeRun = Callable[..., Path]


@pytest.fixture
def make_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> MakeRun:
    """Run a stand-in session (test double of the plugin, see above); return its JUnit file.

    ``plan`` maps variant -> outcome per round. ``xdist=N`` runs it with ``-n N`` (the
    controller writes the file, as with the plugin).
    """
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    counter = [0]

    def run(
        plan: Mapping[str, Sequence[str]],
        *,
        ranks: Sequence[int] = (2,),
        xdist: int = 0,
        family: str | None = None,
        name: str = "test_incident",
    ) -> Path:
        counter[0] += 1
        source = INNER_TEST.format(plan=dict(plan), ranks=list(ranks), rank=STAND_IN_FAILED_RANK)
        pytester.makepyfile(**{name: source})
        junit = pytester.path / f"junit-{counter[0]}.xml"
        args = ["-p", "no:pto", "-p", "no:cacheprovider", f"--junitxml={junit}", f"{name}.py"]
        if family:
            args += ["-o", f"junit_family={family}"]
        if xdist:
            result = pytester.runpytest_subprocess("-n", str(xdist), *args)
        else:
            result = pytester.runpytest_inprocess(*args)
        capsys.readouterr()  # the inner session's terminal output is not the report's
        assert junit.is_file(), result.stdout.str()
        return junit

    return run


@pytest.fixture
def incident_plan() -> dict[str, list[str]]:
    """docs/design.md §1's table: 15/30 sched_error_code=100, 1/30 stream_sync_timeout, 0/30."""
    before = ["sched_error_code=100" if k % 2 else "passed" for k in range(30)]
    latch = ["stream_sync_timeout" if k == 7 else "passed" for k in range(30)]
    return {"before-fixes": before, "latch-fix": latch, "both-fixes": ["passed"] * 30}
