"""Parent-side process management: the zygote client, the registry of live worlds, cleanup on
SIGTERM/exit, and wait-status text (what is left on the machine is :mod:`libpto._footprint`'s).

One zygote per owner process (re-created after a fork of the owner or if it dies). It is exec'd
(never forked from the owner), so it is safe to start even when the owner already runs threads;
calling :func:`start_zygote` early only moves its ~100 ms start out of the first round.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from libpto._footprint import zygote_log_path
from libpto._lazy_pytest import pytest_api
from libpto._zygote import ZYGOTE_MARKER, recv_msg, send_msg
from libpto.errors import RuntimeAdapterError, SystemCallError

__all__ = [
    "Zygote",
    "describe_wait_status",
    "get_zygote",
    "is_sigterm_cleanup",
    "kill_group",
    "preload_soon",
    "register_world",
    "start_zygote",
    "stop_zygote",
    "unregister_world",
]

_LIBPTO_PARENT = str(Path(__file__).resolve().parent.parent)
RESYNC_WAIT = 1.0  # after an interrupted request, how long its reply may take to arrive
_BOOT = "import sys; sys.path.insert(0, {path!r}); from libpto._zygote import main; main()"


class Zygote:
    """Client side of one zygote process (see :mod:`libpto._zygote`)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.owner = os.getpid()
        self.log = log = zygote_log_path()
        with open(log, "ab") as logf:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _BOOT.format(path=_LIBPTO_PARENT),
                    ZYGOTE_MARKER,
                    str(theirs.fileno()),
                    str(os.getpid()),
                    str(log),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                start_new_session=True,  # terminal signals go to the owner, which decides
                close_fds=True,
            )
        theirs.close()
        self.sock = ours
        self.lock = threading.Lock()
        self.preloaded: set[str] = set()
        self.api_sent = False  # pytest's names, for libpto._lazy_pytest (spawn)
        self.wanted: set[str] = set()
        self.forgotten: list[str] = []  # unlinked segments, told with the next spawn
        self.blocked: set[str] = set()
        self.tainted = ""
        self.culprit = ""
        # not waited for here: the zygote's interpreter starts (~60 ms) while the owner goes on
        # collecting (prestart_zygote); its first answer, a spawn's, says its pid
        self._pid: int | None = None

    @property
    def pid(self) -> int:
        """The zygote's pid (the process the workers fork from; ``proc`` is its keeper)."""
        if self._pid is None:
            self._pid = int(self.request({"op": "ping"})["pid"])
        return self._pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``msg`` and return the reply. A zygote that does not answer within ``timeout``
        seconds is killed and retired (``TimeoutError``): a stuck preload must not hang us."""
        err: OSError | None = None
        reply: Any = None
        with self.lock:
            if self.tainted:
                raise SystemCallError(
                    f"pto-zygote (pid {self.proc.pid}) is retired: {self.tainted}"
                )
            sent = False
            try:
                self.sock.settimeout(timeout)
                send_msg(self.sock, msg)
                sent = True
                reply = recv_msg(self.sock)
            except TimeoutError:
                self._retire(f"no answer to {msg.get('op')!r} within {timeout:g} s")
                raise TimeoutError(
                    f"pto-zygote (pid {self.proc.pid}) did not answer {msg.get('op')!r} within "
                    f"{timeout:g} s (stuck preloading {', '.join(sorted(self.wanted)) or '-'}?); "
                    "it was killed and will be replaced"
                ) from None
            except OSError as exc:
                err = exc
            except BaseException:
                # interrupted mid-exchange (Ctrl-C, a timeout signal): its reply would be taken
                # for the answer to the next request, and workers it started would be nobody's
                self._abandon(sent)
                raise
            finally:
                with contextlib.suppress(OSError):
                    self.sock.settimeout(None)
        if not isinstance(reply, dict):
            raise SystemCallError(
                f"pto-zygote (pid {self.proc.pid}) is gone: {err or 'connection closed'}"
            )
        return reply

    def _abandon(self, sent: bool) -> None:
        """After an interrupted request (lock held): read its reply and kill the workers it
        reports, or, if that does not work out at once, retire this zygote."""
        try:
            if not sent:  # maybe half a message: the stream cannot be trusted any more
                raise ConnectionError("request interrupted while sending")
            self.sock.settimeout(RESYNC_WAIT)
            reply = recv_msg(self.sock)
            if not isinstance(reply, dict):
                raise ConnectionError("connection closed")
            if reply.get("pids"):
                send_msg(self.sock, {"op": "kill", "pids": reply["pids"]})
            if "tainted" in reply:
                self.tainted = str(reply["tainted"])
        except BaseException as exc:
            self._retire(f"a request was interrupted and its reply lost ({exc!r})")

    def _retire(self, reason: str) -> None:
        """Never use this zygote again; kill it (its workers die with it, PDEATHSIG). SIGTERM
        goes to the keeper above it, which kills the zygote and every process re-parented to
        it (what the ops of killed workers started); SIGKILL would leave those behind."""
        self.tainted = reason
        with contextlib.suppress(OSError):
            self.proc.terminate()

    def post(self, msg: dict[str, Any]) -> None:
        """A request without a reply; silently dropped if the zygote is gone."""
        with self.lock, contextlib.suppress(OSError):
            send_msg(self.sock, msg)

    def preload_now(self, modules: Iterable[str], spares: int) -> None:
        """Have ``modules`` imported into the zygote as soon as it can, without waiting for
        it, and ``spares`` spares forked afterwards: the first round's workers then find the
        test module loaded (else it is imported by each worker of round 1 and by the zygote
        before round 2, whose spares are then forked in front of it)."""
        fresh = [m for m in modules if self._loadable(m)]
        if not fresh:
            return
        api = self._api_to_send()
        self.post(
            {
                "op": "preload",
                "preload": fresh,
                "pytest_api": api,
                "sys_path": list(sys.path),
                "spares": spares,
            }
        )
        self.preloaded.update(fresh)
        self.api_sent = self.api_sent or api is not None

    def want(self, module: str) -> None:
        """Ask for ``module`` to be imported into the zygote before its next spawn."""
        if self._loadable(module):
            self.wanted.add(module)

    def _loadable(self, module: str) -> bool:
        """Whether the zygote should be asked to import ``module``: not yet asked, not known
        to start a thread (``blocked``), and not a script (``__main__`` is the owner's own)."""
        return module not in self.preloaded and module not in self.blocked and module != "__main__"

    def _api_to_send(self) -> dict[str, Any] | None:
        """pytest's names for a test module's stand-in (libpto._lazy_pytest), until they were
        sent once; None when already sent, or when this process has no pytest."""
        if self.api_sent or "pytest" not in sys.modules:
            return None
        return pytest_api()

    def spawn(
        self,
        mbox: str,
        ranks: list[dict[str, Any]],
        segments: Iterable[str],
        t_spawn: int,
        timeout: float | None = None,
        *,
        runtime: str | None = None,
        cache_dir: str | None = None,
    ) -> list[int] | None:
        """Fork one worker per spec; None when this zygote is tainted and must be replaced.
        ``TimeoutError`` if it does not answer within ``timeout`` (see :meth:`request`).
        ``runtime`` is the runtime adapter (``module:attribute``) the zygote preloads before
        it forks; :class:`RuntimeAdapterError` if it cannot be used."""
        preload = sorted(self.wanted)
        api = self._api_to_send()
        reply = self.request(
            {
                "op": "spawn",
                "pytest_api": api,
                "mbox": mbox,
                "ranks": ranks,
                "segments": list(segments),
                "t_spawn": t_spawn,
                "preload": preload,
                "forget": self.forgotten,
                "sys_path": list(sys.path),
                "runtime": runtime,
                "cache_dir": cache_dir,
            },
            timeout,
        )
        if self._pid is None and "zygote" in reply:
            self._pid = int(reply["zygote"])
        self.preloaded.update(preload)
        self.api_sent = self.api_sent or api is not None
        self.wanted.clear()
        self.forgotten = []
        if "adapter_error" in reply:
            if "tainted" in reply:  # it ran the adapter's threads: never fork from it again
                self._retire(str(reply["tainted"]))
            raise RuntimeAdapterError(str(reply["adapter_error"]), runtime=runtime)
        if "tainted" in reply:
            self.tainted = str(reply["tainted"])
            self.culprit = str(reply.get("module", ""))
            return None
        if "error" in reply:
            raise SystemCallError(f"pto-zygote could not start workers: {reply['error']}")
        return [int(p) for p in reply["pids"]]

    def kill(self, pids: Iterable[int]) -> None:
        pids = list(pids)
        if self.alive:
            self.post({"op": "kill", "pids": pids})
        else:  # workers die with their zygote (PDEATHSIG); make sure of it
            for pid in pids:
                kill_group(pid)

    def forget(self, segments: Iterable[str]) -> None:
        """The owner unlinked ``segments``: the zygote's janitor need not. Said with the next
        spawn request, not in a message of its own: one wake-up of the zygote less per round
        (a name the janitor would unlink twice is gone already; names are never reused)."""
        self.forgotten.extend(segments)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the socket (the zygote exits, killing anything left) and reap it."""
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.returncode is None:  # not reaped (by `alive`), so the pid is still its own
            start = time.monotonic()
            _wait_exit(self.proc.pid, timeout)
            timeout = max(timeout - (time.monotonic() - start), 0.0)  # one budget, not two
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):  # keep it only if it says something
            if self.log.stat().st_size == 0:
                self.log.unlink()


def _wait_exit(pid: int, timeout: float) -> None:
    """Sleep until child ``pid`` has exited (not reaped), at most ``timeout`` s. Popen.wait
    with a timeout polls with doubling sleeps (0.5 ms ... 50 ms): a keeper that is gone after
    10 ms was seen after 32, at the end of every session. A pidfd wakes us when it exits."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already reaped, or no pidfd: Popen.wait alone
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def kill_group(pid: int) -> None:
    for fn in (os.killpg, os.kill):
        try:
            fn(pid, signal.SIGKILL)
            return
        except OSError:
            continue


_zygote: Zygote | None = None
_retired: list[Zygote] = []
_zlock = threading.Lock()


def get_zygote(blocked: Iterable[str] = ()) -> Zygote:
    """This process's zygote, started on first use (or again after a fork or its death)."""
    global _zygote
    with _zlock:
        if _zygote is None:
            zygote_log_path(sweep=True)  # the logs of dead owners go
        z = _zygote
        if z is None or z.owner != os.getpid() or not z.alive or z.tainted:
            if z is not None and z.owner == os.getpid():
                _retired.append(z)
                z.blocked.update(blocked)
            fresh = Zygote()
            if z is not None and z.owner == os.getpid():
                fresh.blocked.update(z.blocked)
            _zygote = z = fresh
            _install_exit_handlers()
        return z


def start_zygote() -> int:
    """Start the zygote now (e.g. at session start) and return its pid."""
    return get_zygote().pid


def prestart_zygote() -> Zygote | None:
    """Start the zygote now without waiting for it: its interpreter boots while the caller goes
    on (pytest-pto calls this at configure for an explicit ``--pto-*`` option, else when it
    collects the first distributed test). The zygote if this call started it, else None."""
    had = _zygote
    z = get_zygote()
    return z if z is not had else None


def preload_soon(modules: Iterable[str], spares: int = 0) -> None:
    """:meth:`Zygote.preload_now` on this process's zygote, if it has one (none is started)."""
    z = _zygote
    if z is not None and z.owner == os.getpid() and not z.tainted:
        z.preload_now(modules, spares)


def stop_zygote(z: Zygote) -> None:
    """Stop ``z`` now and forget it, if it is still this process's zygote (a later use
    starts a new one): pytest-pto started it early for a session that then collected no
    distributed test. One started by someone else (an outer session of the same process,
    e.g. pytester's in-process runs) is left alone."""
    global _zygote
    with _zlock:
        if _zygote is not z or z.owner != os.getpid():
            return
        _zygote = None
    z.stop()


# -- live worlds: cleaned on SIGTERM and at exit even if nobody closed them ---------------------
_worlds: weakref.WeakSet[Any] = weakref.WeakSet()
_handlers_installed = False


def register_world(world: Any) -> None:
    _worlds.add(world)


def unregister_world(world: Any) -> None:
    _worlds.discard(world)


def _close_all_worlds() -> None:
    for world in list(_worlds):
        with contextlib.suppress(Exception):
            world.close()


def _emergency_cleanup() -> None:
    """Signal-handler safe-ish: kill workers and unlink segments without waiting for anything."""
    for world in list(_worlds):
        with contextlib.suppress(Exception):
            world._emergency()


def _at_exit() -> None:
    _close_all_worlds()
    for z in [*_retired, *([_zygote] if _zygote is not None else [])]:
        if z.owner == os.getpid():
            z.stop()


def is_sigterm_cleanup(handler: Any) -> bool:
    """True for libpto's own SIGTERM handler (kill the workers, unlink the segments, then die
    by SIGTERM): a caller with a handler of its own that cleans up the same way may replace it."""
    return handler is _on_sigterm


def _on_sigterm(signum: int, frame: Any) -> None:
    _emergency_cleanup()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_exit_handlers() -> None:
    """atexit always; a SIGTERM handler only if nobody else installed one (and only from the
    main thread): it cleans up, then dies by SIGTERM as it would have."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_at_exit)
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # pragma: no cover - not the main interpreter
            pass


def describe_wait_status(status: int) -> tuple[str, dict[str, Any]]:
    """('exit code 3' | 'signal 9 (SIGKILL)', details)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"SIG{sig}"
        return f"signal {sig} ({name})", {"signal": sig, "signal_name": name, "exitcode": None}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return f"exit code {code}", {"signal": None, "exitcode": code}
