"""Rank logs and timestamps across hosts that share no filesystem and (by a test knob) no clock.

The namespace hosts keep their ranks' logs in a folder that is a private tmpfs on each host
(``NsCluster.host_dir``, given to the agents as ``PTO_HOST_LOG_DIR``): the controller sees an
empty folder at that path, so a log line can reach the report only over the agent's connection.
The hosts share the kernel's clock, so an honest estimate of a host's clock offset is 0 within
its own uncertainty; ``PTO_TEST_CLOCK_SKEW_S`` (a test knob) makes one host's clock an hour
ahead, and its ranks' trace slices must still land inside the session's wall-clock window.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.multihost.nshosts import NsCluster
from tests.multihost.test_multihost import _props, _run

OPS = textwrap.dedent(
    """
    import os
    import pytest

    def say(chip):
        print(f"LOG-MARK-{chip.rank} from {os.environ['PTO_HOST']}", flush=True)
        return os.readlink("/proc/self/fd/1")

    def say_then_fail_on_3(chip):
        where = say(chip)
        if chip.rank == 3:
            raise RuntimeError(f"op refused; my log is {where} END")
        return where
    """
)


def test_rank_logs_reach_the_report_without_a_shared_filesystem(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 3 (host nsb) prints a line and fails: the report shows that line from its log,
    whose file on nsb the controller cannot see; a passing round's logs, kept with
    --pto-log-dir, hold every rank's lines from both hosts."""
    assert ns_cluster.host_dir is not None
    pytester.makepyfile(ops_logs=OPS)
    pytester.makepyfile(
        test_logs=textwrap.dedent(
            """
            import pytest
            from ops_logs import say, say_then_fail_on_3

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_pass(pto_world):
                pto_world.run(say)

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_fail(pto_world):
                pto_world.run(say_then_fail_on_3)
            """
        )
    )
    kept = pytester.path / "kept-logs"
    res = _run(pytester, ns_cluster, monkeypatch, f"--pto-log-dir={kept}", "--junitxml=j.xml")
    res.assert_outcomes(passed=1, failed=1)
    text = res.stdout.str()
    # where rank 3 wrote its log: on nsb's private tmpfs, which is not there for the controller
    found = set(re.findall(r"op refused; my log is (/\S+) END", text))
    assert len(found) == 1, found
    (where,) = found
    assert where.startswith(f"{ns_cluster.host_dir}/") and where.endswith("/rank3.log")
    assert not Path(where).exists()
    assert not list(ns_cluster.host_dir.iterdir())
    # ... and yet the failing round's report shows rank 3's own line, from its log section
    res.stdout.fnmatch_lines(["*log pto rank3.log*", "LOG-MARK-3 from nsb"])
    props = {p["pto.outcome"] for p in _props(pytester.path / "j.xml")}
    assert props == {"passed", "failed"}
    # the passing round's logs, one per rank, each with its rank's line from its host
    (passed,) = [d for d in kept.iterdir() if "test_pass" in d.name]
    for rank, name in enumerate(["nsa", "nsa", "nsb", "nsb"]):
        log = (passed / f"rank{rank}.log").read_text()
        assert f"LOG-MARK-{rank} from {name}" in log, (rank, log)
    # the agents removed their folders on the hosts when they left
    for host in ns_cluster.hosts:
        assert host.run("ls", "-A", str(ns_cluster.host_dir)).stdout.split() == []


def test_trace_stamps_are_rebased_onto_the_controllers_clock(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nsa's clock is the controller's (one kernel): its estimated offset is 0 within the
    estimate's own bound (half the best round trip). nsb's clock is made an hour ahead by
    the test knob: its estimate is +3600 s within its bound, and its ranks' slices in the
    trace still fall inside the session's wall-clock window (un-rebased, they would be an
    hour late)."""
    pytester.makepyfile(ops_logs=OPS)
    pytester.makepyfile(
        test_clock=textwrap.dedent(
            """
            import pytest
            from ops_logs import say

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_clock(pto_world):
                pto_world.run(say)
            """
        )
    )
    monkeypatch.setenv("PTO_TEST_CLOCK_SKEW_S", "nsb=3600")
    trace = pytester.path / "trace.json"
    t_before = time.time_ns() // 1000
    res = _run(pytester, ns_cluster, monkeypatch, "--pto-rounds=2", f"--pto-trace={trace}")
    t_after = time.time_ns() // 1000
    res.assert_outcomes(passed=2)
    slices = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("ph") == "X"]
    by_host: dict[str, list[dict[str, Any]]] = {"nsa": [], "nsb": []}
    for s in slices:
        if "host" in s["args"]:
            by_host[s["args"]["host"]].append(s)
    assert len(by_host["nsa"]) >= 2 * 2 * 4 and len(by_host["nsb"]) >= 2 * 2 * 4
    for host, skew_us in (("nsa", 0.0), ("nsb", 3600e6)):
        for s in by_host[host]:
            args = s["args"]
            offset, bound = args["clock_offset_us"], args["clock_uncertainty_us"]
            assert 0 <= bound < 1e6, (host, args)  # an hour of skew is 3600x that
            assert abs(offset - skew_us) <= bound + 0.001, (host, offset, bound)
            assert t_before <= s["ts"] <= t_after, (host, s)
            assert s["args"]["rank"] in ((0, 1) if host == "nsa" else (2, 3))
    # the init skew row spans both hosts' ranks on one axis: well under the hour
    skews = [s for s in slices if s["name"].startswith("init skew")]
    assert len(skews) == 2 and all(s["dur"] < 60e6 for s in skews)
