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
   what an op started in a session of its own is re-parented to it and killed once no worker
   is live (a helper daemon may serve a running op until then);
 - it is the janitor of its owner: when the owner dies (socket EOF or re-parenting), it kills
   every live worker, unlinks the segments the owner registered, and exits.
Workers set PR_SET_PDEATHSIG, so they also die if the zygote itself is killed.

Protocol: length-prefixed pickles over a Unix socket pair. Requests are dicts with an ``op``
key: ``ping``, ``spawn`` (reply: pids), ``kill``, ``forget`` (no reply).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any

__all__ = ["ZYGOTE_MARKER", "main", "recv_msg", "send_msg"]

ZYGOTE_MARKER = "pto-zygote"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_HEADER = struct.Struct("!I")


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


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover
        return 1


class _Server:
    def __init__(self, sock: socket.socket, owner: int) -> None:
        self.sock = sock
        self.owner = owner
        self.live: dict[int, tuple[str, int]] = {}  # pid -> (mailbox name, rank)
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
        while True:
            ready = self.sel.select(timeout=1.0)
            self.reap()
            if os.getppid() != self.owner:
                return self.janitor()
            for key, _ in ready:
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

    # -- spawning -------------------------------------------------------------------------------
    def preload(self, modules: list[str]) -> None:
        for name in modules:
            if name in self.preloaded:
                continue
            self.preloaded.add(name)
            try:
                importlib.import_module(name)
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
        gc.collect()
        gc.freeze()
        return ""

    def spawn(self, msg: dict[str, Any]) -> dict[str, Any]:
        _merge_path(msg.get("sys_path", []))  # workers import the owner's modules
        if msg.get("preload"):
            self.preload(msg["preload"])
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
        for spec in msg["ranks"]:
            mbox.stamp(spec["rank"], Stamp.SPAWN, msg["t_spawn"])
            pid = self._fork(spec, self.adapters.get(runtime) if runtime else None)
            self.live[pid] = (name, spec["rank"])
            pids.append(pid)
        return {"pids": pids}

    def _fork(self, spec: dict[str, Any], adapter: Any = None) -> int:
        zygote = os.getpid()
        pid = os.fork()
        if pid == 0:  # the chip worker
            code = 70
            try:
                self._become_worker(zygote)
                from libpto._worker import worker_main

                code = worker_main(spec, adapter)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        with contextlib.suppress(OSError):  # also in the child: whichever runs first wins
            os.setpgid(pid, pid)
        return pid

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
        os.setpgid(0, 0)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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
                return
            if pid == 0:
                return
            owner = self.live.pop(pid, None)
            if owner is None:  # an orphaned grandchild re-parented to us (subreaper)
                if not self.live:
                    self.kill_orphans()  # its own children come to us in turn
                continue
            with contextlib.suppress(OSError):  # the worker's leftover process group
                os.killpg(pid, signal.SIGKILL)
            if not self.live:  # before the last exit record: the owner then finds nothing left
                self.kill_orphans()
            name, rank = owner
            mbox = self.mailboxes.get(name)
            if mbox is not None:
                mbox.set_exit(rank, status)
                if not any(n == name for n, _ in self.live.values()):
                    mbox.close()
                    del self.mailboxes[name]

    def kill_orphans(self) -> None:
        """Kill our children that are not workers: what an op started in a session of its own
        (escaping its worker's process group) and left behind. Only called when no worker is
        live, since such a process may be a helper that a running op still uses."""
        for pid in _children():
            if pid not in self.live:
                self._killpg(pid)

    def janitor(self) -> None:
        """The owner is gone: nothing it started may outlive it."""
        for pid in list(self.live):
            self._killpg(pid)
        self.kill_orphans()
        deadline = time.monotonic() + 5.0
        while (self.live or _children()) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        for name in self.segments:
            with contextlib.suppress(OSError):
                os.unlink(f"/dev/shm/{name.lstrip('/')}")
        for mbox in self.mailboxes.values():
            mbox.close()


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


def _merge_path(sys_path: list[str]) -> None:
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def main() -> None:
    """Entry point: ``python -c '...main()' pto-zygote <fd> <owner pid> <log path>``."""
    fd, owner, log = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    try:
        _main(fd, owner)
    finally:
        with contextlib.suppress(OSError):  # keep the log only if it says something
            if os.path.getsize(log) == 0:
                os.unlink(log)


def _main(fd: int, owner: int) -> None:
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner decides; Ctrl-C is its business
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    import libpto._mailbox
    import libpto._worker

    _ = libpto._mailbox
    gc.collect()
    gc.freeze()
    server = _Server(sock, owner)
    if _thread_count() > 1:  # forking now would be unsafe: refuse every spawn, say why
        server.tainted = "importing libpto started a thread in the zygote"
    if os.getppid() != owner:
        return
    server.serve()
