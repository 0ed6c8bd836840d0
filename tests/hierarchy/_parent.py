"""A world owner run as its own process by the signal tests: starts 2 ranks, prints what it
made (pids, segments) as one JSON line, then blocks in a hanging op until a signal arrives."""

from __future__ import annotations

import json

from libpto.hierarchy import World, WorldConfig
from tests.hierarchy import _ops


def main() -> None:
    world = World.start(WorldConfig(devices=(0, 1)))
    facts = {
        "workers": list(world._pids),
        "zygote": world._zygote.pid if world._zygote else 0,
        "segments": [world._mbox_name, world._comm_name],
    }
    print(json.dumps(facts), flush=True)
    world.run(_ops.sleep_on, 0, 120.0)


if __name__ == "__main__":
    main()
