"""Bad arguments of a running World: one InvalidArgument naming the argument (issue 9)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from libpto.errors import InvalidArgument
from libpto.world import World, WorldConfig
from tests.world import _ops

RULE = "must be a number of seconds > 0 and <= 1000000"


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (
            1e308,
            "World.run: timeout=1e+308: " + RULE + ", or None",
        ),
        (
            math.inf,
            "World.run: timeout=inf: " + RULE + ", or None",
        ),
        (
            math.nan,
            "World.run: timeout=nan: " + RULE + ", or None",
        ),
        (0, "World.run: timeout=0: " + RULE + ", or None"),
        ("5", "World.run: timeout='5': " + RULE + " (not str)"),
    ],
)
def test_bad_run_timeout_is_invalid_argument_and_the_world_stays_usable(
    tmp_path: Path, timeout: object, expected: str
) -> None:
    with World.start(WorldConfig(devices=(0,), log_dir=tmp_path)) as world:
        with pytest.raises(InvalidArgument, match=re.escape(expected)) as info:
            world.run(_ops.noop, timeout=timeout)  # type: ignore[arg-type]
        assert expected in str(info.value)
        assert world.run(_ops.noop, timeout=1e6) == [None]  # the bound itself is fine


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"rank_base": -1}, "WorldConfig.rank_base=-1: must be an int >= 0"),
        ({"rank_base": 2}, "WorldConfig.rank_base=2: a slice (rank_base > 0) needs world_size"),
        (
            {"rank_base": 2, "world_size": 3},
            "WorldConfig.world_size=3: must be an int >= rank_base + ranks (4), or None",
        ),
        ({"comm_name": "x"}, "WorldConfig.comm_name='x': must name a comm window"),
    ],
)
def test_bad_host_slice_is_invalid_argument(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(expected)):
        WorldConfig(devices=(0, 1), **kwargs)  # type: ignore[arg-type]
