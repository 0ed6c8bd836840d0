"""Console scripts: ``pto-devices`` (device pool state) and ``pto-report`` (JUnit -> tables).

``pto-report`` and ``pto-bisect`` live in the report wing (:mod:`pytest_pto.report`); this
module only dispatches to them so the entry points in pyproject stay stable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["bisect_main", "devices_main", "report_main"]


def report_main(argv: list[str] | None = None) -> int:
    from pytest_pto.report import report_main as main

    return int(main(argv) or 0)


def bisect_main(argv: list[str] | None = None) -> int:
    from pytest_pto.report import bisect_main as main

    return int(main(argv) or 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pto-devices",
        description="Show the device pool of pytest-pto: which devices are free, who holds the "
        "others (pid, host, test) and since when, and which are quarantined and why (code, "
        "test, round, host, pid, time). Holder files of dead holders are removed.",
        epilog="exit status: 0 the pool was shown (or devices released); 1 a host could not be "
        "reached (--launcher=mpirun); 2 bad usage or input (device spec, platform, lock dir, "
        "--release value, launcher, hosts)",
    )
    p.add_argument(
        "--lock-dir",
        help="lock directory (default: $PTO_LOCK_DIR, else the per-user default of pytest-pto)",
    )
    p.add_argument("--platform", default=None, help="platform (default: $PTO_PLATFORM or sim)")
    p.add_argument(
        "--devices", default=None, help="device ids, e.g. 0-7 or 0,2,5 (default: the platform's)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--launcher",
        default=None,
        metavar="local|mpirun",
        help="mpirun: show every host's pool, read on that host (its own lock dir) through "
        "the host agents mpirun starts there, as pytest --pto-launcher=mpirun does "
        "(default: $PTO_LAUNCHER or local)",
    )
    p.add_argument(
        "--hosts",
        default=None,
        help="with --launcher=mpirun: the hosts and their devices, 'a:0-3 b:0-3' or an MPI "
        "hostfile (default: $PTO_HOSTS)",
    )
    p.add_argument(
        "--mpirun",
        default=None,
        metavar="PATH",
        help="with --launcher=mpirun: the mpirun (default: $PTO_MPIRUN, else the one next to "
        "this Python, else on PATH)",
    )
    p.add_argument(
        "--mpi-args",
        default=None,
        metavar="ARGS",
        help="with --launcher=mpirun: extra mpirun arguments, one shell-quoted string "
        "(default: $PTO_MPI_ARGS)",
    )
    p.add_argument(
        "--release",
        metavar="ID|all",
        action="append",
        help="bring quarantined device(s) back into the pool (repeatable, or comma list; "
        "'all' releases every quarantined device of the lock dir; with --launcher=mpirun "
        "HOST:ID or HOST:all for one host, a plain ID or all on every host)",
    )
    return p


def _release_ids(text: str) -> tuple[int, ...] | None:
    """``all`` -> None, else the ids of a device spec (``0-3``, ``1,4``); ValueError naming the
    rule. The one reading of --release's ids, on this machine and per host with mpirun."""
    from pytest_pto._settings import _BadValue, parse_devices

    if text.strip().lower() == "all":
        return None
    try:
        return parse_devices(text)
    except _BadValue as exc:
        raise ValueError(str(exc)) from None


def _release(pool: Any, values: list[str]) -> int:
    text = ",".join(values)
    try:
        ids = _release_ids(text)
    except ValueError as exc:
        print(f"pto-devices: --release={text}: {exc} (or 'all')", file=sys.stderr)
        return 2
    before = pool.quarantined()
    released = pool.release_quarantine(ids)
    for device in released:
        print(f"released device {device} ({before[device].reason})")
    if ids is not None:
        for device in sorted(set(ids) - set(released)):
            print(f"device {device} was not quarantined")
    if not released and ids is None:
        print("no device was quarantined")
    return 0


def devices_main(argv: list[str] | None = None) -> int:
    from pytest_pto._settings import _BadValue, default_lock_dir, parse_devices
    from pytest_pto.devices import DevicePool, get_platform

    args = _parser().parse_args(argv)
    lock_dir = Path(args.lock_dir or os.environ.get("PTO_LOCK_DIR") or default_lock_dir())
    platform = args.platform or os.environ.get("PTO_PLATFORM") or "sim"
    spec = args.devices or os.environ.get("PTO_DEVICES")
    launcher = args.launcher or os.environ.get("PTO_LAUNCHER") or "local"
    multi_host = launcher.strip().lower() == "mpirun"
    if not multi_host and launcher.strip().lower() != "local":
        where = f"--launcher={args.launcher}" if args.launcher else f"PTO_LAUNCHER={launcher}"
        print(f"pto-devices: {where}: must be 'local' or 'mpirun'", file=sys.stderr)
        return 2
    try:
        ids = parse_devices(spec) if spec else get_platform(platform).devices()
    except (_BadValue, ValueError) as exc:
        if multi_host and not spec:
            ids = ()  # every host names its devices ('a:0-3'), or the host list says which not
        else:
            where = f"--devices={spec}" if spec else f"platform {platform}"
            print(f"pto-devices: {where}: {exc}", file=sys.stderr)
            return 2
    if multi_host:
        return _hosts_main(args, lock_dir, tuple(ids))
    try:
        pool = DevicePool(ids, lock_dir)
    except ValueError as exc:  # name the lock dir's source, not the platform
        if args.lock_dir:
            where = f"--lock-dir={args.lock_dir}"
        elif os.environ.get("PTO_LOCK_DIR"):
            where = f"PTO_LOCK_DIR={lock_dir}"
        else:
            where = "default lock dir"
        print(f"pto-devices: {where}: {exc}", file=sys.stderr)
        return 2
    if args.release:
        return _release(pool, args.release)
    states = pool.state(clean=True)
    quarantined = pool.quarantined()
    if args.json:
        print(
            json.dumps({"lock_dir": str(lock_dir), "devices": _json(states, quarantined)}, indent=2)
        )
        return 0
    print(f"lock dir: {lock_dir}")
    _table(states, quarantined)
    return 0


def _hosts_main(args: argparse.Namespace, lock_dir: Path, default_ids: tuple[int, ...]) -> int:
    """``--launcher=mpirun``: every host's pool, read (or released) on that host by the host
    agent that mpirun starts there -- the same path as pytest's rounds, so what is shown is
    each host's own lock dir, never this machine's."""
    import shlex
    import shutil
    import tempfile

    from libpto._hosts import HostsError, parse_hosts
    from pytest_pto._launcher import LaunchError, MpiLaunch
    from pytest_pto._mpi_flavor import MpiFlavorError, default_mpirun, detect
    from pytest_pto._settings import _BadValue, _mpi_flavor, parse_devices

    text = args.hosts or os.environ.get("PTO_HOSTS")
    if not text:
        print("pto-devices: --launcher=mpirun: needs --hosts (or PTO_HOSTS)", file=sys.stderr)
        return 2
    try:
        hosts = parse_hosts(text, default_ids, parse_devices)
    except (HostsError, OSError) as exc:
        where = f"--hosts={args.hosts}" if args.hosts else f"PTO_HOSTS={text}"
        print(f"pto-devices: {where}: {exc}", file=sys.stderr)
        return 2
    release: dict[str, Any] = {}
    for raw in ",".join(args.release or []).split(","):
        value = raw.strip()
        if not value:
            continue
        name, sep, which = value.rpartition(":")
        targets = [name] if sep else [h.name for h in hosts]
        if sep and name not in {h.name for h in hosts}:
            print(f"pto-devices: --release={value}: no host {name!r} in the hosts", file=sys.stderr)
            return 2
        try:
            ids = _release_ids(which)
        except ValueError as exc:
            print(
                f"pto-devices: --release={value}: not a device id, HOST:ID or all ({exc})",
                file=sys.stderr,
            )
            return 2
        for target in targets:
            if ids is None:
                release[target] = "all"
            elif release.get(target) != "all":
                release.setdefault(target, []).extend(ids)
    mpirun = args.mpirun or os.environ.get("PTO_MPIRUN") or default_mpirun()
    try:
        flavor = _mpi_flavor(os.environ.get("PTO_MPI_FLAVOR", "auto"))
    except _BadValue as exc:
        print(f"pto-devices: PTO_MPI_FLAVOR={os.environ['PTO_MPI_FLAVOR']}: {exc}", file=sys.stderr)
        return 2
    try:
        flavor = detect(mpirun) if flavor == "auto" else flavor
    except MpiFlavorError as exc:
        where = f"--mpirun={args.mpirun}" if args.mpirun else f"mpirun {mpirun}"
        print(f"pto-devices: {where}: {exc} (here: PTO_MPI_FLAVOR)", file=sys.stderr)
        return 2
    mpi_args = shlex.split(args.mpi_args or os.environ.get("PTO_MPI_ARGS") or "")
    logs = Path(tempfile.mkdtemp(prefix="pto-devices-"))
    launch = MpiLaunch(hosts, mpirun, mpi_args, flavor=flavor)
    try:
        launch.start(logs)
        replies = []
        for agent in launch.agents:
            name = agent.host.name
            if args.release and name not in release:
                continue
            fut = agent.request(
                "pool",
                lock_dir=str(lock_dir),
                pool=list(agent.host.devices),
                release=release.get(name) if args.release else None,
            )
            replies.append((agent.host.name, agent.answer(fut, 60, "pool")))
    except (LaunchError, OSError, ValueError) as exc:
        print(f"pto-devices: --launcher=mpirun: {exc}", file=sys.stderr)
        return 1
    finally:
        launch.close()
        shutil.rmtree(logs, ignore_errors=True)
    if args.release:
        for name, reply in replies:
            for device, reason in sorted(reply["released"].items()):
                print(f"host {name}: released device {device} ({reason})")
            if not reply["released"]:
                print(f"host {name}: no device was released")
        return 0
    if args.json:
        out = [
            {"host": name, "devices": _json(reply["states"], reply["quarantined"])}
            for name, reply in replies
        ]
        print(json.dumps({"lock_dir": str(lock_dir), "hosts": out}, indent=2))
        return 0
    for name, reply in replies:
        print(f"host {name}: lock dir {lock_dir} (on {name})")
        _table(reply["states"], reply["quarantined"])
    return 0


def _json(states: list[Any], quarantined: dict[int, Any]) -> list[dict[str, object]]:
    out = []
    for s in states:
        entry: dict[str, object] = {"device": s.device, "state": "held" if s.held else "free"}
        if s.holder is not None:
            entry.update(
                pid=s.holder.pid, host=s.holder.host, test=s.holder.test, since=s.holder.since
            )
        if s.stale_holder_removed:
            entry["stale_holder_removed"] = True
        if s.device in quarantined:
            entry["quarantine"] = quarantined[s.device].to_json()
        out.append(entry)
    return out


def _table(states: list[Any], quarantined: dict[int, Any]) -> None:
    now = time.time()
    head = f"{'device':>6}  {'state':<5}  {'pid':>7}  {'host':<16}  {'since':<19}"
    print(f"{head}  {'held for':>9}  test")
    for s in states:
        if not s.held:
            stale = s.stale_holder_removed
            note = "  (stale holder file of a dead holder removed)" if stale else ""
            print(f"{s.device:>6}  free{note}")
            continue
        h = s.holder
        if h is None:
            print(f"{s.device:>6}  held   (holder file not written yet or missing)")
            continue
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.since))
        print(
            f"{s.device:>6}  held   {h.pid:>7}  {h.host[:16]:<16}  {since:<19}  "
            f"{now - h.since:>8.1f}s  {h.test}"
        )
    held = sum(s.held for s in states)
    print(f"{len(states) - held} free, {held} held, {len(quarantined)} quarantined")
    if quarantined:
        print("quarantined (not leased by any session sharing this lock dir):")
        for device, q in sorted(quarantined.items()):
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(q.since))
            until = (
                ", expires " + time.strftime("%H:%M:%S", time.localtime(q.until))
                if q.until is not None
                else ""
            )
            code = f" code {q.code}" if q.code is not None else ""
            where = f"{q.test} round {q.round}" if q.round else q.test
            print(
                f"{device:>6}  {q.reason}{code}  in {where or '?'}  by pid {q.pid} on {q.host} "
                f"at {since}{until}"
            )
        print("release with: pto-devices --release ID (or --release all)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(devices_main())
