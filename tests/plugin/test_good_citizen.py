"""The plugin is loaded in every pytest session of an environment: a session without a
distributed test must behave as if it were not installed (issue 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PLAIN = """
def test_one():
    pass

def test_two():
    pass
"""

DISTRIBUTED = """
import pytest

@pytest.mark.pto
def test_d(pto_world):
    assert pto_world.size == 2
"""


def _env(lock_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
    env.update(PTO_TEST_INNER="1", PTO_LOCK_DIR=str(lock_dir), **extra)
    return env


def _run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )


SELF_SIGTERM = """
import os, signal

def test_a_kills_itself():
    os.kill(os.getpid(), signal.SIGTERM)

def test_b():
    pass
"""


def test_sigterm_outside_rounds_kills_the_process_as_plain_pytest(tmp_path: Path) -> None:
    (tmp_path / "test_self.py").write_text(SELF_SIGTERM)
    env = _env(tmp_path / "locks")
    proc = _run(tmp_path, env, "-q", "test_self.py")
    assert proc.returncode == -signal.SIGTERM, proc.stdout + proc.stderr
    assert "KeyboardInterrupt" not in proc.stdout + proc.stderr
    # after a distributed test ran, the handler is gone again: the next plain test dies too
    (tmp_path / "test_0_pto.py").write_text("def test_p(pto_world):\n    pto_world.size\n")
    proc = _run(tmp_path, env, "-q", "--pto-devices=0-1", "test_0_pto.py", "test_self.py")
    assert proc.returncode == -signal.SIGTERM, proc.stdout + proc.stderr
    assert list((tmp_path / "locks").glob("*.holder")) == []


def test_xdist_worker_that_sigterms_itself_is_a_crash_not_an_interrupt(tmp_path: Path) -> None:
    (tmp_path / "test_self.py").write_text(SELF_SIGTERM)
    proc = _run(tmp_path, _env(tmp_path / "locks"), "-n", "1", "test_self.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "crashed while running" in out
    assert "1 failed, 1 passed" in out  # the remaining test still ran


# pytest's own regression test of #2971 (testmon logs CollectReports through this hook)
LOGS_COLLECT_REPORTS = """
def pytest_collection_modifyitems(items, config):
    from _pytest.runner import CollectReport
    for node_id in ('nodeid1', 'nodeid2'):
        rep = CollectReport(node_id, 'passed', None, None)
        rep.when = 'passed'
        rep.duration = 0.1
        config.hook.pytest_runtest_logreport(report=rep)
"""


def test_a_collect_report_in_runtest_logreport_is_not_an_internal_error(
    ptester: pytest.Pytester,
) -> None:
    ptester.makeconftest(LOGS_COLLECT_REPORTS)
    result = ptester.runpytest()
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED, out  # as without the plugin
    assert "INTERNALERROR" not in out
    assert "2 passed" in out
    ptester.makepyfile(test_d=DISTRIBUTED)  # and with a round in the session
    result = ptester.runpytest()
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "INTERNALERROR" not in out and "3 passed" in out
    assert "pto rounds" in out


BAD_ENVIRONMENT = [
    ("PTO_ROUNDS", "abc", "environment PTO_ROUNDS=abc: must be an integer >= 1"),
    ("PTO_VARIANTS", "/missing", "environment PTO_VARIANTS=/missing: no such file"),
    ("PTO_PLATFORM", "ascend", "platform 'ascend'"),
    ("PTO_PLATFORM", "tpu", "environment PTO_PLATFORM=tpu: unknown platform"),
    ("PTO_DEVICES", "9-1", "environment PTO_DEVICES=9-1: range 9-1 runs backwards"),
    ("PTO_LOCK_TIMEOUT", "-1", "environment PTO_LOCK_TIMEOUT=-1: must be a number of seconds"),
    ("PTO_INIT_TIMEOUT", "nan", "environment PTO_INIT_TIMEOUT=nan: must be a number of seconds"),
    ("PTO_ROUND_TIMEOUT", "x", "environment PTO_ROUND_TIMEOUT=x: must be a number of seconds"),
    ("PTO_INIT_BARRIER", "maybe", "environment PTO_INIT_BARRIER=maybe: must be 'on' or 'off'"),
    ("PTO_LATCH_POLICY", "lazy", "environment PTO_LATCH_POLICY=lazy: must be one of"),
    ("PTO_SEED", "-1", "environment PTO_SEED=-1: must be an integer >= 0"),
    ("PTO_VARIANT", "fast", "selecting a variant needs a variants file"),
    ("PTO_LOG_DIR", "afile/logs", "environment PTO_LOG_DIR=afile/logs: cannot be created"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_ENVIRONMENT)
def test_bad_environment_is_ignored_without_distributed_tests(
    ptester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(name, value)
    (ptester.path / "afile").write_text("")
    ptester.makepyfile(PLAIN)
    result = ptester.runpytest()
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out
    assert "pto:" not in out and "pytest-pto" not in out
    # ... and is one usage error as soon as a distributed test is collected
    ptester.makepyfile(test_d=DISTRIBUTED)
    result = ptester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert expected in err, err
    assert err.count("ERROR:") == 1 and "Traceback" not in err


def test_session_without_distributed_tests_touches_nothing(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = ptester.path / "trace.json"
    lock_dir = ptester.path / "fresh-locks"
    monkeypatch.setenv("PTO_TRACE", str(trace))
    monkeypatch.setenv("PTO_LOCK_DIR", str(lock_dir))
    ptester.makepyfile(PLAIN)
    result = ptester.runpytest_subprocess()
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "pto:" not in out and "pto rounds" not in out
    assert not trace.exists()
    assert not lock_dir.exists()
    # with a distributed test: header, trace and lock dir are there
    ptester.makepyfile(test_d=DISTRIBUTED)
    result = ptester.runpytest_subprocess()
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "pto: platform sim" in out
    assert trace.exists()
    assert lock_dir.is_dir()


def test_explicit_option_is_checked_at_once_even_without_distributed_tests(
    ptester: pytest.Pytester,
) -> None:
    ptester.makepyfile(PLAIN)
    result = ptester.runpytest("--pto-rounds=abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--pto-rounds=abc: must be an integer >= 1" in result.stderr.str()


def test_bad_environment_under_xdist_is_a_collection_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "test_d.py").write_text(DISTRIBUTED)
    proc = _run(tmp_path, _env(tmp_path / "locks", PTO_ROUNDS="abc"), "-n", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "ERROR collecting test_d.py" in out
    assert "pytest-pto: environment PTO_ROUNDS=abc: must be an integer >= 1" in out
    assert "INTERNALERROR" not in out


def test_progress_line_starts_on_its_own_line(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_d=DISTRIBUTED, test_plain=PLAIN)
    for args in (["-q"], ["-n", "2"]):
        result = ptester.runpytest_subprocess("--pto-rounds=3", *args)
        lines = result.stdout.lines
        assert result.ret == 0, result.stdout.str()
        assert "pto: test_d.py::test_d: 3 rounds: 3 passed" in lines, args
        assert not any(".pto:" in line for line in lines), args
        # the session facts are said once, also by an xdist controller (it collects nothing)
        assert sum(line.startswith("pto: platform sim") for line in lines) == 1, args


# -- importing the plugin is cheap (issue 13) ----------------------------------------------------
#: what a session without a distributed test must not load: the C extension (and cffi), the
#: variants file parser, the JUnit reader, the device locks
HEAVY = ("libpto._pto", "_cffi_backend", "yaml", "junitparser", "filelock")

MODULES_AT_END = """
import sys

def pytest_sessionfinish(session):
    with open(session.config.rootpath / "modules.txt", "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
"""


def test_importing_the_plugin_loads_neither_the_extension_nor_yaml_nor_junitparser(
    tmp_path: Path,
) -> None:
    code = "import sys, pytest_pto.plugin; print('\\n'.join(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(tmp_path / "locks"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "pytest_pto.plugin" in loaded
    assert sorted(loaded & set(HEAVY)) == []


def test_a_session_without_distributed_tests_loads_none_of_them(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(PLAIN)
    (tmp_path / "conftest.py").write_text(MODULES_AT_END)
    proc = _run(tmp_path, _env(tmp_path / "locks"), "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = set((tmp_path / "modules.txt").read_text().split())
    assert "pytest_pto.plugin" in loaded  # the plugin was there, and active
    assert sorted(loaded & set(HEAVY)) == []
    # a distributed test does load them: the check above can fail
    (tmp_path / "test_d.py").write_text(DISTRIBUTED)
    proc = _run(tmp_path, _env(tmp_path / "locks"), "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loaded = set((tmp_path / "modules.txt").read_text().split())
    assert {"libpto._pto", "filelock"} <= loaded


ZYGOTE_AT_COLLECTION = """
import os
import sys


def _zygote():
    procs = sys.modules.get("libpto._procs")
    return procs._zygote if procs is not None else None


def _say(name, text):
    with open(name, "w") as f:
        f.write(text)


def pytest_sessionstart(session):  # after every pytest_configure
    zygote = _zygote()
    _say("at_start.txt", "started" if zygote is not None else "none")
    _say("keeper.txt", str(zygote.proc.pid) if zygote is not None else "")


def pytest_collection_finish(session):
    _say("zygote.txt", "started" if _zygote() is not None else "none")
    keeper = open("keeper.txt").read()
    # a zygote started at configure and stopped after collection is gone, not just forgotten
    _say("keeper_alive.txt", str(bool(keeper) and os.path.exists(f"/proc/{keeper}")))
"""


@pytest.mark.parametrize(
    "files, args, at_start, expected",
    [
        # an explicit option: the user asked for rounds, the zygote boots from configure on
        (("test_d",), ("--pto-ranks=2",), "started", "started"),
        (("test_d",), (), "none", "started"),  # at the first distributed test collected
        (("test_d",), ("--pto-ranks=2", "--co"), "none", "none"),  # nothing will run
        (("test_d",), ("--pto-ranks=2", "--pto-launcher=local"), "started", "started"),
        (("test_plain",), (), "none", "none"),  # no distributed test: no zygote, ever
        # started for the explicit option, stopped once collection found no distributed test
        (("test_plain",), ("--pto-ranks=2",), "started", "none"),
    ],
)
def test_the_zygote_boots_early_only_when_rounds_will_run(
    tmp_path: Path, files: tuple[str, ...], args: tuple[str, ...], at_start: str, expected: str
) -> None:
    """The rounds' zygote is started (not waited for) before the first round, so its
    interpreter boots while pytest configures and collects: at configure for an explicit
    ``--pto-*`` option, else at the first distributed test collected; after collection no
    zygote is left in a session that runs no round."""
    sources = {"test_d": DISTRIBUTED, "test_plain": PLAIN}
    for name in files:
        (tmp_path / f"{name}.py").write_text(sources[name])
    (tmp_path / "conftest.py").write_text(ZYGOTE_AT_COLLECTION)
    proc = _run(tmp_path, _env(tmp_path / "locks"), "-q", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "at_start.txt").read_text() == at_start
    assert (tmp_path / "zygote.txt").read_text() == expected
    if at_start == "started":  # the same one still running, or gone
        assert (tmp_path / "keeper_alive.txt").read_text() == str(expected == "started")


def test_a_bad_explicit_option_leaves_no_zygote(tmp_path: Path) -> None:
    """The zygote an explicit option started is stopped, and waited for, when that option
    turns out bad (libpto's atexit handler): the usage error is the whole answer, and nothing
    of the session is left running once it has exited."""
    (tmp_path / "test_d.py").write_text(DISTRIBUTED)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    with subprocess.Popen(
        [*cmd, "--pto-ranks=2", "--pto-rounds=abc"],
        cwd=tmp_path,
        env=_env(tmp_path / "locks"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        out, err = proc.communicate(timeout=120)
        left = [
            pid
            for pid in os.listdir("/proc")
            if pid.isdigit() and _is_zygote_of(_cmdline(pid), proc.pid)
        ]
    assert proc.returncode == 4, out + err
    assert "--pto-rounds" in err
    assert left == []


def _is_zygote_of(cmdline: bytes, owner: int) -> bool:
    """``python -c ... pto-zygote <fd> <owner pid> <log>``: the keeper's and the zygote's."""
    args = cmdline.split(b"\0")
    return b"pto-zygote" in args and str(owner).encode() in args


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
