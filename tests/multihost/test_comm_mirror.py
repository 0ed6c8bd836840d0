"""The comm-window mirror between hosts, without hosts: two windows in this /dev/shm stand for
two hosts' windows, and updates are handed across by hand (the agents send them over TCP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from libpto._comm import CommWindow, new_name
from libpto._comm_bridge import CommMirror


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
        chunks, deltas = update
        assert deltas == [(2, 5, 1)]
        assert [(r, off) for r, off, _ in chunks] == [(0, 0)]  # rank 0's window, first chunk
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


def test_a_write_into_a_remote_ranks_window_waits_for_the_sweep(
    two_hosts: tuple[CommMirror, CommMirror],
) -> None:
    """Only the host's own ranks' windows ride with a signal; others go with the sweep."""
    a, b = two_hosts
    with CommWindow.attach(a.name, 0) as rank0, CommWindow.attach(b.name, 2) as rank2:
        rank0.write(0, b"xyz", rank=3)
        rank0.notify(2, 1, 1, add=True)
        update = a.collect()
        assert update is not None and update[0] == []
        b.apply(update)
        assert rank2.read(0, 3, rank=3) == b"\0\0\0"
        sweep = a.collect(data_too=True)
        assert sweep is not None
        b.apply(sweep)
        assert rank2.read(0, 3, rank=3) == b"xyz"
