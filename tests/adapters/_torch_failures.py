"""Provoke real torch.distributed failures with real gloo and print what torch says, as JSON.

Run as a script (``python _torch_failures.py SCENARIO...``): it imports torch once, then for each
scenario forks the ranks (as pytest-pto's zygote does), lets them fail for real with short
timeouts, and prints one JSON line per failed rank: ``{"scenario", "rank", "phase", "exc_type",
"message"}``. The adapter tests classify exactly these messages, so the patterns follow what
this torch build really prints, not what someone remembered.

Scenarios:
  skip_collective   rank 1 never calls all_reduce; rank 0 waits out a 1 s group timeout
  peer_dies         rank 1 exits while rank 0 is inside all_reduce
  peer_never_joins  rank 1 never connects; rank 0's TCP store waits 1 s for it
  store_unreachable rank 1 connects to a port nobody serves
  port_taken        rank 0's store port is already bound by someone else
  store_get_timeout a store get of a key nobody sets, 0.5 s timeout
  file_store_timeout the same on a FileStore
  no_backend        init_process_group("nccl") on this CPU build
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

import torch
import torch.distributed as dist

SHORT = datetime.timedelta(seconds=1)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _report(scenario: str, rank: int, phase: str, exc: BaseException) -> None:
    line = {
        "scenario": scenario,
        "rank": rank,
        "phase": phase,
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": traceback.format_exc(),
    }
    os.write(1, (json.dumps(line) + "\n").encode())


def _fork_ranks(scenario: str, body: Callable[[int, int], None], size: int = 2) -> None:
    pids = []
    port = _port()
    for rank in range(size):
        pid = os.fork()
        if pid == 0:
            try:
                body(rank, port)
            except BaseException as exc:
                _report(scenario, rank, getattr(exc, "pto_phase", "op"), exc)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def _join(rank: int, port: int, timeout: datetime.timedelta = SHORT) -> dist.TCPStore:
    try:
        store = dist.TCPStore(
            "127.0.0.1", port, 2, rank == 0, timeout=timeout, wait_for_workers=True
        )
        dist.init_process_group("gloo", store=store, rank=rank, world_size=2, timeout=timeout)
    except BaseException as exc:
        exc.pto_phase = "init"  # type: ignore[attr-defined]
        raise
    return store


def skip_collective(rank: int, port: int) -> None:
    _join(rank, port)
    if rank == 1:
        time.sleep(2.5)  # outlives rank 0's 1 s timeout, then leaves without calling
        return
    t = torch.ones(4)
    dist.all_reduce(t)


def peer_dies(rank: int, port: int) -> None:
    _join(rank, port, datetime.timedelta(seconds=20))
    if rank == 1:
        time.sleep(0.3)  # rank 0 is inside all_reduce by now
        os._exit(9)
    dist.all_reduce(torch.ones(4))


def peer_never_joins(rank: int, port: int) -> None:
    if rank == 1:
        return
    _join(rank, port)


def store_unreachable(rank: int, port: int) -> None:
    if rank == 0:
        return
    _join(rank, port)


def port_taken(rank: int, port: int) -> None:
    if rank == 1:
        return
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        _join(rank, int(holder.getsockname()[1]))


def store_get_timeout(rank: int, port: int) -> None:
    if rank == 1:
        return
    store = dist.TCPStore("127.0.0.1", port, 1, True, timeout=SHORT)
    store.set_timeout(datetime.timedelta(seconds=0.5))
    store.get("never-set")


def file_store_timeout(rank: int, port: int) -> None:
    if rank == 1:
        return
    store = dist.FileStore(os.path.join(tempfile.mkdtemp(), "store"), 1)
    store.set_timeout(datetime.timedelta(seconds=0.5))
    store.get("never-set")


def no_backend(rank: int, port: int) -> None:
    if rank == 1:
        return
    try:
        dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1)
    except BaseException as exc:
        exc.pto_phase = "init"  # type: ignore[attr-defined]
        raise


SCENARIOS: dict[str, Callable[[int, int], None]] = {
    f.__name__: f
    for f in (
        skip_collective,
        peer_dies,
        peer_never_joins,
        store_unreachable,
        port_taken,
        store_get_timeout,
        file_store_timeout,
        no_backend,
    )
}


def main(names: list[str]) -> None:
    for name in names:
        _fork_ranks(name, SCENARIOS[name])


if __name__ == "__main__":
    main(sys.argv[1:] or list(SCENARIOS))
