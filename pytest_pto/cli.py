"""Console scripts: ``pto-devices`` (device pool state) and ``pto-report`` (JUnit -> tables).

``pto-report`` lives in :mod:`pytest_pto.report_cli`; this module only dispatches to it so the
entry points in pyproject stay stable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["devices_main", "report_main"]


def report_main(argv: list[str] | None = None) -> int:
    from pytest_pto.report_cli import main

    return int(main(argv) or 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pto-devices",
        description="Show the device pool of pytest-pto: which devices are free, who holds the "
        "others (pid, host, test) and since when. Holder files of dead holders are removed.",
        epilog="exit status: 0 the pool was shown; 2 bad usage or input (device spec, "
        "platform, lock dir)",
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
    return p


def devices_main(argv: list[str] | None = None) -> int:
    from pytest_pto._settings import _BadValue, default_lock_dir, parse_devices
    from pytest_pto.devices import DevicePool, get_platform

    args = _parser().parse_args(argv)
    lock_dir = Path(args.lock_dir or os.environ.get("PTO_LOCK_DIR") or default_lock_dir())
    platform = args.platform or os.environ.get("PTO_PLATFORM") or "sim"
    spec = args.devices or os.environ.get("PTO_DEVICES")
    try:
        ids = parse_devices(spec) if spec else get_platform(platform).devices()
    except (_BadValue, ValueError) as exc:
        where = f"--devices={spec}" if spec else f"platform {platform}"
        print(f"pto-devices: {where}: {exc}", file=sys.stderr)
        return 2
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
    states = pool.state(clean=True)
    now = time.time()
    if args.json:
        out = []
        for s in states:
            entry: dict[str, object] = {"device": s.device, "state": "held" if s.held else "free"}
            if s.holder is not None:
                entry.update(
                    pid=s.holder.pid, host=s.holder.host, test=s.holder.test, since=s.holder.since
                )
            if s.stale_holder_removed:
                entry["stale_holder_removed"] = True
            out.append(entry)
        print(json.dumps({"lock_dir": str(lock_dir), "devices": out}, indent=2))
        return 0
    print(f"lock dir: {lock_dir}")
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
    print(f"{len(states) - held} free, {held} held")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(devices_main())
