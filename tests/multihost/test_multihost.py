"""Ranks on two hosts (namespace hosts, see conftest.py) through a real mpirun: ops across hosts,
failures named by rank and host, every rank's stack, and nothing left after a killed pytest."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.multihost.conftest import wait_for
from tests.multihost.nshosts import NsCluster, missing_mpich

OPS = textwrap.dedent(
    """
    import json, os, time
    import pytest
    from libpto.ops import mesh_allreduce

    def where_op(chip, n):
        total = mesh_allreduce(chip, [float(chip.rank + i) for i in range(n)])
        return {
            "rank": chip.rank,
            "net": os.stat("/proc/self/ns/net").st_ino,
            "shm": sorted(os.listdir("/dev/shm")),
            "sum": total[:3],
            "master": os.environ["MASTER_ADDR"],
            "env_rank": os.environ["PTO_RANK"],
            "size": os.environ["WORLD_SIZE"],
            "host": os.environ["PTO_HOST"],
            "local_rank": os.environ["LOCAL_RANK"],
        }

    def hang_op(chip, marker):
        if chip.rank == 2:
            open(marker, "a").close()
            time.sleep(600)
        return chip.rank

    def barrier_op(chip, rounds):
        # each round: publish the round in this rank's slot 0, barrier, read every rank's
        # slot 0, barrier (so nobody publishes the next round before all have read)
        comm, seen = chip.comm, []
        for r in range(1, rounds + 1):
            time.sleep(0.03 * ((chip.rank + r) % 3))  # skew: a leaky barrier reads stale rounds
            comm.notify(chip.rank, 0, r)
            comm.barrier(timeout_ms=60_000)
            seen.append([comm.load(p, 0) for p in range(comm.size)])
            comm.barrier(timeout_ms=60_000)
        return {"seen": seen, "bridged": comm.bridged, "slots": comm.slots}

    def barrier_timeout_op(chip):
        from libpto.errors import CommTimeout
        comm, err = chip.comm, ""
        if chip.rank == 3:
            time.sleep(3.0)  # 10x the others' 300 ms budget
        else:
            try:
                comm.barrier(timeout_ms=300)
            except CommTimeout as e:
                err = str(e)
        comm.barrier(timeout_ms=60_000)  # the timed-out ranks wait on for the same barrier
        comm.notify(chip.rank, 0, 7)
        comm.barrier(timeout_ms=60_000)  # and the next barrier is sound
        return {"err": err, "seen": [comm.load(p, 0) for p in range(comm.size)]}

    def peer_dead_op(chip, out):
        # rank 2 (host nsb) is SIGKILLed while rank 0 (host nsa) waits on a slot nobody
        # notifies, with a 60 s budget: rank 0 must fail with PeerDead, not time out
        import signal
        if chip.rank == 2:
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
        if chip.rank == 0:
            seen = "no error"
            try:
                chip.comm.wait(0, ">=", 1, timeout_ms=60_000)
            except Exception as e:
                seen = f"{type(e).__name__}: {e}"
                raise  # the round sees rank 0's own error (a secondary one)
            finally:
                with open(out, "w") as f:
                    f.write(seen)
        return chip.rank

    def put_notify_op(chip, rounds):
        # rank 0 (host nsa) puts round k into rank 3's window (host nsb), then notifies it;
        # rank 3 must see the put once its wait returns, then acks
        comm, stale = chip.comm, []
        for k in range(1, rounds + 1):
            if chip.rank == 0:
                comm.write(256, k.to_bytes(8, "little") * 32, rank=3)
                comm.notify(3, 0, k)
                comm.wait(1, ">=", k, timeout_ms=60_000)
            elif chip.rank == 3:
                comm.wait(0, ">=", k, timeout_ms=60_000)
                got = comm.read(256, 256)
                if got != k.to_bytes(8, "little") * 32:
                    stale.append(k)
                comm.notify(0, 1, k)
        return stale

    def fail_init(chip):
        raise RuntimeError("rank init refused on purpose")

    def die_init(chip):
        os._exit(7)

    def stall_init(chip):
        time.sleep(600)
    """
)


def _write(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(ops_mh=OPS)
    pytester.makepyfile(test_mh=textwrap.dedent(body))


def _run(
    pytester: pytest.Pytester,
    cluster: NsCluster,
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    flavor: str = "openmpi",
    hosts: str | None = None,
) -> pytest.RunResult:
    """A pytest session on the cluster's hosts (``hosts``: its --pto-hosts, default 0-1 on
    each) through ``flavor``'s mpirun."""
    for key, value in cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    return pytester.runpytest_subprocess(
        *cluster.options(hosts, flavor=flavor), "-p", "no:cacheprovider", "-rA", *args, timeout=240
    )


@pytest.fixture(params=["openmpi", "mpich"])
def flavor(request: pytest.FixtureRequest) -> str:
    """The MPI that launches the host agents: Open MPI's mpirun, MPICH's hydra mpiexec."""
    if request.param == "mpich":
        why = missing_mpich()
        if why is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"MPICH multi-host tests cannot run in CI: {why}")
            pytest.skip(why)
    return str(request.param)


def _props(junit: Path) -> list[dict[str, str]]:
    import xml.etree.ElementTree as ET

    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        out.append({p.get("name"): p.get("value") for p in case.iter("property")})
    return out


def test_allreduce_across_two_hosts(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    """4 ranks, 2 per host: each rank runs in its host's namespaces (own /dev/shm), the mesh
    allreduce over the mirrored comm window gives every rank the global sum, MASTER_ADDR is
    rank 0's host, and JUnit says where each rank ran. Under Open MPI and under MPICH (the
    flavor told by --version: the header names it)."""
    out = pytester.path / "where.json"
    _write(
        pytester,
        f"""
        import json
        import pytest
        from ops_mh import where_op

        @pytest.mark.pto(ranks=4, ranks_per_host=2)
        def test_where(pto_world):
            results = pto_world.run(where_op, 64)
            with open({str(out)!r}, "a") as f:
                f.write(json.dumps(results) + "\\n")
            assert [r["rank"] for r in results] == [0, 1, 2, 3]
        """,
    )
    res = _run(
        pytester, ns_cluster, monkeypatch, "--pto-rounds=2", "--junitxml=j.xml", flavor=flavor
    )
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines([f"pto: launcher mpirun ({flavor}), hosts nsa:* nsb:* (each host*"])
    a, b = ns_cluster.hosts
    rounds = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rounds) == 2
    for results in rounds:
        assert [r["net"] for r in results] == [a.net_inode()] * 2 + [b.net_inode()] * 2
        assert all(r["sum"] == [6.0, 10.0, 14.0] for r in results)  # sum over ranks 0..3
        assert {r["master"] for r in results} == {a.addr}
        assert [r["env_rank"] for r in results] == ["0", "1", "2", "3"]
        assert {r["size"] for r in results} == {"4"}
        assert [r["host"] for r in results] == ["nsa", "nsa", "nsb", "nsb"]
        assert [r["local_rank"] for r in results] == ["0", "1", "0", "1"]
        # the root namespace's /dev/shm is not visible: only this host's own window
        assert all(len([s for s in r["shm"] if s.startswith("pto-comm")]) == 1 for r in results)
    props = _props(pytester.path / "j.xml")
    assert [p["pto.hosts"] for p in props] == ["nsa,nsa,nsb,nsb"] * 2
    assert [p["pto.devices"] for p in props] == ["0,1,0,1"] * 2
    assert [p["pto.outcome"] for p in props] == ["passed"] * 2


def test_barrier_across_two_hosts(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``comm.barrier()`` with 4 ranks on two hosts: 10 rounds in a row, after each barrier
    every rank sees every rank's value of that round; a timed-out barrier (one rank 3 s late
    against 300 ms) raises CommTimeout, calling again completes it, and the next one is sound."""
    out = pytester.path / "barrier.json"
    _write(
        pytester,
        f"""
        import json
        import pytest
        from ops_mh import barrier_op, barrier_timeout_op

        @pytest.mark.pto(ranks=4, ranks_per_host=2)
        def test_rounds(pto_world):
            with open({str(out)!r}, "a") as f:
                f.write(json.dumps(pto_world.run(barrier_op, 10)) + "\\n")

        @pytest.mark.pto(ranks=4, ranks_per_host=2)
        def test_timeout(pto_world):
            with open({str(out)!r}, "a") as f:
                f.write(json.dumps(pto_world.run(barrier_timeout_op)) + "\\n")
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch)
    res.assert_outcomes(passed=2)
    rounds, timeout = (json.loads(line) for line in out.read_text().splitlines())
    assert len(rounds) == 4
    for r in rounds:
        assert r["bridged"] is True and r["slots"] == 64  # the hidden barrier slot is not shown
        assert r["seen"] == [[n] * 4 for n in range(1, 11)]
    for rank, r in enumerate(timeout):
        assert r["seen"] == [7] * 4
        if rank == 3:
            assert r["err"] == ""
        else:
            assert "of 4 ranks arrived in 300 ms" in r["err"]
            assert "calling barrier again waits on" in r["err"]


def test_init_failure_is_named_by_rank_and_host(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    _write(
        pytester,
        """
        import pytest

        @pytest.mark.pto(ranks=4, ranks_per_host=2,
                         rank_env={3: {"PTO_CHIP_INIT_HOOK": "ops_mh:fail_init"}})
        def test_init(pto_world):
            pto_world.run(print)
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch, "--junitxml=j.xml", flavor=flavor)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(
        [
            "*rank 3 (host nsb): INIT_FAILED: rank init refused on purpose*",
            "FAILED init_failed test_mh.py::test_init*rank 3 (host*",
        ]
    )
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.outcome"] == "init_failed"
    assert props["pto.failed_rank"] == "3"


@pytest.mark.parametrize(
    "case",
    [
        ("die_init", "rank_crashed", "*rank 3 (host nsb): died before INIT_DONE (exit code 7)*"),
        ("stall_init", "init_timeout", "*rank 3 (host nsb): no INIT_DONE within the 3 s*"),
    ],
    ids=["death", "missed-deadline"],
)
def test_init_death_and_missed_deadline_are_named_by_rank_and_host(
    pytester: pytest.Pytester,
    ns_cluster: NsCluster,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, str, str],
) -> None:
    hook, outcome, headline = case
    _write(
        pytester,
        f"""
        import pytest

        @pytest.mark.pto(ranks=4, ranks_per_host=2, init_timeout=3,
                         rank_env={{3: {{"PTO_CHIP_INIT_HOOK": "ops_mh:{hook}"}}}})
        def test_init(pto_world):
            pto_world.run(print)
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch, "--junitxml=j.xml")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([headline])
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.outcome"] == outcome
    assert props["pto.failed_rank"] == "3"
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 20), f"{host.name}: {host.pids()}"


def test_hang_on_one_host_ends_with_every_ranks_stack(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = pytester.path / "hung"
    _write(
        pytester,
        f"""
        import pytest
        from ops_mh import hang_op

        @pytest.mark.pto(ranks=4, ranks_per_host=2, round_timeout=4)
        def test_hang(pto_world):
            pto_world.run(hang_op, {str(marker)!r})
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch, "--junitxml=j.xml")
    res.assert_outcomes(failed=1)
    text = res.stdout.str()
    assert "hang: rank 2 (host nsb)" in text
    for rank in range(4):  # every rank's stack, from both hosts
        assert f"--- rank {rank} (pid" in text, rank
    assert "hang_op" in text and "time.sleep(600)" in text
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.outcome"] == "hang"
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 20), f"{host.name}: {host.pids()}"


def _mpirun_pids(cluster: NsCluster) -> list[int]:
    """mpirun processes of this cluster (their environment names its host registry; the
    wheel's mpirun execs prterun)."""
    mark = f"PTO_NETNS_DIR={cluster.registry}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith((b"mpirun", b"prterun", b"mpiexec")) and mark in env:
            out.append(int(entry))
    return out


def _free_locks(host: object, lock_dir: Path) -> subprocess.CompletedProcess[str]:
    """Lease both devices of the host from inside it: only possible if no lock is held."""
    code = (
        "from pathlib import Path; from pytest_pto.devices import DevicePool; "
        f"lease = DevicePool((0, 1), Path({str(lock_dir)!r})).lease(2, 'probe', 3.0); "
        "print('leased', lease.devices); lease.release()"
    )
    return host.run(sys.executable, "-c", code)  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize(
    ("sig", "flavor"),
    [
        (signal.SIGKILL, "openmpi"),
        (signal.SIGTERM, "openmpi"),
        (signal.SIGINT, "openmpi"),
        (signal.SIGKILL, "mpich"),
        (signal.SIGTERM, "mpich"),
    ],
    indirect=["flavor"],
)
def test_killed_session_leaves_nothing_on_any_host(
    pytester: pytest.Pytester,
    ns_cluster: NsCluster,
    monkeypatch: pytest.MonkeyPatch,
    sig: signal.Signals,
    flavor: str,
) -> None:
    """pytest killed while rank 2 (host nsb) hangs inside an op: no process survives on any
    host (hydra's proxies included, under MPICH), mpirun is gone, and each host's devices
    can be leased again."""
    marker = pytester.path / "hung"
    _write(
        pytester,
        f"""
        import pytest
        from ops_mh import hang_op

        @pytest.mark.pto(ranks=4, ranks_per_host=2, round_timeout=600)
        def test_hang(pto_world):
            pto_world.run(hang_op, {str(marker)!r})
        """,
    )
    for key, value in ns_cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pytest"),
            *ns_cluster.options(flavor=flavor),
            *("-p", "no:cacheprovider", f"--pto-log-dir={pytester.path / 'logs'}"),
        ],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(marker.exists, 120), "rank 2 never started its op"
        a, b = ns_cluster.hosts
        assert a.pids() and b.pids()  # agents and ranks are running on both hosts
        assert _mpirun_pids(ns_cluster)
        held = _free_locks(b, ns_cluster.lock_dir)
        assert held.returncode != 0  # the round holds nsb's devices right now
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()} survive"
    assert wait_for(lambda: not _mpirun_pids(ns_cluster), 30), _mpirun_pids(ns_cluster)
    for host in ns_cluster.hosts:
        res = _free_locks(host, ns_cluster.lock_dir)
        assert res.returncode == 0, f"{host.name}: {res.stdout}{res.stderr}"
        assert "leased (0, 1)" in res.stdout
        shm = host.run("ls", "/dev/shm").stdout.split()
        assert not [s for s in shm if s.startswith("pto-")], (host.name, shm)
    # the agents left by their own teardown, none crashed in it (an agent that closed a World
    # under a thread waiting in World.run died of SIGSEGV: hydra reports "BAD TERMINATION ...
    # EXIT CODE: 11", Open MPI "exited on signal 11")
    log = (pytester.path / "logs" / "mpirun.log").read_text(errors="replace")
    for crash in ("BAD TERMINATION", "signal 11", "EXIT CODE: 11", "Segmentation"):
        assert crash not in log, log


def test_torch_allreduce_across_hosts_meets_at_rank_0s_host(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The torch runtime's TCP store and gloo group span both hosts: MASTER_ADDR is rank 0's
    host (nsa's address), which ranks 2 and 3 on nsb reach over the veth link."""
    pytest.importorskip("torch")
    _write(
        pytester,
        """
        import os
        import pytest
        import torch
        import torch.distributed as dist

        def op(chip):
            t = torch.ones(4) * (chip.rank + 1)
            dist.all_reduce(t)
            return t.tolist(), os.environ["MASTER_ADDR"]

        @pytest.mark.pto(ranks=4, ranks_per_host=2, runtime="torch")
        def test_torch(pto_world):
            results = pto_world.run(op)
            assert [r[0] for r in results] == [[10.0] * 4] * 4
            print("MASTER", {r[1] for r in results})
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch, "-s")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([f"*MASTER {{'{ns_cluster.hosts[0].addr}'}}*"])


def test_poisoned_device_is_quarantined_on_its_own_host(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 3 (host nsb, device 1) fails with a poisoning device code: device 1 is quarantined
    in nsb's lock dir only, so the retry finds too few healthy devices on nsb at once."""
    _write(
        pytester,
        """
        import pytest

        @pytest.mark.pto(ranks=4, ranks_per_host=2,
                         rank_env={3: {"PTO_SIM_DEVICE_FAULTS": "1=507899"}})
        def test_poisoned(pto_world):
            pto_world.run(print)
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch, "--junitxml=j.xml")
    res.assert_outcomes(failed=1)
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.first_outcome"] == "device_error_code=507899"
    assert props["pto.outcome"] == "device_unavailable"
    a, b = ns_cluster.hosts
    qdir = ns_cluster.lock_dir / "quarantine"
    on_b = b.run("ls", str(qdir)).stdout.split()
    on_a = a.run("ls", str(qdir)).stdout.split()
    try:
        assert on_b == ["device-1.json"]
        assert on_a == []
        assert not qdir.exists()  # the controller's own lock dir path is untouched
    finally:
        b.run("rm", "-rf", str(qdir))


def _agent_pid(host: object) -> int | None:
    for pid in host.pids():  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"pto-host-agent"):
                return pid
    return None


def _kill_nsb_agent_midround(
    pytester: pytest.Pytester,
    ns_cluster: NsCluster,
    monkeypatch: pytest.MonkeyPatch,
    started: Callable[[], bool],
    never: str,
) -> tuple[int, str]:
    """Run the pytester file on the hosts in a subprocess, SIGKILL host nsb's agent once
    ``started()`` says the round is inside its op; pytest's exit code and output."""
    for key, value in ns_cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    cmd = [sys.executable, "-m", "pytest", *ns_cluster.options()]
    cmd += ["-p", "no:cacheprovider", "-rA", "--junitxml=j.xml"]
    proc = subprocess.Popen(
        cmd, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert wait_for(started, 120), never
        agent = _agent_pid(ns_cluster.hosts[1])
        assert agent is not None
        os.kill(agent, signal.SIGKILL)
        text = proc.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, text


def test_a_lost_host_agent_is_infra_and_the_retry_relaunches(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nsb's host agent is killed while rank 2 hangs in an op: the round is an infra failure
    naming the host, and its one retry runs on a fresh mpirun launch and passes."""
    flag = pytester.path / "hung-once"
    _write(
        pytester,
        f"""
        import os, time
        import pytest

        def op(chip):
            if chip.rank == 2 and not os.path.exists({str(flag)!r}):
                open({str(flag)!r}, "a").close()
                time.sleep(600)
            return chip.rank

        @pytest.mark.pto(ranks=4, ranks_per_host=2, round_timeout=120)
        def test_agent(pto_world):
            assert pto_world.run(op) == [0, 1, 2, 3]
        """,
    )
    returncode, text = _kill_nsb_agent_midround(
        pytester, ns_cluster, monkeypatch, flag.exists, "rank 2 never started its op"
    )
    assert returncode == 0, text
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.outcome"] == "passed"
    assert props["pto.attempt"] == "2"
    assert props["pto.first_outcome"] == "failed"
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()}"


def test_a_rank_killed_on_one_host_is_peer_dead_on_the_other(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 2 (host nsb) is SIGKILLed while rank 0 (host nsa) waits on it with a 60 s budget:
    rank 0 gets PeerDead naming rank 2, its pid and host nsb (not a CommTimeout after 60 s),
    and the round is rank 2's crash, not rank 0's secondary failure."""
    out = pytester.path / "rank0.txt"
    _write(
        pytester,
        f"""
        import pytest
        from ops_mh import peer_dead_op

        @pytest.mark.pto(ranks=4, ranks_per_host=2, round_timeout=120)
        def test_dead(pto_world):
            pto_world.run(peer_dead_op, {str(out)!r})
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch, "--junitxml=j.xml")
    res.assert_outcomes(failed=1)
    seen = out.read_text()
    assert seen.startswith("PeerDead: "), seen
    assert re.search(r"peer rank 2 \(pid \d+ on host nsb\) died", seen), seen
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.outcome"] == "rank_crashed"
    assert props["pto.failed_rank"] == "2"
    res.stdout.fnmatch_lines(["*rank 2 (host nsb): crashed with*"])
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()}"


def test_put_then_notify_across_hosts_delivers_the_put(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 rounds of a put into rank 3's window (host nsb) by rank 0 (host nsa), then a notify:
    whenever rank 3's wait returns, the put is there (data before the signal that releases
    it, for a remote put as for a rank's own window)."""
    out = pytester.path / "stale.json"
    _write(
        pytester,
        f"""
        import json
        import pytest
        from ops_mh import put_notify_op

        @pytest.mark.pto(ranks=4, ranks_per_host=2)
        def test_puts(pto_world):
            with open({str(out)!r}, "w") as f:
                f.write(json.dumps(pto_world.run(put_notify_op, 300)))
        """,
    )
    res = _run(pytester, ns_cluster, monkeypatch)
    res.assert_outcomes(passed=1)
    assert json.loads(out.read_text()) == [[], [], [], []]


def test_a_lost_host_agent_is_peer_dead_for_waiters_on_the_other_host(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nsb's host agent is SIGKILLed while rank 0 (nsa) waits on a slot with a 60 s budget: its
    connection to nsa's agent ends, so rank 0 fails with PeerDead naming nsb's lost agent; the
    round stays the lost agent's (infra) failure, and the retry passes."""
    waiting = pytester.path / "rank0-waiting"
    hung = pytester.path / "rank2-hung"
    out = pytester.path / "rank0.txt"
    _write(
        pytester,
        f"""
        import os, time
        import pytest

        def op(chip):
            if chip.rank == 0 and not os.path.exists({str(out)!r}):  # the first attempt
                open({str(waiting)!r}, "a").close()
                seen = "no error"
                try:
                    chip.comm.wait(0, ">=", 1, timeout_ms=60_000)
                except Exception as e:
                    seen = f"{{type(e).__name__}}: {{e}}"
                    raise  # the round sees rank 0's own (secondary) error
                finally:
                    with open({str(out)!r}, "w") as f:
                        f.write(seen)
            if chip.rank == 2 and not os.path.exists({str(hung)!r}):  # the first attempt
                open({str(hung)!r}, "a").close()
                time.sleep(600)
            return chip.rank

        @pytest.mark.pto(ranks=4, ranks_per_host=2, round_timeout=120)
        def test_agent(pto_world):
            assert pto_world.run(op) == [0, 1, 2, 3]
        """,
    )
    returncode, text = _kill_nsb_agent_midround(
        pytester,
        ns_cluster,
        monkeypatch,
        lambda: waiting.exists() and hung.exists(),
        "never started",
    )
    seen = out.read_text()
    assert seen.startswith("PeerDead: "), seen
    assert "peer rank 2 (host nsb: host agent gone) died" in seen, seen
    assert returncode == 0, text
    (props,) = _props(pytester.path / "j.xml")
    assert props["pto.outcome"] == "passed"
    assert props["pto.attempt"] == "2"
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()}"


def test_xdist_workers_each_launch_and_share_the_hosts_by_lease(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    """``-n 2``: each xdist worker is its own session with its own mpirun and host agents (two
    launch tokens); their rounds need the same devices on both hosts in different shapes
    (4 ranks 2+2, 3 ranks 2+1, 2 ranks 1+1), so the leases serialize them: every round
    passes, no two rounds hold a device of a host at once (their ops never overlap on it),
    and when the session ends nothing is left on any host (processes, /dev/shm, locks) and
    both mpiruns are gone. Hosts are always leased in the same order, so the workers never
    wait on each other crosswise (a deadlock would end in device_unavailable after 60 s)."""
    pytest.importorskip("xdist")
    out = pytester.path / "rounds.jsonl"
    _write(
        pytester,
        f"""
        import json, os, time
        import pytest

        def op(chip):
            start = time.time()
            time.sleep(0.3)  # 10x an op's cost: overlapping leases would overlap here
            return {{
                "host": os.environ["PTO_HOST"],
                "device": chip.device_id,
                "token": os.environ.get("PTO_LAUNCH_TOKEN", ""),
                "span": [start, time.time()],
            }}

        def record(pto_world):
            results = pto_world.run(op)
            with open({str(out)!r}, "a") as f:
                f.write(json.dumps([os.environ["PYTEST_XDIST_WORKER"], results]) + "\\n")

        @pytest.mark.pto(ranks=4, ranks_per_host=2)
        def test_four(pto_world):
            record(pto_world)

        @pytest.mark.pto(ranks=3)
        def test_three(pto_world):
            record(pto_world)

        @pytest.mark.pto(ranks=2, ranks_per_host=1)
        def test_two(pto_world):
            record(pto_world)

        @pytest.mark.pto(ranks=4, ranks_per_host=2)
        def test_four_again(pto_world):
            record(pto_world)
        """,
    )
    res = _run(
        pytester,
        ns_cluster,
        monkeypatch,
        "-n",
        "2",
        "--pto-rounds=2",
        "--pto-lock-timeout=60",
        f"--pto-log-dir={pytester.path / 'logs'}",
        "--junitxml=j.xml",
        flavor=flavor,
    )
    res.assert_outcomes(passed=8)
    for worker in ("gw0", "gw1"):  # one mpirun each, each logged apart in the shared log dir
        log = (pytester.path / "logs" / f"mpirun-{worker}.log").read_text()
        assert log.count("$ ") == 1, log
    rounds = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rounds) == 8
    tokens: dict[str, set[str]] = {}
    for worker, results in rounds:
        tokens.setdefault(worker, set()).update(r["token"] for r in results)
    assert sorted(tokens) == ["gw0", "gw1"]  # both workers ran rounds on the hosts
    assert all(len(t) == 1 and "" not in t for t in tokens.values()), tokens
    assert tokens["gw0"] != tokens["gw1"]  # one launch (mpirun + agents) per worker
    held: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _, results in rounds:
        for r in results:
            held.setdefault((r["host"], r["device"]), []).append(tuple(r["span"]))
    for where, spans in held.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, f"{where}: two rounds held it at once: {spans}"
    assert {h for h, _ in held} == {"nsa", "nsb"}
    assert [p["pto.outcome"] for p in _props(pytester.path / "j.xml")] == ["passed"] * 8
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()} survive"
        res_locks = _free_locks(host, ns_cluster.lock_dir)
        assert res_locks.returncode == 0, f"{host.name}: {res_locks.stdout}{res_locks.stderr}"
        shm = host.run("ls", "/dev/shm").stdout.split()
        assert not [s for s in shm if s.startswith("pto-")], (host.name, shm)
    assert wait_for(lambda: not _mpirun_pids(ns_cluster), 30), _mpirun_pids(ns_cluster)
