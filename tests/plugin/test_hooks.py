"""The pytest_pto_* hooks, progress lines, the verbose outcome word and --pto-log-dir."""

from __future__ import annotations

import json
import textwrap

import pytest

CONFTEST = """
import dataclasses, json

EVENTS = []

def _log(**kw):
    with open("hooks.jsonl", "a") as f:
        f.write(json.dumps(kw) + "\\n")

def pytest_pto_select_devices(config, pool, free, count):
    # take the highest free devices instead of the default lowest aligned block
    picked = tuple(sorted(free)[-count:])
    return picked if len(picked) == count else ()

def pytest_pto_world_config(item, config):
    return dataclasses.replace(config, env={**config.env, "HOOKED": "yes"})

def pytest_pto_round_started(item, world):
    _log(ev="started", test=item.name, size=world.size, devices=list(world.devices))

def pytest_pto_round_finished(item, outcome):
    _log(ev="finished", test=item.name, outcome=outcome.outcome, rank=outcome.rank)

def pytest_pto_round_properties(item, properties):
    item.user_properties.append(("team.owner", "runtime"))
"""

TESTS = """
import os
import pytest


def env_of(chip, name):
    return os.environ.get(name)


def fail_rank0(chip):
    if chip.rank == 0:
        chip.log("about to fail")
        raise RuntimeError("rank 0 gives up")


def test_env(pto_world):
    assert pto_world.run(env_of, "HOOKED") == ["yes", "yes"]
    assert pto_world.run(env_of, "PTO_LATCH_POLICY") == ["idle-iterations"] * 2
    assert pto_world.devices == (6, 7)


@pytest.mark.pto(env={"PTO_LATCH_POLICY": "owned-wallclock"})
def test_fails(pto_world):
    assert pto_world.run(env_of, "PTO_LATCH_POLICY") == ["owned-wallclock"] * 2
    pto_world.run(fail_rank0)
"""


def test_hooks_progress_and_logs(ptester: pytest.Pytester) -> None:
    ptester.makeconftest(CONFTEST)
    ptester.makepyfile(test_h=textwrap.dedent(TESTS))
    logs = ptester.path / "logs"
    result = ptester.runpytest_subprocess(
        "-v",
        "--pto-rounds=2",
        "--pto-latch-policy=idle-iterations",
        f"--pto-log-dir={logs}",
        "--junitxml=out.xml",
        "-p",
        "no:cacheprovider",
        timeout=120,
    )
    out = result.stdout.str()
    events = [json.loads(x) for x in (ptester.path / "hooks.jsonl").read_text().splitlines()]
    started = [e for e in events if e["ev"] == "started"]
    finished = [e for e in events if e["ev"] == "finished"]
    assert len(started) == 4 and all(e["devices"] == [6, 7] for e in started)
    assert [(e["test"], e["outcome"], e["rank"]) for e in finished] == [
        ("test_env[round-1]", "passed", None),
        ("test_env[round-2]", "passed", None),
        ("test_fails[round-1]", "failed", 0),
        ("test_fails[round-2]", "failed", 0),
    ]
    # verbose line and the per-test progress line after its last round
    assert "test_h.py::test_env[round-2] PASSED" in out
    assert "pto: test_h.py::test_env: 2 rounds: 2 passed" in out
    assert "pto: test_h.py::test_fails: 2 rounds: 2 failed" in out
    # the failing rank's log is attached to the report and kept under --pto-log-dir
    assert "Captured log pto rank0.log call" in out and "about to fail" in out
    kept = sorted(p.relative_to(logs).as_posix() for p in logs.rglob("rank*.log"))
    assert "test_h.py_test_fails_round-1/rank0.log" in kept and len(kept) == 8
    assert "team.owner" in (ptester.path / "out.xml").read_text()


def test_trace_file_is_written_by_the_controller(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(
        test_t="""
        def noop(chip):
            return chip.rank

        def test_t(pto_world):
            assert pto_world.run(noop) == [0, 1]
        """
    )
    result = ptester.runpytest_subprocess(
        "--pto-rounds=2", "--pto-trace=trace.json", "-p", "no:cacheprovider", timeout=60
    )
    assert result.ret == 0, result.stdout.str()
    trace = json.loads((ptester.path / "trace.json").read_text())
    names = {e["name"] for e in trace["traceEvents"] if e.get("ph") == "X"}
    assert {"init", "op"} <= names
