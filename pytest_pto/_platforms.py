"""Platforms: where the device ids of the pool come from.

A platform only answers "which device ids exist here". ``sim`` is built in (8 simulated
devices). ``ascend`` shows where a real NPU stack plugs in: it reads ``ASCEND_RT_VISIBLE_DEVICES``
or, failing that, asks ``npu-smi``; the runtime of the chip workers is still libpto's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Protocol

__all__ = [
    "MAX_DEVICE_ID",
    "AscendPlatform",
    "Platform",
    "SimPlatform",
    "get_platform",
    "platform_names",
]

#: Upper bound of a device id (and so of a device count): far above any real machine, low
#: enough that a typo such as ``PTO_SIM_DEVICES=100000000000`` is an error, not a MemoryError.
MAX_DEVICE_ID = 65535


class Platform(Protocol):
    name: str

    def devices(self) -> tuple[int, ...]:
        """Every device id of this machine that tests may lease, ascending."""
        ...

    def binding_env(self, device_ids: tuple[int, ...]) -> dict[str, str]:
        """The environment that binds a rank's worker to ``device_ids`` (its visibility
        variable), or {} when the platform binds nothing."""
        ...

    def local_device_id(self, device_ids: tuple[int, ...]) -> int:
        """The id the rank's runtime opens for its first device once bound."""
        ...


class SimPlatform:
    """libpto's built-in thread simulation: 8 devices, ids 0-7 (``PTO_SIM_DEVICES`` overrides)."""

    name = "sim"

    def devices(self) -> tuple[int, ...]:
        count = os.environ.get("PTO_SIM_DEVICES", "8")
        try:
            n = int(count)
        except ValueError:
            n = -1
        if not 1 <= n <= MAX_DEVICE_ID + 1:
            raise ValueError(
                f"PTO_SIM_DEVICES={count}: must be an integer >= 1 and <= {MAX_DEVICE_ID + 1}"
            )
        return tuple(range(n))

    def binding_env(self, device_ids: tuple[int, ...]) -> dict[str, str]:
        """Nothing: simulated devices keep their physical ids (libpto's runtime and a
        vendor's simulator open ``chip.device_id`` itself), so no visibility variable renumbers
        them behind a runtime's back."""
        return {}

    def local_device_id(self, device_ids: tuple[int, ...]) -> int:
        return device_ids[0]


class AscendPlatform:
    """Real Ascend NPUs: ``ASCEND_RT_VISIBLE_DEVICES`` if set, else the ids ``npu-smi`` lists."""

    name = "ascend"

    def devices(self) -> tuple[int, ...]:
        visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES", "").strip()
        if visible:  # a typo here must not silently shrink the pool
            items = [x.strip() for x in visible.split(",")]
            if not all(re.fullmatch(r"[0-9]+", x) and int(x) <= MAX_DEVICE_ID for x in items):
                raise ValueError(
                    f"ASCEND_RT_VISIBLE_DEVICES={visible}: must be comma-separated device ids "
                    f"(0..{MAX_DEVICE_ID})"
                )
            return tuple(sorted({int(x) for x in items}))
        smi = shutil.which("npu-smi")
        if smi is None:
            return ()
        try:
            out = subprocess.run(
                [smi, "info", "-l"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ()
        return tuple(sorted({int(m) for m in re.findall(r"NPU ID\s*:\s*(\d+)", out)}))

    def binding_env(self, device_ids: tuple[int, ...]) -> dict[str, str]:
        """``ASCEND_RT_VISIBLE_DEVICES=<ids>``: the rank's runtime sees its devices as 0..K-1."""
        return {"ASCEND_RT_VISIBLE_DEVICES": ",".join(map(str, device_ids))}

    def local_device_id(self, device_ids: tuple[int, ...]) -> int:
        return 0


_PLATFORMS: dict[str, type[SimPlatform] | type[AscendPlatform]] = {
    "sim": SimPlatform,
    "ascend": AscendPlatform,
}


def platform_names() -> tuple[str, ...]:
    return tuple(_PLATFORMS)


def get_platform(name: str) -> Platform:
    try:
        return _PLATFORMS[name]()
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}; known platforms: {', '.join(_PLATFORMS)}"
        ) from None
