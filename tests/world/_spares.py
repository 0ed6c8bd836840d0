"""The zygote's spares, as the tests see them: its children titled ``pto-zygote spare of``."""

from __future__ import annotations

import time
from pathlib import Path


def spares_of(zygote: int) -> set[int]:
    out: set[int] = set()
    try:
        kids = Path(f"/proc/{zygote}/task/{zygote}/children").read_text().split()
    except OSError:
        return out
    for pid in map(int, kids):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"pto-zygote spare of" in cmdline:
            out.add(pid)
    return out


def wait_for_spares(zygote: int, count: int, limit: float = 30.0) -> set[int]:
    """The zygote's spares once there are exactly ``count`` of them (forked after a round)."""
    deadline = time.monotonic() + limit
    while True:
        spares = spares_of(zygote)
        if len(spares) == count:
            return spares
        if time.monotonic() > deadline:
            raise AssertionError(
                f"zygote {zygote}: {len(spares)} spares, not {count}, after {limit:g} s"
            )
        time.sleep(0.01)
