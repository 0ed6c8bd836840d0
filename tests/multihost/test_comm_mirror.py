"""The comm-window mirror between hosts, without hosts: two windows in this /dev/shm stand for
two hosts' windows, and updates are handed across by hand, or (``linked``) by two MirrorPumps
over a real TCP connection as the host agents send them, to real rank processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from libpto._comm import CommWindow, new_name
from libpto._comm_bridge import CommMirror, MirrorPump
from libpto._zygote import recv_msg, send_msg
from libpto.errors import PeerDead


@pytest.fixture
def two_hosts() -> Iterator[tuple[CommMirror, CommMirror]]:
    """Host a runs ranks 0, 1; host b runs ranks 2, 3; each has a 4-rank window."""
    names = [new_name("comm"), new_name("comm")]
    owners = [CommWindow.create(n, 4, None) for n in names]
    a, b = CommMirror(names[0], [0, 1]), CommMirror(names[1], [2, 3])
    try:
        yield a, b
    finally:
        for mirror in (a, b):
            mirror.close()
        for owner, name in zip(owners, names, strict=True):
            owner.close()
            CommWindow.unlink(name, missing_ok=True)


def test_a_signal_carries_the_data_it_releases(two_hosts: tuple[CommMirror, CommMirror]) -> None:
    a, b = two_hosts
    with CommWindow.attach(a.name, 0) as rank0, CommWindow.attach(b.name, 2) as rank2:
        rank0.write_floats(0, [1.5, 2.5])
        rank0.notify(2, 5, 1, add=True)
        update = a.collect()
        assert update is not None
        chunks, deltas, deaths = update
        assert deltas == [(2, 5, 1)] and deaths == []
        # the bytes that changed: float32 1.5 and 2.5 are 00 00 c0 3f and 00 00 20 40
        assert chunks == [(0, 2, b"\xc0\x3f"), (0, 6, b"\x20\x40")]
        assert rank2.load(2, 5) == 0
        b.apply(update)
        assert rank2.wait(5, ">=", 1, 1000) == 1
        assert list(rank2.read_floats(0, 2, rank=0)) == [1.5, 2.5]
        assert a.collect() is None and b.collect() is None  # applied changes are not echoed


def test_concurrent_adds_on_two_hosts_both_count(two_hosts: tuple[CommMirror, CommMirror]) -> None:
    a, b = two_hosts
    with CommWindow.attach(a.name, 0) as rank0, CommWindow.attach(b.name, 3) as rank3:
        rank0.notify(2, 0, 1, add=True)  # every peer of rank 2 notifies it, on both hosts
        rank3.notify(2, 0, 1, add=True)
        rank3.notify(2, 0, 1, add=True)
        from_a, from_b = a.collect(), b.collect()
        assert from_a is not None and from_b is not None
        b.apply(from_a)
        a.apply(from_b)
        assert rank0.load(2, 0) == 3
        assert rank3.load(2, 0) == 3


def test_a_set_is_mirrored_as_the_value(two_hosts: tuple[CommMirror, CommMirror]) -> None:
    a, b = two_hosts
    with CommWindow.attach(a.name, 1) as rank1, CommWindow.attach(b.name, 2) as rank2:
        rank1.notify(2, 7, 41)
        b.apply(a.collect())  # type: ignore[arg-type]
        rank1.notify(2, 7, 9)  # smaller than before: a delta mod 2**64
        b.apply(a.collect())  # type: ignore[arg-type]
        assert rank2.load(2, 7) == 9


def test_a_remote_put_rides_with_the_signal_after_it(
    two_hosts: tuple[CommMirror, CommMirror],
) -> None:
    """A write into another rank's window (rank 0 on a puts into rank 3 on b) goes with the
    notify that follows it, not with a later sweep."""
    a, b = two_hosts
    with CommWindow.attach(a.name, 0) as rank0, CommWindow.attach(b.name, 3) as rank3:
        rank0.write(100, b"xyz", rank=3)
        rank0.notify(3, 1, 1, add=True)
        update = a.collect()
        assert update is not None
        assert update.chunks == [(3, 100, b"xyz")] and update.deltas == [(3, 1, 1)]
        b.apply(update)
        assert rank3.wait(1, ">=", 1, 1000) == 1
        assert rank3.read(100, 3) == b"xyz"


def test_disjoint_writes_of_one_chunk_on_two_hosts_both_arrive(
    two_hosts: tuple[CommMirror, CommMirror],
) -> None:
    """Rank 2 (b) writes its own window while rank 0 (a) puts into another part of the same
    4 KiB chunk: each host ships only the bytes it changed, so neither undoes the other."""
    a, b = two_hosts
    with CommWindow.attach(a.name, 0) as rank0, CommWindow.attach(b.name, 2) as rank2:
        rank2.write(0, b"\x01" * 16)  # its own part
        rank0.write(64, b"\x02" * 16, rank=2)  # rank 0's part, same chunk
        rank2.notify(0, 0, 1)
        rank0.notify(2, 0, 1)
        from_a, from_b = a.collect(), b.collect()
        assert from_a is not None and from_b is not None
        b.apply(from_a)
        a.apply(from_b)
        want = b"\x01" * 16 + b"\0" * 48 + b"\x02" * 16
        assert rank0.read(0, 80, rank=2) == want
        assert rank2.read(0, 80, rank=2) == want


HOLDER = textwrap.dedent(
    """
    import sys, time
    from libpto._comm import CommWindow
    w = CommWindow.attach(sys.argv[1], int(sys.argv[2]))
    print("attached", flush=True)
    time.sleep(600)
    """
)


@contextlib.contextmanager
def holder(name: str, rank: int) -> Iterator[subprocess.Popen[str]]:
    """A process attached to window ``name`` as ``rank`` (it said so) until the test kills it;
    never left behind."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, name, str(rank)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "attached\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_rank_dead_on_one_host_is_peer_dead_on_the_other(
    two_hosts: tuple[CommMirror, CommMirror],
) -> None:
    """Rank 2's process (host b) is SIGKILLed: b's mirror reports it, and rank 0 (host a),
    waiting with a 60 s budget, fails with PeerDead naming rank 2, its pid and host b."""
    a, b = two_hosts
    b.host = "b"
    with holder(b.name, 2) as proc:
        assert b.collect() is None  # alive: nothing to say
        proc.kill()
        proc.wait(30)
        update = None
        for _ in range(1000):  # liveness is looked at every LIVENESS_S (10 ms)
            update = b.collect()
            if update is not None:
                break
            threading.Event().wait(0.005)
        assert update is not None
        assert update.deaths == [(2, f"pid {proc.pid} on host b")]
        with CommWindow.attach(a.name, 0) as rank0:
            a.apply(update)
            with pytest.raises(PeerDead, match=rf"peer rank 2 \(pid {proc.pid} on host b\) died"):
                rank0.wait(0, ">=", 1, timeout_ms=60_000)
            assert not rank0.peer_alive(2)


def test_a_lost_host_marks_its_ranks_dead(two_hosts: tuple[CommMirror, CommMirror]) -> None:
    a, _ = two_hosts
    a.hosts = ["a", "a", "b", "b"]
    assert a.mark_host_lost("b") == [2, 3]
    dead = r"peer rank 2 \(host b: host agent gone\) died"
    with CommWindow.attach(a.name, 1) as rank1, pytest.raises(PeerDead, match=dead):
        rank1.wait(0, ">=", 1, timeout_ms=60_000)
    # a process attaching as a marked rank here clears the other host's word about it
    with CommWindow.attach(a.name, 2) as rank2, CommWindow.attach(a.name, 0) as rank0:
        rank2.notify(0, 0, 1)
        assert rank0.wait(0, ">=", 1, timeout_ms=60_000) == 1
        assert rank0.peer_alive(2)


def test_one_host_text_of_a_dead_peer_is_unchanged() -> None:
    name = new_name("comm")
    with CommWindow.create(name, 2, None) as owner, holder(name, 1) as proc:
        proc.kill()
        proc.wait(30)
        dead = rf"peer rank 1 \(pid {proc.pid}\) died"
        with CommWindow.attach(owner.name, 0) as rank0, pytest.raises(PeerDead, match=dead):
            rank0.wait(0, ">=", 1, timeout_ms=60_000)


# ---- two mirrors joined by MirrorPumps over TCP, with rank processes -------------------------


@contextlib.contextmanager
def linked(a: CommMirror, b: CommMirror) -> Iterator[None]:
    """What two host agents do: each pump sends its mirror's updates over TCP, a thread on the
    other side applies them in arrival order."""
    server = socket.create_server(("127.0.0.1", 0))
    ab = socket.create_connection(server.getsockname())
    ba, _ = server.accept()
    server.close()
    locks = {id(ab): threading.Lock(), id(ba): threading.Lock()}

    def sender(sock: socket.socket) -> object:
        def send(update: object) -> None:
            with contextlib.suppress(OSError), locks[id(sock)]:
                send_msg(sock, update)

        return send

    def receive(sock: socket.socket, mirror: CommMirror) -> None:
        with contextlib.suppress(OSError):
            while (msg := recv_msg(sock)) is not None:
                mirror.apply(msg)

    pumps = [MirrorPump(a, sender(ab)), MirrorPump(b, sender(ba))]  # type: ignore[arg-type]
    threads = [
        threading.Thread(target=receive, args=(ba, b), daemon=True),
        threading.Thread(target=receive, args=(ab, a), daemon=True),
    ]
    for t in [*pumps, *threads]:
        t.start()
    try:
        yield
    finally:
        for p in pumps:
            p.stop.set()
            p.join(10)
        for sock in (ab, ba):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in threads:
            t.join(10)


PUTTER = textwrap.dedent(
    """
    import json, sys
    from libpto._comm import CommWindow
    name, rank, peer, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    w = CommWindow.attach(name, rank)
    stale = []
    for k in range(1, rounds + 1):
        if rank == 0:  # put round k into the peer's window, then notify it; wait for its ack
            w.write(512, k.to_bytes(8, "little") * 64, rank=peer)
            w.notify(peer, 0, k)
            w.wait(1, ">=", k, timeout_ms=60_000)
        else:  # wait for the notify; the put before it must be there; ack
            w.wait(0, ">=", k, timeout_ms=60_000)
            got = w.read(512, 512)
            if got != k.to_bytes(8, "little") * 64:
                stale.append([k, int.from_bytes(got[:8], "little")])
            w.notify(peer, 1, k)
    w.close()
    print(json.dumps(stale), flush=True)
    """
)


def test_put_then_notify_across_hosts_always_delivers_the_put(
    two_hosts: tuple[CommMirror, CommMirror],
) -> None:
    """200 rounds: rank 0 (host a) puts round k into rank 2's window (host b) and notifies
    rank 2; once rank 2's wait returns, the put must be there (the sweep alone, every 50 ms,
    would be far behind a signal that crosses in about a millisecond)."""
    a, b = two_hosts
    rounds = 200
    with linked(a, b):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PUTTER, m.name, str(rank), str(peer), str(rounds)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for m, rank, peer in ((a, 0, 2), (b, 2, 0))
        ]
        try:
            outs = [p.communicate(timeout=240)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(30)
    assert [p.returncode for p in procs] == [0, 0], outs
    assert json.loads(outs[1]) == []  # no round where rank 2 saw the notify but not the put


def test_a_killed_rank_fails_a_waiter_on_the_other_host_through_the_pumps(
    two_hosts: tuple[CommMirror, CommMirror],
) -> None:
    """The same as above end to end: with the pumps running, SIGKILL of rank 3 (host b) makes
    rank 1 (host a), waiting with a 60 s budget, fail with PeerDead naming rank 3."""
    a, b = two_hosts
    b.host = "b"
    with linked(a, b), holder(b.name, 3) as proc, CommWindow.attach(a.name, 1) as rank1:
        os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(PeerDead, match=rf"peer rank 3 \(pid {proc.pid} on host b\)"):
            rank1.wait(0, ">=", 1, timeout_ms=60_000)
