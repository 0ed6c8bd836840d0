"""Hosts of a multi-host session and where each rank runs on them.

``--pto-hosts`` names the hosts and each host's devices: ``a:0-3 b:0-3`` (spaces or ``;``
between hosts; a host without ``:DEVICES`` has the platform's devices), or the path of an MPI
hostfile: Open MPI's ``a slots=4`` lines or MPICH's (hydra machinefile) ``a:4`` lines, devices
``0..slots-1``; ``#`` comments.

Placement is deterministic, so a failure names the same host every time it recurs:
 - by default hosts are filled in the order given: host 0 takes as many ranks as its devices
   hold (``devices // devices_per_rank``), then host 1, ...;
 - with ``ranks_per_host=K`` (marker), ranks ``[iK, (i+1)K)`` run on host i.
Each host's ranks are contiguous and in rank order, and rank 0 is on the first host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Host", "HostsError", "parse_hosts", "place"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class HostsError(ValueError):
    """A host list or a placement breaks a rule; the message names the rule."""


@dataclass(frozen=True)
class Host:
    name: str
    devices: tuple[int, ...]


def parse_hosts(
    text: str,
    default_devices: Sequence[int],
    parse_devices: Callable[[str], Sequence[int]],
) -> tuple[Host, ...]:
    """Hosts of ``text`` (a host list or an MPI hostfile path), in order."""
    text = text.strip()
    if not text:
        raise HostsError("empty host list (e.g. 'a:0-3 b:0-3' or an MPI hostfile)")
    if os.path.isfile(text):
        return _hostfile(text)
    hosts = []
    for part in re.split(r"[;\s]+", text):
        if not part:
            continue
        name, sep, devs = part.partition(":")
        if not _NAME.match(name):
            raise HostsError(f"host {name!r}: not a host name (letters, digits, '_', '.', '-')")
        if sep:
            try:
                devices = tuple(parse_devices(devs))
            except ValueError as exc:
                raise HostsError(f"host {name}: devices {devs!r}: {exc}") from None
        else:
            devices = tuple(default_devices)
        if not devices:
            raise HostsError(f"host {name}: no devices")
        hosts.append(Host(name, devices))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise HostsError(f"a host is named twice in {' '.join(names)}")
    return tuple(hosts)


def _hostfile(path: str) -> tuple[Host, ...]:
    hosts = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            name, slots = words[0], 1
            if ":" in name:  # MPICH's machinefile: host:N (N processes)
                name, _, count = name.partition(":")
                if not (count.isdigit() and int(count) > 0):
                    raise HostsError(
                        f"{path}:{lineno}: {words[0]!r}: expected host:N (N >= 1, MPICH) or "
                        "host slots=N (Open MPI)"
                    )
                slots = int(count)
                if len(words) > 1:
                    raise HostsError(
                        f"{path}:{lineno}: {words[1]!r}: a host:N line has nothing after it"
                    )
            for word in words[1:]:
                key, _, value = word.partition("=")
                if key in ("slots", "max_slots") and value.isdigit() and int(value) > 0:
                    if key == "slots":
                        slots = int(value)
                else:
                    raise HostsError(f"{path}:{lineno}: {word!r}: expected slots=N (N >= 1)")
            if not _NAME.match(name):
                raise HostsError(f"{path}:{lineno}: {name!r} is not a host name")
            hosts.append(Host(name, tuple(range(slots))))
    if not hosts:
        raise HostsError(f"{path}: the hostfile names no host")
    return tuple(hosts)


def place(
    ranks: int,
    hosts: Sequence[Host],
    devices_per_rank: int = 1,
    ranks_per_host: int | None = None,
) -> list[int]:
    """The host index of every rank (see the module docstring); HostsError when the hosts
    cannot hold the ranks."""
    capacity = [len(h.devices) // devices_per_rank for h in hosts]
    if ranks_per_host is not None:
        need = -(-ranks // ranks_per_host)
        if need > len(hosts):
            raise HostsError(
                f"{ranks} ranks at ranks_per_host={ranks_per_host} need {need} hosts, "
                f"--pto-hosts has {len(hosts)}"
            )
        out = [r // ranks_per_host for r in range(ranks)]
        for i, h in enumerate(hosts[:need]):
            if out.count(i) > capacity[i]:
                raise HostsError(
                    f"host {h.name}: {out.count(i)} ranks x {devices_per_rank} devices do not "
                    f"fit its {len(h.devices)} devices"
                )
        return out
    out = []
    for i, cap in enumerate(capacity):
        out += [i] * min(cap, ranks - len(out))
    if len(out) < ranks:
        raise HostsError(
            f"{ranks} ranks x {devices_per_rank} devices do not fit the hosts "
            f"({', '.join(f'{h.name}: {len(h.devices)}' for h in hosts)} devices)"
        )
    return out
