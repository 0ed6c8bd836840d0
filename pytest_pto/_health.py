"""Preflight device health (``--pto-health-check on``): probe every leased device, quarantine
a failing one, and lease again until the lease holds healthy devices only.

One loop for both launchers, so the two cannot drift apart: the local launcher runs it in the
controller against this machine's pool; with ``--pto-launcher=mpirun`` every host agent runs
it against its own host's pool (its own lock dir), because the device, its management tool
(``npu-smi``) and the runtime that can open it are on that host, not on the controller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pytest_pto.devices import DevicePool, DeviceUnavailable, Lease

__all__ = ["Probe", "device_probes", "lease_healthy", "probe_device"]

Probe = Callable[[int], "str | None"]


def device_probes(adapter: Any, adapter_label: str, platform: str) -> list[tuple[str, Probe]]:
    """The probes of a device, in order: the runtime adapter's ``probe``, then the platform's
    (``npu-smi`` health on ascend, ``PTO_SIM_DEVICE_FAULTS`` on sim)."""
    from pytest_pto._platforms import get_platform

    probes: list[tuple[str, Probe]] = []
    if adapter is not None:
        probes.append((f"{adapter_label}.probe", adapter.probe))
    platform_probe = getattr(get_platform(platform), "probe", None)
    if platform_probe is not None:
        probes.append((f"platform {platform} probe", platform_probe))
    return probes


def probe_device(probes: Iterable[tuple[str, Probe]], device: int) -> str | None:
    """None when every probe finds ``device`` healthy, else the first reason (a probe that
    raises is a reason too: a health query that cannot run says nothing good)."""
    for label, probe in probes:
        try:
            why = probe(device)
        except Exception as exc:
            return f"{label} raised {exc!r}"
        if why is not None:
            return str(why) or f"{label}: unhealthy"
    return None


def lease_healthy(
    pool: DevicePool,
    count: int,
    test: str,
    timeout: float,
    avoid: Iterable[int],
    *,
    probes: list[tuple[str, Probe]] | None,
    ttl: float | None,
    round: int | None,
) -> Lease:
    """``pool.lease(...)``; with ``probes``, every leased device is probed first and a
    failing one is quarantined in ``pool``'s lock dir (reason ``probe: ...``, outcome
    ``probe_failed``), after which the lease moves on to healthy devices. With the pool's
    quarantine off a failing device cannot be set aside: ``DeviceUnavailable`` naming it."""
    avoid = tuple(avoid)
    while True:
        lease = pool.lease(count, test, timeout, avoid)
        if not probes:
            return lease
        bad = [(d, why) for d in lease.devices if (why := probe_device(probes, d)) is not None]
        if not bad:
            return lease
        lease.release()
        if not pool.honour_quarantine:  # --pto-quarantine off: nothing to move past
            text = "; ".join(f"device {d}: {why}" for d, why in bad)
            raise DeviceUnavailable(
                f"device_unavailable: health probe failed ({text}); --pto-quarantine is "
                "off, so the device cannot be set aside"
            )
        for device, why in bad:
            pool.quarantine(
                device,
                reason=f"probe: {why}",
                outcome="probe_failed",
                test=test,
                round=round,
                ttl=ttl,
            )
