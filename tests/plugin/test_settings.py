"""Options, ini keys and environment overrides: resolution order and validation errors."""

from __future__ import annotations

import pytest

TRIVIAL = """
import pytest

@pytest.mark.pto
def test_one():
    pass
"""


def usage_error(ptester: pytest.Pytester, *args: str) -> str:
    ptester.makepyfile(TRIVIAL)
    result = ptester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    return result.stderr.str()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--pto-ranks=0"], "--pto-ranks=0: must be an integer >= 1"),
        (["--pto-ranks=two"], "--pto-ranks=two: must be an integer >= 1"),
        (["--pto-rounds=0"], "--pto-rounds=0: must be an integer >= 1"),
        (["--pto-devices=3-1"], "--pto-devices=3-1: range 3-1 runs backwards"),
        (["--pto-devices=0,,1"], "--pto-devices=0,,1: empty item"),
        (["--pto-devices=a"], "'a' is not a device id or range"),
        (["--pto-devices=0,0"], "a device id appears more than once"),
        (["--pto-devices=0-9"], "device(s) 8,9 do not exist on platform 'sim'"),
        (["--pto-ranks=3", "--pto-devices=0,1"], "more ranks than devices (3 > 2 devices: 0,1)"),
        (["--pto-platform=tpu"], "--pto-platform=tpu: unknown platform; known platforms: sim"),
        (["--pto-env", "NOVALUE"], "--pto-env: 'NOVALUE' is not KEY=VALUE"),
        (["--pto-env", "1X=2"], "'1X=2' is not KEY=VALUE"),
        (["--pto-lock-timeout=-1"], "--pto-lock-timeout=-1: must be a number of seconds > 0"),
        (["--pto-init-timeout=soon"], "--pto-init-timeout=soon: must be a number of seconds > 0"),
        (["--pto-round-timeout=x"], "--pto-round-timeout=x: must be a number of seconds > 0, or"),
        (["--pto-init-barrier=maybe"], "--pto-init-barrier=maybe: must be 'on' or 'off'"),
        (
            ["--pto-latch-policy=lazy"],
            "--pto-latch-policy=lazy: must be one of owned-wallclock, idle-iterations",
        ),
        (["--pto-seed=-3"], "--pto-seed=-3: must be an integer >= 0"),
        (["--pto-variants=nope.yaml"], "--pto-variants=nope.yaml: no such file"),
        (["--pto-variant=fast"], "selecting a variant needs a variants file"),
    ],
)
def test_bad_option_is_one_usage_error(
    ptester: pytest.Pytester, args: list[str], expected: str
) -> None:
    err = usage_error(ptester, *args)
    assert expected in err
    assert "Traceback" not in err
    assert err.count("ERROR:") == 1


def test_environment_and_ini_errors_name_their_source(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTO_LOCK_TIMEOUT", "abc")
    assert "environment PTO_LOCK_TIMEOUT=abc: must be a number of seconds > 0" in usage_error(
        ptester
    )
    monkeypatch.delenv("PTO_LOCK_TIMEOUT")
    ptester.makeini("[pytest]\npto_ranks = 0\n")
    assert "ini pto_ranks = 0 in tox.ini: must be an integer >= 1" in usage_error(ptester)
    ptester.makeini("[pytest]\npto_env =\n    GOOD=1\n    bad line\n")
    assert "ini pto_env in tox.ini: 'bad line' is not KEY=VALUE" in usage_error(ptester)


def header(ptester: pytest.Pytester, *args: str) -> str:
    ptester.makepyfile(TRIVIAL)
    result = ptester.runpytest("--co", *args)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    return result.stdout.str()


def test_order_command_line_over_environment_over_ini_over_default(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "rounds 1," in header(ptester)
    ptester.makeini("[pytest]\npto_rounds = 3\npto_latch_policy = idle-iterations\n")
    assert "rounds 3, latch policy idle-iterations" in header(ptester)
    monkeypatch.setenv("PTO_ROUNDS", "4")
    assert "rounds 4," in header(ptester)
    assert "rounds 5," in header(ptester, "--pto-rounds=5")
    out = header(ptester, "--pto-rounds=5", "--pto-latch-policy=owned-wallclock")
    assert "latch policy owned-wallclock" in out


def test_report_header_lists_the_session_facts(ptester: pytest.Pytester) -> None:
    out = header(
        ptester,
        "--pto-devices=0-3",
        "--pto-ranks=4",
        "--pto-rounds=2",
        "--pto-init-barrier=off",
        "--pto-env",
        "PTO2_RING_HEAP=1048576",
        "--pto-round-timeout=off",
    )
    lock_dir = str(ptester.path / "locks")
    assert f"pto: platform sim, devices 0-3 (4), lock dir {lock_dir}" in out
    assert "pto: ranks 4, rounds 2, latch policy owned-wallclock, init barrier off" in out
    assert "round timeout off" in out
    assert "pto: env PTO2_RING_HEAP=1048576" in out


def test_env_merges_ini_then_command_line(ptester: pytest.Pytester) -> None:
    ptester.makeini("[pytest]\npto_env =\n    A=ini\n    B=ini\n")
    out = header(ptester, "--pto-env", "B=cli", "--pto-env", "C=x=y")
    assert "pto: env A=ini B=cli C=x=y" in out


def test_help_lists_every_option_with_its_ini_key(ptester: pytest.Pytester) -> None:
    from pytest_pto._settings import OPTIONS

    out = ptester.runpytest("--help").stdout.str()
    for opt in OPTIONS:
        assert opt.flag in out
        assert f"ini {opt.ini}" in out.replace("\n", " ").replace("  ", " ") or opt.ini in out
