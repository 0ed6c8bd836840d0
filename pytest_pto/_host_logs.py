"""Rank logs across hosts, without a shared filesystem.

A host agent's ranks write their logs (fd 1 and 2, ``chip.log``, faulthandler dumps) on their
own host, in a folder of the agent's (:func:`agent_log_root`). The agent ships what each log
gained over its connection to the controller (:class:`LogShipper`) before every answer about
the round -- a start, an op's result or failure, stacks, the close -- and the controller
appends it to the round's log folder (:func:`write_shipment`), the folder the one-host path
writes into directly. So when a failure reaches the controller its ranks' log lines are
already there for the report, whatever the hosts share.

``PTO_HOST_LOG_DIR`` (read by the agent on its host) is where that folder is made; default the
host's temporary directory. The agent removes its folder when it leaves.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["HOST_LOG_DIR_ENV", "LogShipper", "agent_log_root", "write_shipment"]

HOST_LOG_DIR_ENV = "PTO_HOST_LOG_DIR"
CHUNK = 4 << 20  # bytes of one log in one message
_LOG_NAME = re.compile(r"^rank\d+\.log$")


def agent_log_root(env: Mapping[str, str] | None = None) -> Path:
    """A new folder for this agent's rank logs: in ``PTO_HOST_LOG_DIR`` when set, else the
    host's temp dir (named after the agent's pid, so a later agent sweeps it if this one is
    killed)."""
    import tempfile

    from libpto import owner_temp_dir

    parent = (os.environ if env is None else env).get(HOST_LOG_DIR_ENV, "")
    if not parent:
        return owner_temp_dir("agent-logs")
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"pto-agent-logs-{os.getpid()}-", dir=parent))


class LogShipper:
    """The agent's end: each round's log folder, and what of each log was shipped so far.

    ``send(message)`` sends one message to the controller; shipments of one round go out in
    order (one lock), each before the answer that follows it on the same connection."""

    def __init__(self, root: Path, send: Callable[[dict[str, Any]], None]) -> None:
        self.root = root
        self.send = send
        self._dirs: dict[str, Path] = {}
        self._sent: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def folder(self, world: str) -> Path:
        """The log folder of round ``world`` on this host (made on first use)."""
        with self._lock:
            path = self._dirs.get(world)
            if path is None:
                path = self.root / world
                path.mkdir(parents=True, exist_ok=True)
                self._dirs[world] = path
                self._sent[world] = {}
            return path

    def ship(self, world: str) -> None:
        """Send what each rank log of ``world`` gained since the last shipment."""
        with self._lock:
            self._ship(world)

    def _ship(self, world: str) -> None:
        path = self._dirs.get(world)
        if path is None:
            return
        sent = self._sent[world]
        while True:
            logs: dict[str, bytes] = {}
            with contextlib.suppress(OSError):
                for entry in sorted(os.scandir(path), key=lambda e: e.name):
                    if not _LOG_NAME.match(entry.name):
                        continue
                    offset = sent.get(entry.name, 0)
                    with contextlib.suppress(OSError), open(entry.path, "rb") as f:
                        f.seek(offset)
                        data = f.read(CHUNK)
                    if data:
                        logs[entry.name] = data
            if not logs:
                return
            self.send({"op": "logs", "world": world, "logs": logs})
            for name, data in logs.items():
                sent[name] = sent.get(name, 0) + len(data)

    def drop(self, world: str) -> None:
        """Ship the rest of ``world``'s logs and remove its folder (the round is closed)."""
        with self._lock:
            try:
                self._ship(world)
            finally:
                path = self._dirs.pop(world, None)
                self._sent.pop(world, None)
                if path is not None:
                    shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Remove this agent's folder (the agent is leaving)."""
        with self._lock:
            self._dirs.clear()
            self._sent.clear()
            shutil.rmtree(self.root, ignore_errors=True)


def write_shipment(folder: Path, logs: Mapping[str, bytes]) -> None:
    """The controller's end: append a shipment to the round's log files in ``folder``."""
    for name, data in logs.items():
        if not isinstance(name, str) or not _LOG_NAME.match(name):
            continue  # only rank logs, and never a path
        with contextlib.suppress(OSError), open(folder / name, "ab") as f:
            f.write(data)
