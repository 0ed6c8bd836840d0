"""Every bad input is one clear error naming its source and the rule (issue 9).

Options, environment and ini: a usage error (exit 4) on stderr. Marker and variants file: a
collection error naming the test or the file. Never an internal exception, a traceback
through the plugin, a hang, or a silent acceptance.
"""

from __future__ import annotations

import textwrap

import pytest

from pytest_pto.devices import DevicePool

PTO_TEST = """
import pytest

@pytest.mark.pto
def test_x(pto_world):
    assert pto_world.size == 2
"""

# (command-line args, environment, ini lines) -> the text of the one usage error
USAGE_CASES = [
    (
        ["--pto-lock-dir=a\x00b"],
        {},
        "",
        "--pto-lock-dir=a\x00b: must be a path; this one contains a NUL",
    ),
    (
        ["--pto-log-dir=a\x00b"],
        {},
        "",
        "--pto-log-dir=a\x00b: must be a path; this one contains a NUL",
    ),
    (["--pto-trace=a\x00b"], {}, "", "--pto-trace=a\x00b: must be a path; this one contains a NUL"),
    (
        ["--pto-variants=a\x00b"],
        {},
        "",
        "--pto-variants=a\x00b: must be a path; this one contains a NUL",
    ),
    (["--pto-trace=\ud800"], {}, "", "must be a path; this one cannot be encoded"),
    (["--pto-variants=."], {}, "", "--pto-variants=.: is a directory; name the file"),
    (["--pto-devices=0\x00"], {}, "", "--pto-devices=0\x00: '0\\x00' is not a device id"),
    (
        ["--pto-latch-policy=owned-wallclock\x00"],
        {},
        "",
        "must be one of owned-wallclock, idle-iterations",
    ),
    (
        ["--pto-round-timeout=1e308"],
        {},
        "",
        "--pto-round-timeout=1e308: must be a number of seconds > 0 and <= 1000000",
    ),
    (
        ["--pto-init-timeout=1e308"],
        {},
        "",
        "--pto-init-timeout=1e308: must be a number of seconds > 0 and <= 1000000",
    ),
    (
        ["--pto-lock-timeout=1e308"],
        {},
        "",
        "--pto-lock-timeout=1e308: must be a number of seconds > 0 and <= 1000000",
    ),
    (["--pto-init-timeout=inf"], {}, "", "--pto-init-timeout=inf: must be a number of seconds"),
    (["--pto-init-timeout=nan"], {}, "", "--pto-init-timeout=nan: must be a number of seconds"),
    (["--pto-lock-timeout=0"], {}, "", "--pto-lock-timeout=0: must be a number of seconds"),
    (
        ["--pto-init-timeout=\u0661"],
        {},
        "",
        "--pto-init-timeout=\u0661: must be a number of seconds",
    ),
    (["--pto-rounds=\u0663"], {}, "", "--pto-rounds=\u0663: must be an integer >= 1"),
    (["--pto-ranks=\uff12"], {}, "", "--pto-ranks=\uff12: must be an integer >= 1"),
    (["--pto-seed=1.5"], {}, "", "--pto-seed=1.5: must be an integer >= 0"),
    (
        ["--pto-env", "X=a\x00b"],
        {},
        "",
        "--pto-env: X='a\\x00b': the value contains a NUL character",
    ),
    (["--pto-env", "X=\ud800"], {}, "", "--pto-env: X='\\ud800': the value cannot be encoded"),
    (["--pto-env", "=v"], {}, "", "--pto-env: '=v' is not KEY=VALUE"),
    (
        [],
        {"PTO_ROUND_TIMEOUT": "1e308"},
        "",
        "environment PTO_ROUND_TIMEOUT=1e308: must be a number of seconds > 0 and <= 1000000",
    ),
    (
        [],
        {"PTO_LOCK_TIMEOUT": "-inf"},
        "",
        "environment PTO_LOCK_TIMEOUT=-inf: must be a number of seconds",
    ),
    ([], {"PTO_ROUNDS": "\u0663"}, "", "environment PTO_ROUNDS=\u0663: must be an integer >= 1"),
    (
        [],
        {},
        "pto_init_timeout = 1e308",
        "ini pto_init_timeout = 1e308 in tox.ini: must be a number of seconds > 0 and <= 1000000",
    ),
    (
        [],
        {},
        "pto_round_timeout = nan",
        "ini pto_round_timeout = nan in tox.ini: must be a number of seconds",
    ),
]


@pytest.mark.parametrize(("args", "env", "ini", "expected"), USAGE_CASES)
def test_bad_option_env_or_ini_is_one_usage_error(
    ptester: pytest.Pytester,
    *,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    ini: str,
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if ini:
        ptester.makeini(f"[pytest]\n{ini}\n")
    ptester.makepyfile(PTO_TEST)
    result = ptester.runpytest(*args)
    err = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + err
    assert expected in err, err
    assert err.count("ERROR:") == 1 and "Traceback" not in err


def test_nul_in_ini_pto_env_is_one_usage_error(ptester: pytest.Pytester) -> None:
    (ptester.path / "tox.ini").write_bytes(b"[pytest]\npto_env =\n    X=a\x00b\n")
    ptester.makepyfile(PTO_TEST)
    result = ptester.runpytest()
    err = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + err
    assert "ini pto_env in tox.ini: X='a\\x00b': the value contains a NUL character" in err


# marker arguments -> the collection error naming the test
MARKER_CASES = [
    ("round_timeout=1e308", "(round_timeout=...) must be a number of seconds > 0 and <= 1000000"),
    ("init_timeout=1e308", "(init_timeout=...) must be a number of seconds > 0 and <= 1000000"),
    ("init_timeout=float('nan')", "(init_timeout=...) must be a number of seconds"),
    ("init_timeout=float('inf')", "(init_timeout=...) must be a number of seconds"),
    (
        "round_timeout='5'",
        "(round_timeout=...) must be a number of seconds > 0 and <= 1000000 (not str), got '5'",
    ),
    ("round_timeout=True", "(round_timeout=...) must be a number of seconds"),
    ("env={'X': 'a\\x00b'}", "(env=...): X='a\\x00b': the value contains a NUL character"),
    ("env={'X': '\\ud800'}", "(env=...): X='\\ud800': the value cannot be encoded"),
    ("rank_env={1: {'X': 'a\\x00'}}", "(rank_env={1: ...}): X='a\\x00': the value contains a NUL"),
    ("env={'1X': 'a'}", "(env=...): '1X' is not a valid environment variable name"),
    ("env={'X': None}", "(env=...)['X'] must be a string or number, got None"),
    ("env=['X=1']", "(env=...) must be a mapping NAME -> value"),
    ("ranks=0", "ranks must be integers >= 1"),
    ("ranks=[]", "ranks must be an integer >= 1 or a non-empty list of them"),
    ("ranks=2.0", "ranks must be an integer >= 1 or a non-empty list of them"),
    ("rank_env={-1: {}}", "(rank_env=...): -1 is not a rank"),
    ("timeout=5", "unknown argument 'timeout'"),
]


@pytest.mark.parametrize(("marker", "expected"), MARKER_CASES)
def test_bad_marker_is_a_collection_error_naming_the_test(
    ptester: pytest.Pytester, marker: str, expected: str
) -> None:
    ptester.makepyfile(
        test_m=f"""
        import pytest

        @pytest.mark.pto({marker})
        def test_x(pto_world):
            pass
        """
    )
    result = ptester.runpytest()
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert "test_m.py::test_x: @pytest.mark.pto" in out
    assert expected in out, out
    assert "Traceback" not in out and "_rounds.py" not in out


# variants file body -> the usage error naming file, variant and key
VARIANT_CASES = [
    ('v:\n  env: {X: "a\\0b"}\n', "variant 'v': key 'env': X='a\\x00b': the value contains a NUL"),
    ('v:\n  rank_env: {0: {X: "a\\0"}}\n', "variant 'v': key 'rank_env.0': X='a\\x00': the value"),
    ("v:\n  env: {1X: a}\n", "variant 'v': key 'env': '1X' is not a valid environment variable"),
    ("v:\n  ranks: 0\n", "variant 'v': key 'ranks': 0 must be an integer >= 1"),
    ("v:\n  ranks: '2'\n", "variant 'v': key 'ranks': '2' must be an integer >= 1"),
    ("v:\n  ranks: .inf\n", "variant 'v': key 'ranks': inf must be an integer >= 1"),
    ("v:\n  latch_policy: 3\n", "variant 'v': key 'latch_policy': 3 must be one of"),
    ("v:\n  init_barrier: maybe\n", "variant 'v': key 'init_barrier': 'maybe' must be true/false"),
    ("v:\n  timeout: 3\n", "variant 'v': unknown key 'timeout'"),
    ("v:\n  env: {X: [1]}\n", "variant 'v': key 'env'.X: must be a string or number"),
    ("- v\n", "must be a mapping of variant name -> settings"),
    ("v: {}\nv: {}\n", "not valid YAML at line 2: key 'v' appears twice"),
]


@pytest.mark.parametrize(("body", "expected"), VARIANT_CASES)
def test_bad_variants_file_is_one_usage_error(
    ptester: pytest.Pytester, body: str, expected: str
) -> None:
    (ptester.path / "variants.yaml").write_text(body)
    ptester.makepyfile(PTO_TEST)
    result = ptester.runpytest("--pto-variants=variants.yaml")
    err = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + err
    assert "variants.yaml" in err and expected in err, err
    assert err.count("ERROR:") == 1 and "Traceback" not in err


def test_bad_run_timeout_in_a_test_names_the_argument(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(
        test_t="""
        def noop(chip):
            return chip.rank

        def test_huge(pto_world):
            pto_world.run(noop, timeout=1e308)

        def test_text(pto_world):
            pto_world.run(noop, timeout="5")
        """
    )
    result = ptester.runpytest("--pto-round-timeout=off")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    rule = "must be a number of seconds > 0 and <= 1000000"
    assert f"pto_world.run: timeout=1e+308: {rule}, or None" in out
    assert f"pto_world.run: timeout='5': {rule} (not str), or None" in out
    assert "OverflowError" not in out and "TypeError" not in out


START_FAILURES = """
import pytest

@pytest.mark.pto(env={"PTO2_RING_HEAP": "abc"})
def test_init_bad(pto_world):
    pto_world.devices

@pytest.mark.pto(rank_env={1: {"PTO_SIM_INIT_DELAY_MS": "20000"}}, init_timeout=0.5)
def test_init_slow(pto_world):
    pass

@pytest.mark.pto(ranks=8)
def test_no_devices(pto_world):
    pass
"""


def test_a_round_that_fails_to_start_shows_the_headline_not_the_plugin(
    ptester: pytest.Pytester,
) -> None:
    """init_failed, init_timeout, device_unavailable: as op failures, the headline and the
    rank's own frames -- no traceback through plugin.py, _world_fixture.py, world.py."""
    ptester.makepyfile(test_s=textwrap.dedent(START_FAILURES))
    lock_dir = ptester.path / "locks"
    pool = DevicePool(range(8), lock_dir)
    held = pool.lease(1, "holder", 5.0)  # device 0 is taken: ranks=8 cannot be served
    try:
        result = ptester.runpytest_subprocess("--pto-lock-timeout=0.3", "-rA")
    finally:
        held.release()
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    for name in ("plugin.py", "_world_fixture.py", "world.py", "devices.py"):
        assert f"pytest_pto/{name}" not in out and f"libpto/{name}" not in out, name
    assert "FAILED init_failed test_s.py::test_init_bad[round-1] - init_failed: rank " in out
    assert "PTO2_RING_HEAP=abc: must be an integer number of bytes" in out
    assert "traceback in rank" in out and "in init" in out  # the rank's own frames
    assert "FAILED init_timeout test_s.py::test_init_slow[round-1] - init_timeout: rank 1" in out
    assert "FAILED device_unavailable test_s.py::test_no_devices[round-1] - device_unavai" in out
