"""Simulated device faults (``PTO_SIM_DEVICE_FAULTS``): a sim device that is broken.

``PTO_SIM_DEVICE_FAULTS=3=507899,5=507015@op`` makes the simulated runtime of every rank that
uses device 3 raise :class:`libpto.errors.DeviceError` with code 507899 when it brings the
device up (``@init``, the default), and of device 5 with code 507015 on its first run
(``@op``: :meth:`Runtime.run`/``submit``). Why in the runtime and not in a test harness: the
failure then travels the real path (the rank's exception, INIT_FAILED or the op's error, the
controller's classification), exactly as a wedged card's would.

Why ``init`` is the default: every round that leases the device then fails, whatever its test
body does (a test whose ops never submit device work would not notice an ``op`` fault).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from libpto.errors import ConfigError

__all__ = ["FAULTS_ENV", "FAULTS_RULE", "DeviceFault", "device_faults", "parse_device_faults"]

FAULTS_ENV = "PTO_SIM_DEVICE_FAULTS"
FAULTS_RULE = (
    "must be comma-separated DEVICE=CODE or DEVICE=CODE@PHASE entries (DEVICE an id 0..65535 "
    "named once, CODE an integer 1..2147483647, PHASE init or op; default init), "
    "e.g. 3=507899,5=507015@op"
)
_ENTRY = re.compile(r"([0-9]{1,5})=([0-9]{1,10})(?:@(init|op))?")


@dataclass(frozen=True)
class DeviceFault:
    """The fault of one simulated device: its error code and when it surfaces."""

    device: int
    code: int
    phase: str = "init"  # "init" or "op"


def parse_device_faults(text: str, source: str = FAULTS_ENV) -> dict[int, DeviceFault]:
    """``text`` -> {device: fault}; a bad value raises ConfigError naming ``source``."""
    out: dict[int, DeviceFault] = {}
    if not text.strip():
        return out
    for raw in text.split(","):
        item = raw.strip()
        m = _ENTRY.fullmatch(item)
        bad = m is None
        if m is not None:
            device, code = int(m.group(1)), int(m.group(2))
            bad = device > 65535 or not 1 <= code <= 2147483647 or device in out
        if bad or m is None:
            raise ConfigError(f"{source}={text}: entry {item!r}: {FAULTS_RULE}", key=FAULTS_ENV)
        out[device] = DeviceFault(device, code, m.group(3) or "init")
    return out


def device_faults(env: Mapping[str, str] | None = None) -> dict[int, DeviceFault]:
    """The faults configured in ``env`` (over os.environ)."""
    if env is not None and FAULTS_ENV in env:
        return parse_device_faults(str(env[FAULTS_ENV]), f"Runtime(env): {FAULTS_ENV}")
    return parse_device_faults(os.environ.get(FAULTS_ENV, ""))
