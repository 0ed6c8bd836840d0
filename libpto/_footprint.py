"""What libpto leaves on the machine, and the one rule that says when it is garbage.

Everything a process of ours creates outside itself is named after the pid that must remove it:
shared-memory segments ``/dev/shm/pto-<kind>-<pid>-<hex>``, temporary folders
``<tmp>/pto-<kind>-<pid>-XXXXXXXX`` (round logs, worker caches), the zygote's log
``<tmp>/pto-zygote-<pid>.log``. An owner that is SIGKILLed never cleans up, so a later process
removes what belongs to a dead owner -- and never anything of a live one, which on a shared
machine is usually another session's.

Why one module: "dead" must mean the same thing to the stale-segment sweep, the temp-folder
sweep, the device holder files, the World's watch of its ranks and the test suite's leak
check. The rule (also in C, ``pto_sys``): a pid is alive iff ``kill(pid, 0)`` succeeds or
fails with EPERM (someone else's process), *and* ``/proc/<pid>/stat`` does not show it as a
zombie (``Z``) or dead (``X``): a zombie never cleans up again. A pid <= 0 is no process.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from libpto._ffi import lib
from libpto.errors import InvalidArgument

__all__ = [
    "SHM_DIR",
    "cleanup_stale",
    "new_name",
    "owner_temp_dir",
    "parse_name",
    "pid_alive",
    "sweep_dead_owner_files",
    "unlink_segment",
    "zygote_log_path",
]

SHM_DIR = "/dev/shm"
DEAD_STATES = frozenset({b"Z", b"X", b"x"})  # /proc/<pid>/stat state field of a finished process
_KIND_RE = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")
_NAME_RE = re.compile(
    r"^pto-(?P<kind>[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)-(?P<pid>[0-9]+)-(?P<rand>[0-9a-f]+)$"
)
_TEMP_RE = r"pto-{kind}-(\d+)-[a-z0-9_]{{8}}"  # tempfile.mkdtemp(prefix=f"pto-{kind}-{pid}-")
_ZYGOTE_LOG_RE = r"pto-zygote-(\d+)\.log"
_swept: set[str] = set()


# ---------------------------------------------------------------------------------- liveness


def pid_alive(pid: int) -> bool:
    """THE liveness rule (see the module docstring): True while ``pid`` may still clean up."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # exists (kill said so) but unreadable: count it alive, never remove its things
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return not (state and state[0] in DEAD_STATES)


# ---------------------------------------------------------------------------------- segments


def new_name(kind: str) -> str:
    """A fresh shared-memory name ``pto-<kind>-<pid>-<hex>`` owned by this process.

    The pid is the process responsible for unlinking the segment; :func:`cleanup_stale` removes
    it once that process is dead.
    """
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise InvalidArgument(
            f"new_name: kind={kind!r} must be letters, digits and '_' (inner '-' allowed)",
            name="PTO_E_INVALID_ARG",
        )
    name = f"pto-{kind}-{os.getpid()}-{os.urandom(6).hex()}"
    if len(name) > int(lib.PTO_COMM_NAME_MAX):
        raise InvalidArgument(
            f"new_name: kind={kind!r} is too long (name limit {int(lib.PTO_COMM_NAME_MAX)})",
            name="PTO_E_INVALID_ARG",
        )
    return name


def parse_name(name: str) -> tuple[str, int] | None:
    """``(kind, owner pid)`` of a name of our scheme, ``None`` for any other name."""
    m = _NAME_RE.match(name.lstrip("/"))
    if not m:
        return None
    return m.group("kind"), int(m.group("pid"))


def unlink_segment(name: str) -> bool:
    """Remove ``/dev/shm/<name>``; False if it was not there (or not ours to remove)."""
    try:
        os.unlink(os.path.join(SHM_DIR, name.lstrip("/")))
    except OSError:
        return False
    return True


def cleanup_stale(prefix: str = "pto-") -> list[str]:
    """Unlink ``/dev/shm`` segments of our naming scheme whose owner pid is dead.

    Only names that start with ``prefix`` *and* parse as ``pto-<kind>-<pid>-<hex>`` are
    considered, and only those whose owner is gone (or a zombie) are removed: a live owner's
    segment, or any other file, is never touched. Returns the removed names, sorted.
    """
    if not isinstance(prefix, str):
        raise InvalidArgument(
            f"cleanup_stale: prefix={prefix!r} must be a string", name="PTO_E_INVALID_ARG"
        )
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this system
        return []
    removed: list[str] = []
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        parsed = parse_name(entry)
        # owner pid 0 is no process of ours: such a name was not made by new_name, leave it
        if parsed is None or parsed[1] <= 0 or pid_alive(parsed[1]):
            continue
        try:
            os.unlink(os.path.join(SHM_DIR, entry))
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            continue  # someone else cleaned it, or not ours to remove
        removed.append(entry)
    return sorted(removed)


# ---------------------------------------------------------------------------------- owner files


def sweep_dead_owner_files(directory: Path, pattern: str) -> None:
    """Remove the files/dirs in ``directory`` whose whole name matches ``pattern`` (a regex
    whose group 1 is the owner pid) and whose owner died without cleaning up (SIGKILL)."""
    rx = re.compile(pattern)
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for path in entries:
        match = rx.fullmatch(path.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        if path.is_dir():
            import shutil  # owner side only (_tmp_root says why)

            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


def owner_temp_dir(kind: str) -> Path:
    """A new temporary folder ``pto-<kind>-<pid>-XXXXXXXX`` (per-round logs, caches), named
    after this process so that a later process removes it if this one is killed before its
    own cleanup; the first call of each ``kind`` sweeps those of dead owners."""
    import tempfile  # owner side only, like shutil above

    tmp = _tmp_root()
    if kind not in _swept:
        _swept.add(kind)
        sweep_dead_owner_files(tmp, _TEMP_RE.format(kind=re.escape(kind)))
    return Path(tempfile.mkdtemp(prefix=f"pto-{kind}-{os.getpid()}-", dir=tmp))


def _tmp_root() -> Path:
    """The temporary folder (``tempfile.gettempdir``). tempfile, shutil and secrets are not
    imported at module level: this module is in every zygote, and what the zygote imports,
    every chip worker it forks carries (a larger heap and more mappings to copy at each fork
    and to unmap at each exit); none of them is needed there."""
    import tempfile

    return Path(tempfile.gettempdir())


def zygote_log_path(sweep: bool = False) -> Path:
    """This process's zygote log, ``<tmp>/pto-zygote-<pid>.log``; with ``sweep``, first
    remove the logs of dead owners."""
    tmp = _tmp_root()
    if sweep:
        sweep_dead_owner_files(tmp, _ZYGOTE_LOG_RE)
    return tmp / f"pto-zygote-{os.getpid()}.log"
