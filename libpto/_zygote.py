"""The zygote: a clean single-threaded process that forks chip workers on request.

Why: a chip worker must start in a few milliseconds, and forking the test process itself is
unsafe (it may run threads: pytest plugins, xdist, a runtime). The zygote is exec'd once as a
fresh interpreter (``pto-zygote`` in its argv, which the leak checker exempts), preloads libpto
(and, on request, the modules that hold ops), freezes its heap for cheap copy-on-write forks,
and then only forks. It never starts a thread; a preload that starts one taints it, and a
tainted zygote refuses further spawns (the parent then starts a fresh one).

Jobs beyond forking, because the zygote is the workers' real parent:
 - it reaps them and writes each exit record (wait status) into the world's mailbox, ringing
   the doorbell, so the world owner learns of a crash within microseconds;
 - it is a child subreaper and kills each worker's process group, so grandchildren die too;
 - it is the janitor of its owner: when the owner dies (socket EOF, or its pidfd), it kills
   every live worker, unlinks the segments the owner registered, and exits.
Workers set PR_SET_PDEATHSIG, so they also die if the zygote itself is killed.

Every descendant of a rank dies with the rank, whatever process group or session it put
itself in: each worker is a child subreaper too, so what an op leaves behind (a helper daemon,
a double-forked or ``setsid`` process) is re-parented to its worker while the worker lives,
and the worker kills all its children before it exits. A worker that dies abruptly leaves
them to the zygote, whose non-worker children are therefore always orphans of dead workers:
it kills them as soon as it reaps a worker.

And the reaper of last resort, for SIGKILL of both the owner and the zygote: the process the
owner starts is a tiny *keeper* (same argv, so the leak checker knows it) that forks the
zygote, is a child subreaper above it and outlives the owner. When the owner dies (pidfd) or
the zygote exits, the keeper gives the zygote a few seconds to clean up, kills it, then kills
every process re-parented to it -- the grandchildren of killed workers, in any session -- until
none is left, and exits. The zygote has PR_SET_PDEATHSIG on the keeper, so killing the keeper
(``Zygote._retire``) still takes the zygote and, through theirs, its workers.

Spares: after a world's workers have all exited (the round is over, the owner is busy with
its report), the zygote forks as many *spares* as that world had ranks. A spare is a fresh
fork that has done everything a worker does before it knows its rank (death signal, process
group, subreaper, closing the zygote's descriptors) and then blocks on a socket pair; spares
are forked, start and wait as SCHED_BATCH tasks (``_set_policy``); a spawn hands
each rank's spec to a spare instead of forking, so the fork and its page faults are off the
round's critical path. A spare has run nothing: it is as fresh as a fork at spawn time. Spares
carry the zygote's generation, which any preload, adapter or ``sys.path`` change bumps; a
stale spare is killed, never used (a worker must import nothing after the fork). Spares keep
``pto-zygote`` in their title: like the zygote, they live for the session.

Protocol: length-prefixed pickles over a Unix socket pair. Requests are dicts with an ``op``
key: ``ping``, ``spawn`` (reply: pids and the zygote's own pid), ``kill``, ``forget`` (no
reply).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import pickle
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from libpto._lazy_pytest import configure as configure_lazy_pytest
from libpto._lazy_pytest import import_op_module

__all__ = ["ZYGOTE_MARKER", "main", "recv_msg", "send_msg"]

ZYGOTE_MARKER = "pto-zygote"
#: imported by the zygote before it forks anything: every module a chip worker needs on
#: libpto's default path, so that no worker imports (or executes) a module after the fork --
#: it would do so again in every rank of every round (tests/world checks that it imports
#: nothing)
PRELOAD = (
    "libpto._mailbox",
    "libpto._worker",
    "libpto._worker_frames",
    "libpto._comm",
    "libpto._faults",
    "libpto._config",
    "libpto.runtime",
    "libpto.errors",
    "atexit",  # weakref.finalize imports it on first use (the Runtime's finalizer)
)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_HEADER = struct.Struct("!I")
MAX_SPARES = 16  # pre-forked workers kept idle between rounds (see Spares above)


def send_msg(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> Any | None:
    """The next message, or None at EOF (the peer is gone)."""
    head = _recv_exact(sock, _HEADER.size)
    if head is None:
        return None
    body = _recv_exact(sock, _HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


_PRCTL: Any = None  # libc's prctl, looked up once: every forked child inherits it


def _prctl(option: int, value: int) -> None:
    global _PRCTL
    if _PRCTL is None:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    _PRCTL(option, value, 0, 0, 0)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover
        return 1


class _Server:
    def __init__(self, sock: socket.socket, owner: int, parent: int | None = None) -> None:
        self.sock = sock
        self.owner = owner
        self.parent = owner if parent is None else parent  # the keeper, normally
        try:
            self.owner_fd: int | None = os.pidfd_open(owner)
        except OSError:  # already gone (or no pidfd): socket EOF and getppid still tell
            self.owner_fd = None
        self.live: dict[int, tuple[str, int]] = {}  # pid -> (mailbox name, rank)
        #: idle pre-forked workers: pid -> (our end of its spec socket, generation)
        self.spares: dict[int, tuple[socket.socket, int]] = {}
        self.generation = 0  # bumped by whatever a spare forked earlier would lack
        self.spare_count = 0  # ranks of the last spawn: how many spares the next round needs
        self.mailboxes: dict[str, Any] = {}  # name -> Mailbox (mapped while it has live workers)
        self.segments: set[str] = set()  # unlinked by the janitor if the owner dies
        self.tainted = ""
        self.culprit = ""  # the preloaded module that started a thread
        self.preloaded: set[str] = set()
        self.adapters: dict[str, Any] = {}  # runtime adapter spec -> its preloaded instance
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel = selectors.DefaultSelector()

    # -- main loop ------------------------------------------------------------------------------
    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        if self.owner_fd is not None:  # EOF alone misses an owner whose forks keep the socket
            self.sel.register(self.owner_fd, selectors.EVENT_READ)
        while True:
            ready = self.sel.select(timeout=1.0)
            self.reap()
            if os.getppid() != self.parent:
                return self.janitor()
            for key, _ in ready:
                if key.fileobj is self.owner_fd:
                    return self.janitor()
                if key.fileobj is self.sock:
                    msg = recv_msg(self.sock)
                    if msg is None:
                        return self.janitor()
                    try:
                        self.handle(msg)
                    except OSError:  # the owner went away while we answered
                        return self.janitor()
                else:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
            self.reap()

    def handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "ping":
            send_msg(self.sock, {"pid": os.getpid()})
        elif op == "spawn":
            send_msg(self.sock, self.spawn(msg))
        elif op == "kill":
            for pid in msg["pids"]:
                if pid in self.live:
                    self._killpg(pid)
        elif op == "forget":
            self.segments.difference_update(msg["segments"])
        elif op == "preload":  # no answer: the owner goes on collecting
            self._take_imports(msg)
            self.spare_count = max(self.spare_count, min(int(msg.get("spares", 0)), MAX_SPARES))
            self.replenish()

    # -- spawning -------------------------------------------------------------------------------
    def preload(self, modules: list[str]) -> None:
        for name in modules:
            if name in self.preloaded:
                continue
            self.preloaded.add(name)
            self.generation += 1
            try:
                import_op_module(name)  # a test module's `import pytest`: libpto._lazy_pytest
            except BaseException as exc:  # a module that fails here is imported by the worker
                print(f"pto-zygote: preload {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if _thread_count() > 1:
                self.tainted = f"preloading module {name} started a thread"
                self.culprit = name
                return
        gc.collect()
        gc.freeze()  # forked workers then do not dirty the zygote's heap pages on first gc

    def preload_adapter(self, spec: str, cache_dir: str | None) -> str:
        """Instantiate the runtime adapter ``spec`` and run its ``preload`` (once per
        session): heavy imports are then paid once, not once per rank per round. It must not
        leave a thread behind (Python's or a C library's), since forking a threaded process
        can hang the child. Returns "" or the reason the adapter cannot be used."""
        if spec in self.adapters:
            return ""
        from libpto._worker import load_adapter

        try:
            adapter = load_adapter(spec, cache_dir)
            adapter.preload()
        except BaseException as exc:
            traceback.print_exc()
            return f"runtime adapter {spec}: preload failed: {type(exc).__name__}: {exc}"
        threads = threading.active_count()
        tasks = _thread_count()
        if threads > 1 or tasks > 1:
            self.tainted = f"runtime adapter {spec}: preload() started a thread"
            self.culprit = ""
            return (
                f"runtime adapter {spec}: preload() left {max(threads, tasks) - 1} thread(s) "
                "running in the forking process (threading.active_count()="
                f"{threads}, /proc/self/task: {tasks}); a fork of a threaded process can hang. "
                "preload() may import and load, but must not start threads"
            )
        self.adapters[spec] = adapter
        self.generation += 1
        gc.collect()
        gc.freeze()
        return ""

    def _take_imports(self, msg: dict[str, Any]) -> None:
        """What a spawn or a preload message says about imports: pytest's names, the owner's
        path, the modules to import before the next fork."""
        if msg.get("pytest_api"):  # the names a test module's pytest stand-in checks
            configure_lazy_pytest(msg["pytest_api"])
        if _merge_path(msg.get("sys_path", [])):  # workers import the owner's modules
            self.generation += 1
        if msg.get("preload"):
            self.preload(msg["preload"])

    def spawn(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.segments.difference_update(msg.get("forget", ()))  # what the owner unlinked
        self._take_imports(msg)
        if self.tainted:
            return {"tainted": self.tainted, "module": self.culprit}
        runtime = msg.get("runtime")
        if runtime:
            problem = self.preload_adapter(runtime, msg.get("cache_dir"))
            if problem:
                reply = {"adapter_error": problem}
                if self.tainted:
                    reply["tainted"] = self.tainted
                return reply
        from libpto._mailbox import Mailbox, Stamp

        name = msg["mbox"]
        try:
            mbox = self.mailboxes.get(name) or Mailbox.attach(name)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        self.mailboxes[name] = mbox
        self.segments.update(msg.get("segments", ()))
        pids = []
        self.spare_count = min(len(msg["ranks"]), MAX_SPARES)
        for spec in msg["ranks"]:
            slot = spec.get("slot", spec["rank"])  # the mailbox slot (a host slice's local rank)
            mbox.stamp(slot, Stamp.SPAWN, msg["t_spawn"])
            pid = self._hand_to_spare(spec)
            if pid is None:
                pid = self._fork(spec, self.adapters.get(runtime) if runtime else None)
            self.live[pid] = (name, slot)
            pids.append(pid)
        return {"pids": pids, "zygote": os.getpid()}

    def _hand_to_spare(self, spec: dict[str, Any]) -> int | None:
        """Give ``spec`` to a current spare; its pid, or None when there is none."""
        while self.spares:
            pid, (sock, generation) = self.spares.popitem()
            with sock:
                if generation == self.generation:
                    with contextlib.suppress(OSError):  # it died idle: the reaper collects it
                        send_msg(sock, spec)
                        return pid
            self._killpg(pid)  # forked before a preload (it would import after the fork)
        return None

    def _drop_spare(self, pid: int) -> None:
        sock, _ = self.spares.pop(pid)
        sock.close()
        self._killpg(pid)

    def replenish(self) -> None:
        """Fork the spares the next round will want (called when no world is running)."""
        if self.tainted or self.live or os.getppid() != self.parent:
            return
        for pid in [p for p, (_, g) in self.spares.items() if g != self.generation]:
            self._drop_spare(pid)
        if len(self.spares) >= self.spare_count:
            return
        # forked as batch tasks (a child inherits the policy), by a batch task: neither the
        # forks nor the spares' start-up preempt the owner, which is reporting the round and
        # leasing the next one on the other CPU (_set_policy)
        _set_policy(os.SCHED_BATCH)
        try:
            while len(self.spares) < self.spare_count:
                ours, theirs = socket.socketpair()
                try:
                    pid = self._fork_spare(ours, theirs)
                except OSError:  # spares only save time: the next spawn forks what it needs
                    ours.close()
                    traceback.print_exc()
                    return
                finally:
                    theirs.close()
                self.spares[pid] = (ours, self.generation)
        finally:
            _set_policy(os.SCHED_OTHER)  # spawns are answered at normal priority

    def _fork_spare(self, ours: socket.socket, theirs: socket.socket) -> int:
        def spare(zygote: int) -> int:
            ours.close()
            self._become_worker(zygote)
            from libpto._mailbox import set_proctitle

            set_proctitle(f"{ZYGOTE_MARKER} spare of {zygote}")
            from libpto._worker import worker_main

            spec = recv_msg(theirs)  # waited for as a batch task (born one: replenish)
            _set_policy(os.SCHED_OTHER)
            if spec is None:
                return 0  # the zygote let it go unused
            theirs.close()
            runtime = spec.get("runtime")
            adapter = self.adapters.get(runtime) if runtime else None
            return worker_main(spec, adapter)

        return _fork_child(spare, self.generation)

    def _fork(self, spec: dict[str, Any], adapter: Any = None) -> int:
        def worker(zygote: int) -> int:
            self._become_worker(zygote)
            from libpto._worker import worker_main

            return worker_main(spec, adapter)

        return _fork_child(worker, self.generation)

    def _become_worker(self, zygote: int) -> None:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.sel.close()
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for mbox in self.mailboxes.values():
            mbox.close()
        for sock, _ in self.spares.values():  # the other spares' ends are the zygote's alone
            sock.close()
        if self.owner_fd is not None:
            os.close(self.owner_fd)
        os.setpgid(0, 0)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # orphans of the op's processes (any session) come to this worker, not the zygote
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if os.getppid() != zygote:  # the zygote died before the death signal was armed
            os._exit(71)

    # -- reaping and killing ----------------------------------------------------------------------
    def _killpg(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            spare = self.spares.pop(pid, None)
            if spare is not None:  # a spare died idle (killed from outside): forget it
                spare[0].close()
                continue
            owner = self.live.pop(pid, None)
            if owner is None:  # an orphaned grandchild re-parented to us (subreaper)
                self.kill_orphans()  # its own children come to us in turn
                continue
            with contextlib.suppress(OSError):  # the worker's leftover process group
                os.killpg(pid, signal.SIGKILL)
            # before the exit record: the owner then finds nothing of this rank left
            self.kill_orphans()
            name, rank = owner
            mbox = self.mailboxes.get(name)
            if mbox is not None:
                mbox.set_exit(rank, status)
                if not any(n == name for n, _ in self.live.values()):
                    mbox.close()
                    del self.mailboxes[name]
        if not self.live:
            self.replenish()

    def kill_orphans(self) -> None:
        """Kill our children that are not workers: what an op started (in any process group or
        session) and left behind when its worker died. Live workers are subreapers, so the
        orphans of a *running* op go to its worker, never here: every non-worker child of
        ours belongs to a dead rank and can go at once."""
        for pid in _children():
            if pid not in self.live and pid not in self.spares:
                self._killpg(pid)

    def janitor(self) -> None:
        """The owner is gone: nothing it started may outlive it."""
        self.spare_count = 0  # and no spare is forked again
        for pid in list(self.live):
            self._killpg(pid)
        for pid in list(self.spares):
            self._drop_spare(pid)
        self.kill_orphans()
        deadline = time.monotonic() + 5.0
        while (self.live or _children()) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.001)  # SIGKILLed: gone within a millisecond or two (the owner waits)
        from libpto._footprint import unlink_segment

        for name in self.segments:
            unlink_segment(name)
        for mbox in self.mailboxes.values():
            mbox.close()


def kill_descendants(deadline: float = 5.0) -> None:
    """Kill every child of this process (a subreaper, so orphaned descendants are children
    too), in whatever process group or session, and reap them; repeat as the children of the
    killed are re-parented to us, until none is left or ``deadline`` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        kids = _children()
        for pid in kids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # a group it leads (setsid/setpgid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not _children() or time.monotonic() > end:
            return
        time.sleep(0.005)


def _children() -> list[int]:
    """Pids of this process's children (zombies included)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: scan every process
        pass
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                    out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _set_policy(policy: int) -> None:
    """Spares are forked, start and wait for their spec as SCHED_BATCH tasks, and are normal
    ones again once they have it (the zygote is a batch task only while it forks them). Why:
    a normal task that is woken or forked preempts the running one on its CPU. The zygote's
    write to a spare's socket wakes the spare on the zygote's own CPU, which then lost it
    before it wrote the next rank's spec (~1 ms per rank on 2 CPUs); and the forks between two
    rounds took the owner's CPU while it reported and leased. A batch task's wake-up never
    preempts (bench_rounds: 2-rank round 9.9 -> 9.3 ms, and a tighter spread). Moving between
    the two normal policies needs no privilege; where it is refused anyway (a seccomp profile),
    everything runs as a normal task, as before."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


def _fork_child(body: Callable[[int], int], generation: int = 0) -> int:
    """Fork a child that runs ``body(zygote pid)`` and exits with its code, after killing
    whatever it started (what the op started dies with the rank); the child's pid."""
    from libpto._worker import snapshot_before_fork  # preloaded: no import here

    snapshot_before_fork(generation)  # what the child would otherwise copy pages to take
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = body(zygote)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                kill_descendants(deadline=2.0)
            finally:
                os._exit(code)
    with contextlib.suppress(OSError):  # also in the child: whichever runs first wins
        os.setpgid(pid, pid)
    return pid


def _merge_path(sys_path: list[str]) -> bool:
    """Put the owner's path entries in front of ours; whether any was new."""
    changed = False
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
            changed = True
    return changed


def main() -> None:
    """Entry point: ``python -c '...main()' pto-zygote <fd> <owner pid> <log path>``.

    This process is the keeper; it forks the zygote (see the module docstring)."""
    fd, owner, log = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner decides; Ctrl-C is its business
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        owner_fd = os.pidfd_open(owner)
    except OSError:
        owner_fd = -1  # the owner is already gone: nothing to serve
    keeper = os.getpid()
    zygote = os.fork() if owner_fd >= 0 else 0
    if owner_fd >= 0 and zygote == 0:
        code = 0
        try:
            os.close(owner_fd)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the keeper killed: so are we
            if os.getppid() == keeper:
                _main(fd, owner, keeper)
        except BaseException:
            traceback.print_exc()
            code = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    code = 0
    try:
        os.close(fd)  # only the zygote talks to the owner: its exit must be the owner's EOF
        if owner_fd >= 0:
            _keep(owner_fd, zygote)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        with contextlib.suppress(OSError):  # keep the log only if it says something
            if os.path.getsize(log) == 0:
                os.unlink(log)
        sys.stdout.flush()
        sys.stderr.flush()
        # nothing to finalize, and the owner waits for this exit at the end of its session
        os._exit(code)


def _keep(owner_fd: int, zygote: int) -> None:
    """The keeper's loop: wait for the owner's death or the zygote's exit, then leave nothing
    behind (see the module docstring)."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    terminated = False

    def on_term(*_: Any) -> None:  # Zygote._retire: kill the zygote and everything below now
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, on_term)
    zygote_done = False

    def reap() -> None:
        nonlocal zygote_done
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            zygote_done = zygote_done or pid == zygote

    owner_dead = False
    while not zygote_done and not owner_dead and not terminated:
        ready, _, _ = select.select([owner_fd, wake_r], [], [], 1.0)
        owner_dead = owner_fd in ready
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 512):
                pass
        reap()
    if owner_dead and not zygote_done and not terminated:  # it unlinks the owner's segments
        deadline = time.monotonic() + 5.0
        while not zygote_done and time.monotonic() < deadline:
            time.sleep(0.01)
            reap()
    if not zygote_done:
        with contextlib.suppress(OSError):
            os.kill(zygote, signal.SIGKILL)
    kill_descendants(deadline=10.0)


def _main(fd: int, owner: int, parent: int | None = None) -> None:
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner decides; Ctrl-C is its business
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    for name in PRELOAD:
        importlib.import_module(name)
    from libpto._worker import arm_faulthandler

    arm_faulthandler()  # every worker inherits the handlers (libpto._worker.prepare)
    gc.collect()
    gc.freeze()
    server = _Server(sock, owner, parent)
    if _thread_count() > 1:  # forking now would be unsafe: refuse every spawn, say why
        server.tainted = "importing libpto started a thread in the zygote"
    if os.getppid() != server.parent:
        return
    server.serve()
