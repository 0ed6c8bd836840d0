"""Ops and init hooks used by the world tests (module level: they travel by reference)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from libpto.errors import SchedulerTimeout
from libpto.world import Chip


def identity(chip: Chip, value: Any) -> dict[str, Any]:
    return {
        "rank": chip.rank,
        "size": chip.size,
        "device_id": chip.device_id,
        "value": value,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("PTO", "ASCEND", "HIER"))},
        "pid": os.getpid(),
        "has_comm": chip.comm is not None,
    }


def noop(chip: Chip) -> None:
    return None


def start_time(chip: Chip) -> int:
    return time.time_ns()


def log_line(chip: Chip, text: str) -> None:
    chip.log(text)
    print(f"stdout of rank {chip.rank}", flush=True)


def raise_on(chip: Chip, rank: int) -> int:
    if chip.rank == rank:
        raise ValueError(f"boom from rank {chip.rank}")
    return chip.rank


class Unshowable(Exception):
    """An exception with a broken ``__str__`` whose unpickling raises a BaseException."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_exit_on_rebuild, ())


def _exit_on_rebuild() -> None:
    raise SystemExit("rebuilt")


def raise_unshowable_on(chip: Chip, rank: int) -> int:
    if chip.rank == rank:
        raise Unshowable()
    return chip.rank


def sched_timeout_on(chip: Chip, rank: int) -> int:
    if chip.rank == rank:
        raise SchedulerTimeout(
            "run: SCHEDULER_TIMEOUT", code=100, sub_class="S1", stuck_task=3, core=0
        )
    return chip.rank


def kill_self_on(chip: Chip, rank: int, signame: str) -> int:
    if chip.rank == rank:
        os.kill(os.getpid(), getattr(signal, signame))
        time.sleep(10)
    return chip.rank


def sleep_on(chip: Chip, rank: int, seconds: float) -> int:
    if chip.rank == rank:
        hang_here(seconds)
    return chip.rank


def hang_here(seconds: float) -> None:
    time.sleep(seconds)


def rendezvous(chip: Chip) -> int:
    assert chip.comm is not None
    chip.comm.barrier(timeout_ms=30_000)
    return chip.rank


def big_result(chip: Chip, nbytes: int) -> bytes:
    return b"x" * nbytes


def exit_in_op(chip: Chip, code: int) -> None:
    os._exit(code)


# -- init hooks (PTO_CHIP_INIT_HOOK) -------------------------------------------------------------
def init_fail(chip: Chip) -> None:
    raise ValueError(f"PTO2_RING_HEAP=12: must be an integer >= 1024 (rank {chip.rank})")


def init_exit(chip: Chip) -> None:
    os._exit(7)


def init_sigkill(chip: Chip) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def init_sleep(chip: Chip) -> None:
    time.sleep(float(os.environ.get("HIER_INIT_SLEEP", "30")))


# -- with the real runtime ------------------------------------------------------------------------
def allreduce_ranked(chip: Chip, n: int) -> list[float]:
    """Rank-distinct inputs through the builtin mesh allreduce (exact in float32)."""
    from libpto.ops import mesh_allreduce

    return mesh_allreduce(chip, [float(chip.rank * 1000 + i) for i in range(n)])


def runtime_wait_forever_on(chip: Chip, rank: int) -> int:
    """A RUNNING wait kernel nobody satisfies: the scheduler latches SCHEDULER_TIMEOUT (S1)."""
    if chip.rank == rank:
        graph = chip.runtime.graph()
        graph.wait(7, ">=", 1 << 40)
        chip.runtime.run(graph)
    return chip.rank


def runtime_hang_on(chip: Chip, rank: int) -> int:
    """A kernel that never finishes, under budgets far beyond the round deadline."""
    if chip.rank == rank:
        graph = chip.runtime.graph()
        graph.hang()
        chip.runtime.run(graph)
    return chip.rank


def runtime_facts(chip: Chip) -> dict[str, Any]:
    return {
        "rank": chip.runtime.rank,
        "bound": chip.runtime.comm is chip.comm,
        "comm_rank": chip.comm.rank,
        "comm_size": chip.comm.size,
    }


def start_daemon(chip: Chip) -> int:
    """A helper process in a session of its own (out of the worker's process group)."""
    import subprocess

    return subprocess.Popen(["sleep", "300"], start_new_session=True).pid


def pids_alive(chip: Chip, pids: list[int]) -> list[bool]:
    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out.append(False)
        else:
            out.append(True)
    return out


# -- descendants that escape their worker's process group ---------------------------------------
_ESCAPEE = "import time; time.sleep(120)"


def start_escapee(chip: Chip, rank: int, double_fork: bool = False) -> int:
    """On ``rank``: start a process in a session of its own (``setsid``: neither the worker's
    process group nor its session), optionally double-forked so its parent is gone at once;
    return its pid (0 on the other ranks). Nothing waits for it: it must die with the rank."""
    if chip.rank != rank:
        return 0
    if not double_fork:
        return subprocess.Popen(
            [sys.executable, "-c", _ESCAPEE], start_new_session=True, close_fds=True
        ).pid
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the middle process: start the escapee, report its pid, vanish
        os.close(r)
        pid = subprocess.Popen(
            [sys.executable, "-c", _ESCAPEE], start_new_session=True, close_fds=True
        ).pid
        os.write(w, str(pid).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        pid = int(f.read())
    os.waitpid(middle, 0)
    return pid


def escapee_then_sleep(chip: Chip, rank: int, pid_file: str, seconds: float) -> int:
    """On ``rank``: start an escapee, write its pid to ``pid_file``, then hang for ``seconds``."""
    if chip.rank == rank:
        pid = start_escapee(chip, rank)
        tmp = pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, pid_file)
        hang_here(seconds)
    return chip.rank


def sched_policy(chip: Chip) -> int:
    return os.sched_getscheduler(0)


def loaded_modules(chip: Chip, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in sys.modules]


def modules_since_fork(chip: Chip) -> list[str]:
    from libpto import _worker

    return sorted(set(sys.modules) - _worker.MODULES_AT_FORK)
