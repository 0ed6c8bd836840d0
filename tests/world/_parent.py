"""A world owner run as its own process by the signal tests: runs a 3-rank round first (so the
zygote holds spares, one of them still idle after the next start), starts 2 ranks, prints what
it made (pids, spares, segments) as one JSON line, then blocks in a hanging op until a signal
arrives (with HIER_ESCAPEE_FILE set, the op first starts a process in a session of its own
and writes its pid there)."""

from __future__ import annotations

import json
import os

from libpto.world import World, WorldConfig
from tests.world import _ops
from tests.world._spares import wait_for_spares


def main() -> None:
    with World.start(WorldConfig(devices=(0, 1, 2))) as first:
        zygote = first._zygote
    assert zygote is not None
    wait_for_spares(zygote.pid, 3)
    world = World.start(WorldConfig(devices=(0, 1)))
    facts = {
        "workers": list(world._pids),
        "spares": sorted(wait_for_spares(zygote.pid, 1)),
        "zygote": world._zygote.pid if world._zygote else 0,
        "keeper": world._zygote.proc.pid if world._zygote else 0,
        "segments": [world._mbox_name, world._comm_name],
    }
    print(json.dumps(facts), flush=True)
    escapee_file = os.environ.get("HIER_ESCAPEE_FILE")
    if escapee_file:  # rank 0 starts a process in its own session first
        world.run(_ops.escapee_then_sleep, 0, escapee_file, 120.0)
    world.run(_ops.sleep_on, 0, 120.0)


if __name__ == "__main__":
    main()
