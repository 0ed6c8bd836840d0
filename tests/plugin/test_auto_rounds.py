"""--pto-rounds=auto: rounds until an anytime-valid decision, only rounds that ran reported,
the decision in the summary, in JUnit and in pto-report; paired variants get McNemar.

The inner tests fail with a probability drawn from the round's own seed
(``PTO_SIM_MALLOC_SEED``): real rounds of real chip workers, reproducible per seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_pto.report._cli import main as report_main
from pytest_pto.report._stats import mcnemar_exact
from tests.plugin.conftest import junit_cases

SEEDED = """
import random
import pytest

RATE = {rate}

@pytest.mark.pto(ranks=1)
def test_rate(pto_world):
    seed = int(pto_world.env["PTO_SIM_MALLOC_SEED"])
    assert random.Random(seed).random() >= RATE
"""


def _run(ptester: pytest.Pytester, rate: float, *args: str) -> tuple[pytest.RunResult, Path]:
    ptester.makepyfile(test_seeded=SEEDED.format(rate=rate))
    junit = ptester.path / "junit.xml"
    result = ptester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={junit}", *args)
    return result, junit


def test_clean_test_passes_and_only_its_rounds_are_reported(ptester: pytest.Pytester) -> None:
    result, junit = _run(ptester, 0.0, "--pto-rounds=auto", "--pto-target-fail-rate=20%")
    result.assert_outcomes(passed=29)  # 1/(n+1)/0.8^n >= 20 first at n = 29
    out = result.stdout.str()
    assert "rounds auto (at most 200, target failure rate 20%)" in out
    assert "test_seeded.py::test_rate: auto: passes after 29 rounds: 29 passed" in out
    assert "29 clean rounds: failure rate below 9.8 % (95 %); auto: passes after 29 rounds" in out
    cases = junit_cases(junit)
    assert sorted(cases) == sorted(f"test_rate[round-{k}]" for k in range(1, 30))
    assert cases["test_rate[round-1]"]["props"]["pto.decision"] == "running"
    assert "pto.decision_rounds" not in cases["test_rate[round-28]"]["props"]
    last = cases["test_rate[round-29]"]["props"]
    assert last["pto.decision"] == "passes" and last["pto.decision_rounds"] == "29"
    assert last["pto.target_fail_rate"] == "0.2" and last["pto.seed"].isdigit()
    # pto-report reads the decision back
    out_json = ptester.path / "report.json"
    assert report_main(["--format", "json", "-o", str(out_json), str(junit)]) == 0
    (row,) = json.loads(out_json.read_text())["rows"]
    assert (row["decision"], row["decision_rounds"], row["rounds"]) == ("passes", 29, 29)
    assert row["statement"].startswith("29 clean rounds: failure rate below 9.8 % (95 %)")


def test_deterministic_failure_stops_within_two_rounds_under_xdist(
    ptester: pytest.Pytester,
) -> None:
    result, junit = _run(ptester, 1.1, "--pto-rounds=auto", "-n", "2")
    result.assert_outcomes(failed=2)
    assert "auto: flaky after 2 rounds" in result.stdout.str()
    cases = junit_cases(junit)
    assert sorted(cases) == ["test_rate[round-1]", "test_rate[round-2]"]
    assert cases["test_rate[round-2]"]["props"]["pto.decision"] == "flaky"


def test_max_rounds_ends_undecided(ptester: pytest.Pytester) -> None:
    result, junit = _run(ptester, 0.0, "--pto-rounds=auto", "--pto-max-rounds=3")
    result.assert_outcomes(passed=3)
    assert "auto: undecided after 3 rounds" in result.stdout.str()
    assert junit_cases(junit)["test_rate[round-3]"]["props"]["pto.decision"] == "undecided"


def test_infra_rounds_do_not_count_in_the_decision(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that failed on a poisoned device is ``pto.verdict=infra``: it is left out of
    the decision as it is left out of the tables' pass rate, so a test whose every round ends
    on a faulty device (and its retry too) is never decided "flaky"."""
    monkeypatch.setenv("PTO_SIM_DEVICE_FAULTS", "0=507899,1=507899")
    result, junit = _run(
        ptester,
        0.0,
        "--pto-rounds=auto",
        "--pto-max-rounds=3",
        "--pto-devices=0-1",
        "--pto-quarantine=off",
    )
    out = result.stdout.str()
    assert "auto: undecided after 3 rounds" in out, out
    cases = junit_cases(junit)
    assert sorted(cases) == [f"test_rate[round-{k}]" for k in range(1, 4)]
    for props in (c["props"] for c in cases.values()):
        assert props["pto.outcome"] == "device_error_code=507899"
        assert props["pto.verdict"] == "infra"
    assert cases["test_rate[round-2]"]["props"]["pto.decision"] == "running"


def test_collect_only_shows_one_auto_item(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_seeded=SEEDED.format(rate=0.0))
    result = ptester.runpytest_subprocess("--collect-only", "-q", "--pto-rounds=auto")
    assert "test_seeded.py::test_rate[round-auto]" in result.stdout.str()
    assert "1 test collected" in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pto-rounds=often"], "--pto-rounds=often: must be an integer >= 1 and <= 100000"),
        (["--pto-target-fail-rate=1.5"], "--pto-target-fail-rate=1.5: must be a failure rate"),
        (["--pto-max-rounds=0"], "--pto-max-rounds=0: must be an integer >= 1"),
        (["--pto-target-outcome=passed"], "--pto-target-outcome=passed: must be 'any'"),
    ],
)
def test_bad_auto_settings_are_usage_errors(
    ptester: pytest.Pytester, args: list[str], message: str
) -> None:
    ptester.makepyfile(test_seeded=SEEDED.format(rate=0.0))
    result = ptester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


VARIANTS = """
a:
  description: fails when the round's draw is below 0.5
  env: {PTO_TEST_RATE: "0.5"}
b:
  description: never fails
  env: {PTO_TEST_RATE: "0.0"}
"""

PAIRED = """
import random
import pytest

@pytest.mark.pto(ranks=1)
def test_rate(pto_world):
    seed = int(pto_world.env["PTO_SIM_MALLOC_SEED"])
    assert random.Random(seed).random() >= float(pto_world.env["PTO_TEST_RATE"])
"""


def test_variants_share_round_seeds_and_are_compared_paired(ptester: pytest.Pytester) -> None:
    """Both variants' round K runs seed K: pto-report pairs them (McNemar); the same rounds
    read from two runs with different --pto-seed are not pairs (Fisher)."""
    ptester.makepyfile(test_paired=PAIRED)
    ptester.path.joinpath("variants.yaml").write_text(VARIANTS)
    junit = ptester.path / "junit.xml"
    result = ptester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pto-variants=variants.yaml", "--pto-rounds=12",
        f"--junitxml={junit}",
    )  # fmt: skip
    cases = junit_cases(junit)
    seeds = {
        (name.split("-round-")[0], p["props"]["pto.round"]): p["props"]["pto.seed"]
        for name, p in cases.items()
    }
    for k in range(1, 13):
        assert seeds[("test_rate[a", str(k))] == seeds[("test_rate[b", str(k))]
    failed_a = sum(c["failure"] is not None for n, c in cases.items() if "[a-" in n)
    assert 0 < failed_a < 12
    result.assert_outcomes(failed=failed_a, passed=24 - failed_a)
    assert "McNemar exact, paired" in result.stdout.str()  # the terminal summary too
    out_json = ptester.path / "report.json"
    assert report_main(["--format", "json", "-o", str(out_json), str(junit)]) == 0
    (comp,) = json.loads(out_json.read_text())["comparisons"]
    assert comp["test_name"] == "mcnemar_exact_two_sided" and comp["paired"] is True
    assert (comp["discordant_a"], comp["discordant_b"]) == (failed_a, 0)
    assert comp["p_value"] == pytest.approx(mcnemar_exact(failed_a, 0).p_value)
    # variant b from another run with another base seed: not paired -> Fisher
    junit2 = ptester.path / "junit2.xml"
    ptester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pto-variants=variants.yaml", "--pto-variant=b",
        "--pto-rounds=12", "--pto-seed=99", f"--junitxml={junit2}",
    )  # fmt: skip
    only_a = ptester.path / "only_a.xml"
    ptester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pto-variants=variants.yaml", "--pto-variant=a",
        "--pto-rounds=12", f"--junitxml={only_a}",
    )  # fmt: skip
    assert report_main(["--format", "json", "-o", str(out_json), str(only_a), str(junit2)]) == 0
    (comp,) = json.loads(out_json.read_text())["comparisons"]
    assert comp["test_name"] == "fisher_exact_two_sided" and comp["paired"] is False
