"""Report outputs (tables, traces, report.md) written to what the user named, never replaced.

What a path names decides how it is written:

- a regular file, or nothing yet: a temp file in the same directory is renamed over it, so
  readers never see half a file and a failed write leaves the old file untouched. The new
  file keeps the old file's permission bits, or gets the usual ``0666 & ~umask`` (mkstemp's
  0600 would make CI artifacts unreadable to other users);
- a symlink: followed to its final target, which is then written as above (the link stays a
  link, the rename happens next to the target);
- a FIFO: opened for writing and written in place (``--output >(gzip > r.gz)``, a pipe to
  another tool). Nobody reading is an error after ``fifo_wait_s`` seconds, not a hang;
- a character device (``/dev/null``, a tty): written in place. Renaming a file over it
  would destroy the device node (which root can do). ``/dev/stdout`` and other ``/proc``
  magic links are written in place whatever they lead to (a pipe, a tty, a redirected file);
- anything else (a directory, a block device, a socket) is refused.

Every failure is one :class:`OutputError` (an ``OSError``) naming the path and the cause, e.g.
``/dev/full: cannot write: No space left on device``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["FIFO_WAIT_S", "OutputError", "append_text", "write_text_atomic"]

#: How long a FIFO output waits for a reader before giving up.
FIFO_WAIT_S = 10.0
_FIFO_POLL_S = 0.05


class OutputError(OSError):
    """An output path that cannot be written; the message names the path and the cause."""

    def __init__(self, err: int | None, message: str) -> None:
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _cause(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _open_fifo(path: Path, wait_s: float) -> int:
    """Open a FIFO for writing without blocking forever when nobody reads it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            if time.monotonic() >= deadline:
                raise OutputError(
                    errno.ENXIO,
                    f"{path}: cannot write: FIFO has no reader (waited {wait_s:g} s)",
                ) from None
            time.sleep(_FIFO_POLL_S)
            continue
        # a reader is there: from now on plain blocking writes (the reader sets the pace)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return fd


def _write_in_place(path: Path, data: bytes, mode: int, wait_s: float) -> None:
    try:
        if stat.S_ISFIFO(mode):
            fd = _open_fifo(path, wait_s)
        else:  # O_TRUNC: a regular file behind a magic link; ignored by devices
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(exc.errno, f"{path}: cannot write: {_cause(exc)}") from None


def _replace(target: Path, data: bytes, old_mode: int | None) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(
            exc.errno, f"{target}: cannot write: {_cause(exc)} (in directory {target.parent})"
        ) from None
    try:
        mode = stat.S_IMODE(old_mode) if old_mode is not None else 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(exc.errno, f"{target}: cannot write: {_cause(exc)}") from None
        raise


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, fifo_wait_s: float = FIFO_WAIT_S
) -> Path:
    """Write ``text`` (UTF-8) to what ``path`` names (see the module docstring).

    Returns the path actually written (a symlink's target). The parent directory must exist.
    Raises :class:`OutputError` naming the path and the cause.
    """
    named = Path(path)
    data = text.encode("utf-8")
    target = Path(os.path.realpath(named)) if named.is_symlink() else named
    shown = named if target == named else Path(f"{named} -> {target}")
    try:
        st: os.stat_result | None = os.stat(named)  # follows every link, /proc's included
    except FileNotFoundError:
        st = None  # nothing there yet, or a dangling symlink: create its target
    except OSError as exc:
        raise OutputError(exc.errno, f"{shown}: cannot write: {_cause(exc)}") from None
    if st is None or (stat.S_ISREG(st.st_mode) and _same_file(target, st)):
        if not target.parent.is_dir():
            raise OutputError(
                errno.ENOENT, f"{shown}: cannot write: directory {target.parent} does not exist"
            )
        _replace(target, data, None if st is None else st.st_mode)
        return target
    if stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        # a FIFO, a device, or a file behind a /proc magic link (``/dev/stdout`` redirected
        # to a file, whose realpath names no file): write what the name opens, in place
        try:
            _write_in_place(named, data, st.st_mode, fifo_wait_s)
        except OutputError as exc:
            raise OutputError(exc.errno, exc.message.replace(str(named), str(shown), 1)) from None
        return target
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else _kind(st.st_mode)
    raise OutputError(
        errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
        f"{shown}: cannot write: is {kind}, expected a file, a FIFO or a character device",
    )


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def append_text(
    path: str | os.PathLike[str], text: str, *, fifo_wait_s: float = FIFO_WAIT_S
) -> Path:
    """Append ``text`` (UTF-8) to a shared file (``$GITHUB_STEP_SUMMARY``), created if missing.

    Appends are not atomic renames (other steps append to the same file); the same rules as
    :func:`write_text_atomic` otherwise: symlinks followed, a FIFO written with a bounded
    wait for its reader, a directory refused, every failure one :class:`OutputError`.
    """
    named = Path(path)
    data = text.encode("utf-8")
    try:
        st: os.stat_result | None = os.stat(named)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(exc.errno, f"{named}: cannot append: {_cause(exc)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(errno.EISDIR, f"{named}: cannot append: is a directory")
    try:
        if st is not None and stat.S_ISFIFO(st.st_mode):
            fd = _open_fifo(named, fifo_wait_s)
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fd = os.open(named, flags, 0o666)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    except OutputError as exc:
        raise OutputError(exc.errno, exc.message.replace("cannot write", "cannot append")) from None
    except OSError as exc:
        raise OutputError(exc.errno, f"{named}: cannot append: {_cause(exc)}") from None
    return named


def _kind(mode: int) -> str:
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
