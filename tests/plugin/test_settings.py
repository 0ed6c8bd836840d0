"""Options, ini keys and environment overrides: resolution order and validation errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
        (["--pto-round-timeout=x"], "--pto-round-timeout=x: must be a number of seconds > 0 and"),
        (["--pto-init-barrier=maybe"], "--pto-init-barrier=maybe: must be 'on' or 'off'"),
        (
            ["--pto-latch-policy=lazy"],
            "--pto-latch-policy=lazy: must be one of owned-wallclock, idle-iterations",
        ),
        (["--pto-seed=-3"], "--pto-seed=-3: must be an integer >= 0"),
        (["--pto-variants=nope.yaml"], "--pto-variants=nope.yaml: no such file"),
        (["--pto-variant=fast"], "selecting a variant needs a variants file"),
        # an explicit empty value is an error, not "the default"
        (["--pto-ranks="], "--pto-ranks=: must be an integer >= 1"),
        (["--pto-platform="], "--pto-platform=: unknown platform"),
        (["--pto-variant="], "--pto-variant=: must name at least one variant"),
        (["--pto-trace="], "--pto-trace=: must be a non-empty path"),
        # huge values are errors, not a MemoryError during collection
        (["--pto-rounds=99999999999"], "--pto-rounds=99999999999: must be an integer >= 1 and <="),
        (["--pto-devices=0-99999999999"], "99999999999 is above the highest device id (65535)"),
        (["--pto-devices=\u0663"], "'\u0663' is not a device id or range"),  # Arabic-Indic 3
        (["--pto-trace=."], "--pto-trace=.: is a directory; name the file to write"),
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


def test_output_paths_are_checked_before_any_round(
    ptester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    make_unwritable: Callable[..., Path],
) -> None:
    (ptester.path / "afile").write_text("")
    for args, expected in [
        (["--pto-lock-dir=afile"], "--pto-lock-dir=afile: exists and is not a directory"),
        (["--pto-log-dir=afile/logs"], "--pto-log-dir=afile/logs: cannot be created: afile is not"),
        (["--pto-trace=afile/t.json"], "--pto-trace=afile/t.json: cannot be created: afile is not"),
    ]:
        err = usage_error(ptester, *args)
        assert expected in err and "Traceback" not in err, err
    # really unwritable, root included (a read-only mount for root; see make_unwritable)
    make_unwritable(ptester.path / "ro")
    err = usage_error(ptester, "--pto-lock-dir=ro/locks")
    assert "cannot be created: directory ro is not writable by this user" in err
    monkeypatch.setenv("PTO_LOCK_DIR", "ro")
    assert "environment PTO_LOCK_DIR=ro: directory is not writable" in usage_error(ptester)


def test_empty_environment_value_is_unset_and_platform_limits(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTO_DEVICES", "")
    assert "devices 0-7 (8)" in header(ptester)
    monkeypatch.setenv("PTO_SIM_DEVICES", "100000000000")
    err = usage_error(ptester)
    assert "PTO_SIM_DEVICES=100000000000: must be an integer >= 1 and <= 65536" in err
    monkeypatch.delenv("PTO_SIM_DEVICES")
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "0,x")
    err = usage_error(ptester, "--pto-platform=ascend")
    assert "ASCEND_RT_VISIBLE_DEVICES=0,x: must be comma-separated device ids" in err


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
    flat = " ".join(out.split())  # argparse wraps help text at any space
    for opt in OPTIONS:
        assert opt.flag in out
        assert f"[ini {opt.ini}" in flat, f"{opt.flag}: no [ini {opt.ini}] in its help"


def test_settings_defaults_are_the_option_tables() -> None:
    """One table: a Settings built without arguments has every option's default."""
    import dataclasses

    from pytest_pto._settings import OPTIONS, Settings, default_lock_dir

    fields = {f.name for f in dataclasses.fields(Settings)}
    built = Settings()
    for opt in OPTIONS:
        assert opt.dest in fields, opt.dest
        if opt.dest != "devices":  # None in the table: every device, known once resolved
            assert getattr(built, opt.dest) == opt.default_value(), opt.dest
    assert built.lock_dir == default_lock_dir() and built.env == {}
    assert built.env is not Settings().env  # a mutable default is never shared


def test_unwritable_github_step_summary_is_a_warning_not_a_crash(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(ptester.path))  # a directory: open() fails
    ptester.makepyfile(TRIVIAL)
    result = ptester.runpytest()
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    assert "pytest-pto: GITHUB_STEP_SUMMARY: cannot append the table" in out
    assert "INTERNALERROR" not in out


def test_lock_dir_space_form_is_a_usage_error_and_the_equals_form_keeps_ids(
    ptester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--pto-lock-dir DIR`` with an existing DIR outside the project would move pytest's
    rootdir (DIR is a positional candidate before the plugin's options are known) and change
    every test id; it is refused with a message that says to use ``=``."""
    shared = tmp_path_factory.mktemp("shared-locks")  # exists, outside the project
    err = usage_error(ptester, "--pto-lock-dir", str(shared))
    assert "--pto-lock-dir DIR on the command line: write it as --pto-lock-dir=DIR" in err
    assert "Traceback" not in err
    monkeypatch.setenv("PYTEST_ADDOPTS", f"--pto-lock-dir {shared}")
    err = usage_error(ptester)
    assert "--pto-lock-dir DIR on PYTEST_ADDOPTS: write it as --pto-lock-dir=DIR" in err
    monkeypatch.delenv("PYTEST_ADDOPTS")
    # the '=' form leaves the rootdir, and so the ids, alone
    result = ptester.runpytest(f"--pto-lock-dir={shared}", "--co", "-q")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert (
        "test_lock_dir_space_form_is_a_usage_error_and_the_equals_form_keeps_ids.py::test_one"
        in (result.stdout.str())
    )
    assert f"rootdir: {ptester.path}" in ptester.runpytest(f"--pto-lock-dir={shared}").stdout.str()
