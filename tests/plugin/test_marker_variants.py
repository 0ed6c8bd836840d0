"""The pto marker, rounds parametrization and variants files."""

from __future__ import annotations

import textwrap

import pytest

from pytest_pto._rounds import derive_seed
from tests.plugin.conftest import junit_cases


def collect_error(ptester: pytest.Pytester, source: str, *args: str) -> str:
    ptester.makepyfile(test_m=textwrap.dedent(source))
    result = ptester.runpytest("--co", *args)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    out = result.stdout.str()
    assert "Traceback" not in out
    return out


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("pto(rankz=2)", "unknown argument 'rankz'; allowed: ranks, env, rank_env"),
        ("pto(2)", "takes keyword arguments only"),
        ("pto(ranks=0)", "ranks must be integers >= 1"),
        ("pto(ranks='2')", "ranks must be an integer >= 1 or a non-empty list"),
        ("pto(ranks=[2, 2])", "a rank count appears twice"),
        ("pto(ranks=9)", "ranks=9: more ranks than devices (8: 0,1,2,3,4,5,6,7)"),
        ("pto(env={'1BAD': 'x'})", "'1BAD' is not a valid environment variable name"),
        ("pto(env=['A=1'])", "env=...) must be a mapping"),
        ("pto(env={'A': None})", "must be a string or number"),
        ("pto(init_timeout=0)", "init_timeout=...) must be a number of seconds > 0"),
        ("pto(rank_env={'x': {}})", "'x' is not a rank"),
        ("pto(init_timeout=float('inf'))", "init_timeout=...) must be a number of seconds > 0"),
        ("pto(rank_env={2: {'A': '1'}})", "rank 2 does not exist: this test runs at most 2 ranks"),
        ("pto(ranks=[2, 4], rank_env={4: {}})", "rank 4 does not exist: this test runs at most 4"),
    ],
)
def test_bad_marker_is_one_clear_collection_error(
    ptester: pytest.Pytester, marker: str, expected: str
) -> None:
    out = collect_error(
        ptester,
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_bad():
            pass
        """,
    )
    assert "test_m.py::test_bad" in out
    assert expected in out


def test_rounds_compose_with_parametrize_and_ranks_lists(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(
        test_m="""
        import pytest

        @pytest.mark.pto(ranks=[2, 4])
        @pytest.mark.parametrize("n", [7])
        def test_x(n):
            pass

        @pytest.mark.pto
        def test_y():
            pass

        def test_plain():
            pass
        """
    )
    result = ptester.runpytest("--co", "-q", "--pto-rounds=2")
    lines = [line for line in result.stdout.lines if line.startswith("test_m.py")]
    assert lines == [
        "test_m.py::test_x[7-ranks-2-round-1]",
        "test_m.py::test_x[7-ranks-2-round-2]",
        "test_m.py::test_x[7-ranks-4-round-1]",
        "test_m.py::test_x[7-ranks-4-round-2]",
        "test_m.py::test_y[round-1]",
        "test_m.py::test_y[round-2]",
        "test_m.py::test_plain",
    ]


VARIANTS = """
before-fixes:
  description: the old scheduler and no barrier
  latch_policy: idle-iterations
  init_barrier: false
  env: {PTO2_RING_HEAP: 4294967296}
both-fixes:
  latch_policy: owned-wallclock
  init_barrier: on
  ranks: 4
  rank_env: {1: {PTO_SIM_INIT_DELAY_MS: 10}}
"""


def test_variants_multiply_items_and_reach_junit(ptester: pytest.Pytester) -> None:
    ptester.makefile(".yaml", variants=VARIANTS)
    ptester.makepyfile(
        test_m="""
        import pytest

        @pytest.mark.pto(env={"X": "1"})
        def test_v(request):
            pass
        """
    )
    result = ptester.runpytest("-v", "--pto-variants=variants.yaml", "--junitxml=out.xml")
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    assert "pto: variants variants.yaml: before-fixes, both-fixes" in out
    assert "test_m.py::test_v[before-fixes-round-1] PASSED" in out
    assert "test_m.py::test_v[both-fixes-round-1] PASSED" in out
    props = {name: case["props"] for name, case in junit_cases(ptester.path / "out.xml").items()}
    assert props["test_v[before-fixes-round-1]"]["pto.variant"] == "before-fixes"
    assert props["test_v[before-fixes-round-1]"]["pto.ranks"] == "2"
    assert props["test_v[both-fixes-round-1]"]["pto.ranks"] == "4"
    # select one variant; the table groups per variant
    result = ptester.runpytest("--pto-variants=variants.yaml", "--pto-variant=both-fixes")
    result.stdout.re_match_lines([r"test_m.py::test_v\s+both-fixes\s+4\s+1\s+1\s+0", ".*1 passed"])


def test_variant_plan_overlays_session_and_marker_overlays_variant(
    ptester: pytest.Pytester,
) -> None:
    ptester.makefile(".yaml", variants=VARIANTS)
    ptester.makeconftest(
        """
        import json, pytest
        from pytest_pto.plugin import ROUND_KEY

        @pytest.hookimpl(trylast=True)
        def pytest_runtest_call(item):
            plan = item.stash[ROUND_KEY].plan
            with open("plans.jsonl", "a") as f:
                f.write(json.dumps({"id": item.name, "env": dict(plan.env),
                    "barrier": plan.init_barrier, "latch": plan.latch_policy,
                    "rank_env": {str(k): v for k, v in plan.rank_env.items()},
                    "seed": plan.seed}) + "\\n")
        """
    )
    ptester.makepyfile(
        test_m="""
        import pytest

        @pytest.mark.pto(env={"PTO2_RING_HEAP": "1024", "Y": "m"})
        def test_v():
            pass
        """
    )
    result = ptester.runpytest(
        "--pto-variants=variants.yaml", "--pto-env", "Z=cli", "--pto-rounds=2", "--pto-seed=5"
    )
    assert result.ret == 0, result.stdout.str()
    import json

    plans = {
        p["id"]: p for p in map(json.loads, (ptester.path / "plans.jsonl").read_text().splitlines())
    }
    before = plans["test_v[before-fixes-round-1]"]
    assert before["env"]["PTO2_RING_HEAP"] == "1024"  # marker over variant
    assert before["env"]["Z"] == "cli" and before["env"]["Y"] == "m"
    assert before["env"]["PTO_LATCH_POLICY"] == "idle-iterations" and before["barrier"] is False
    both = plans["test_v[both-fixes-round-2]"]
    assert both["latch"] == "owned-wallclock" and both["barrier"] is True
    assert both["rank_env"] == {"1": {"PTO_SIM_INIT_DELAY_MS": "10"}}
    # each round resamples init latency; the same round shares its draw across variants
    seeds = {p["seed"] for p in plans.values()}
    assert seeds == {derive_seed(5, 1), derive_seed(5, 2)}
    assert before["env"]["PTO_SIM_MALLOC_SEED"] == str(derive_seed(5, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1:\n  envv: {}\n", "variant 'v1': unknown key 'envv'; allowed keys: description, env"),
        ("v1:\n  latch_policy: lazy\n", "variant 'v1': key 'latch_policy': 'lazy' must be one of"),
        ("v1:\n  init_barrier: maybe\n", "variant 'v1': key 'init_barrier': 'maybe' must be"),
        ("v1:\n  ranks: 0\n", "variant 'v1': key 'ranks': 0 must be an integer >= 1"),
        ("v1:\n  ranks: 9\n", "variant 'v1': key 'ranks': 9 is more ranks than devices (8)"),
        ("v1:\n  env: {A: [1]}\n", "variant 'v1': key 'env'.A: must be a string or number"),
        ("v1:\n  env: [1]\n", "variant 'v1': key 'env': must be a mapping"),
        ("v1: [\n", "not valid YAML at line"),
        ("", "no variants defined (the file is empty)"),
        ("- a\n- b\n", "must be a mapping of variant name -> settings"),
        ("'bad name':\n  env: {}\n", "variant names are letters, digits"),
        ("v1: {}\nv1: {ranks: 2}\n", "not valid YAML at line 2: key 'v1' appears twice"),
        ("v1: {env: {A: 1, A: 2}}\n", "not valid YAML at line 1: key 'A' appears twice"),
        ("v1: {ranks: 2, rank_env: {2: {}}}\n", "key 'rank_env': rank 2 does not exist with"),
    ],
)
def test_bad_variants_file_names_file_variant_and_key(
    ptester: pytest.Pytester, text: str, expected: str
) -> None:
    ptester.makefile(".yaml", variants=text)
    ptester.makepyfile("def test_x(): pass\n")
    result = ptester.runpytest("--pto-variants=variants.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "variants.yaml" in err and expected in err, err


def test_variants_file_not_utf8_and_merge_keys(ptester: pytest.Pytester) -> None:
    (ptester.path / "variants.yaml").write_bytes(b"v1: {description: \xff}\n")
    ptester.makepyfile("def test_x(): pass\n")
    result = ptester.runpytest("--pto-variants=variants.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "variants.yaml: not valid YAML: not UTF-8 text" in result.stderr.str()
    # a key brought in by a YAML merge may be overridden: not a duplicate
    ptester.makefile(".yaml", variants="a: &b {init_barrier: on}\nb: {<<: *b, init_barrier: off}\n")
    ptester.makepyfile("import pytest\n\n@pytest.mark.pto\ndef test_x(): pass\n")
    result = ptester.runpytest("--co", "-q", "--pto-variants=variants.yaml")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["*test_x[[]a-round-1[]]", "*test_x[[]b-round-1[]]"])


def test_rank_env_applies_to_the_ranks_a_round_has(ptester: pytest.Pytester) -> None:
    ptester.makeconftest(
        """
        import json, pytest
        from pytest_pto.plugin import ROUND_KEY

        @pytest.hookimpl(trylast=True)
        def pytest_runtest_call(item):
            plan = item.stash[ROUND_KEY].plan
            with open("plans.jsonl", "a") as f:
                f.write(json.dumps([item.name, sorted(plan.rank_env)]) + "\\n")
        """
    )
    ptester.makepyfile(
        test_m="""
        import pytest

        @pytest.mark.pto(ranks=[2, 4], rank_env={3: {"A": "1"}})
        def test_v():
            pass
        """
    )
    assert ptester.runpytest().ret == 0
    import json

    lines = (ptester.path / "plans.jsonl").read_text().splitlines()
    assert dict(map(json.loads, lines)) == {
        "test_v[ranks-2-round-1]": [],
        "test_v[ranks-4-round-1]": [3],
    }


def test_marker_added_after_collection_is_a_clean_per_test_error(
    ptester: pytest.Pytester,
) -> None:
    ptester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if item.name.startswith("test_dyn"):
                    item.add_marker(pytest.mark.pto(ranks=0))
        """
    )
    ptester.makepyfile(test_m="def test_dyn(pto_world):\n    pass\n\ndef test_ok():\n    pass\n")
    result = ptester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "test_m.py::test_dyn[round-1]: @pytest.mark.pto(ranks=0): ranks must be integers" in out
    assert "Traceback" not in out and "_rounds.py" not in out


def test_unknown_selected_variant(ptester: pytest.Pytester) -> None:
    ptester.makefile(".yaml", variants=VARIANTS)
    ptester.makepyfile("def test_x(): pass\n")
    result = ptester.runpytest("--pto-variants=variants.yaml", "--pto-variant=latch-fix")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--pto-variant latch-fix: no such variant in variants.yaml" in result.stderr.str()
    assert "(it defines before-fixes, both-fixes)" in result.stderr.str()
