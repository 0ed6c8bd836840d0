"""Idle runtime threads park (issue 13): a run waiting on the host uses no CPU.

Two CPUs are shared by up to 8 ranks x (orchestrator + schedulers + cores). A thread that
spins or yields while it has nothing to do takes the time slices the threads doing the work
need, so an idle core thread parks on a futex soon after its last task (the next dispatch
wakes it), and under owned-wallclock an idle scheduler that owns nothing parks until a push to
the ready queue or its next budget check.

What is measured, per thread, over one second in which the run waits for a host event, is
``/proc/<pid>/task/<tid>/schedstat``: nanoseconds on a CPU and the number of times it was
scheduled in. A parked thread uses neither (tens of microseconds at most, no wake-up). A
thread that spins or yields for that second uses its share of a CPU (the whole second on a
quiet machine) or, on a loaded one where each yield hands the CPU over, is scheduled in
thousands of times; a thread that polls with 2 ms sleeps is scheduled in 500 times. Bounds:
10 ms of CPU and 20 wake-ups, each >= 10x away from both sides.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import libpto

IDLE_S = 1.0
BUDGET_NS = 10_000_000  # CPU a parked thread may use over IDLE_S (see the module docstring)
BUDGET_WAKEUPS = 20  # times it may be scheduled in over IDLE_S
TASK_DIR = Path(f"/proc/{os.getpid()}/task")
pytestmark = pytest.mark.skipif(
    not (TASK_DIR.parent / "schedstat").exists(), reason="needs /proc/<pid>/schedstat"
)


def runtime_threads_sched() -> dict[str, tuple[int, int]]:
    """(CPU ns, times scheduled in) of every runtime thread of this process, by 'name/tid'."""
    out: dict[str, tuple[int, int]] = {}
    for task in TASK_DIR.iterdir():
        try:
            name = (task / "comm").read_text().strip()
            if name.startswith("pto-"):
                fields = (task / "schedstat").read_text().split()
                out[f"{name}/{task.name}"] = (int(fields[0]), int(fields[2]))
        except (OSError, ValueError, IndexError):
            continue  # a thread that exited meanwhile
    return out


def idle_use_while_waiting_on_event(
    sched_threads: int, cores: int
) -> tuple[dict[str, tuple[int, int]], libpto.RunInfo]:
    """Submit an event -> noops graph, measure each thread's (CPU ns, wake-ups) over IDLE_S
    while the run waits for the event, then fire it: the parked threads must wake and finish
    the run."""
    with libpto.Runtime(
        stream_sync_timeout_ms=120_000,
        scheduler_timeout_ms=60_000,  # no budget check in the window
        stall_report_ms=600_000,  # no STALL report in the window
        sched_threads=sched_threads,
        cores=cores,
    ) as rt:
        g = rt.graph()
        ev = g.event()
        a = g.noop(deps=[ev])
        g.noop(deps=[a])
        g.noop(deps=[ev])
        rt.submit(g)
        time.sleep(0.2)  # the run starts; every thread runs out of work and backs off
        before = runtime_threads_sched()
        time.sleep(IDLE_S)
        after = runtime_threads_sched()
        rt.fire(ev)
        info = rt.sync()
        g.close()
    used = {
        name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
        for name in before
        if name in after
    }
    return used, info


def busy_threads(used: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {n: u for n, u in used.items() if u[0] > BUDGET_NS or u[1] > BUDGET_WAKEUPS}


def test_idle_cores_and_scheduler_park_and_wake_on_dispatch() -> None:
    used, info = idle_use_while_waiting_on_event(sched_threads=1, cores=2)
    assert info.completed == 4  # the parked scheduler and cores woke for the event's tasks
    assert sorted(name.split("/")[0] for name in used) == [
        "pto-core0",
        "pto-core1",
        "pto-orch",
        "pto-sched0",
    ]
    busy = busy_threads(used)
    assert not busy, f"threads used CPU over {IDLE_S} s of waiting (ns, wake-ups): {busy}"


def test_idle_threads_park_with_several_schedulers() -> None:
    """Three schedulers, one of them without a core: none spins while the run waits."""
    used, info = idle_use_while_waiting_on_event(sched_threads=3, cores=2)
    assert info.completed == 4
    assert len(used) == 1 + 3 + 2
    busy = busy_threads(used)
    assert not busy, f"threads used CPU over {IDLE_S} s of waiting (ns, wake-ups): {busy}"
