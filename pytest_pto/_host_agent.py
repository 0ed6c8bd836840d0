"""The host agent: the one process ``mpirun`` starts on each host of a multi-host session.

Started once per session (``pytest_pto._launcher``), it is on its host what the controller is
on one machine: it leases the host's devices from the host's own lock directory, creates the
round's comm window in the host's ``/dev/shm`` and mirrors it to the other hosts' agents over
TCP (:mod:`libpto._comm_bridge`), and runs the host's slice of each round as a
``libpto`` World (rank processes forked by the agent's own zygote, so fresh ranks per round
cost what they cost on one machine). The World names its ranks by global number and its host
(``WorldConfig.rank_base``, ``host``), so failures reach the controller as on one machine. The
ranks' logs stay on the host and are shipped to the controller over the connection
(:mod:`pytest_pto._host_logs`); their timestamps are rebased onto the controller's clock
(:mod:`pytest_pto._host_clock`).

Nothing outlives the controller: the agent serves one TCP connection to it, and when that
connection ends for any reason (pytest exited, was killed, the network went) it kills every
rank it started, releases every lease and exits -- after which ``mpirun`` sees its job end.

Protocol: length-prefixed pickles (``libpto._zygote.send_msg``); requests carry an ``id`` that
the reply repeats. Only the controller that started the agent can talk to it (it passes a
random token through ``mpirun -x``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from libpto._zygote import recv_msg, send_msg
from pytest_pto._host_clock import ClockSync, injected_skew_ns
from pytest_pto._host_logs import LogShipper, agent_log_root

__all__ = ["main"]

TEARDOWN_JOIN_S = 5.0  # how long teardown waits for request threads to see their ranks die
HOST_RANK_ENVS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")


def interface_of(addr: str) -> str | None:
    """The name of the network interface holding the IPv4 ``addr`` (None if none does)."""
    import fcntl
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                res = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            if socket.inet_ntoa(res[20:24]) == addr:
                return name
    return None


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles, else the same class of error without what does not."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        pass
    details = getattr(exc, "details", None)
    if isinstance(details, dict):
        details.pop("error", None)
        with contextlib.suppress(Exception):
            pickle.dumps(exc)
            return exc
    return RuntimeError(f"{type(exc).__qualname__}: {exc}")


class Agent:
    def __init__(self, ctl: socket.socket, index: int, name: str, listener: socket.socket):
        self.ctl = ctl
        self.index = index
        self.name = name
        self.listener = listener
        self.send_lock = threading.Lock()
        self.worlds: dict[str, Any] = {}
        self.mirrors: dict[str, Any] = {}
        self.pumps: dict[str, Any] = {}
        self.windows: dict[str, str] = {}
        self.leases: dict[str, Any] = {}
        self.peers: dict[int, socket.socket] = {}
        self.peer_locks: dict[int, threading.Lock] = {}
        #: request threads still running, with their world's id: a World is closed only once
        #: no other thread is inside it (see quiesce)
        self.busy: dict[threading.Thread, str | None] = {}
        #: this host's address towards the controller, and the interface that holds it
        self.addr = str(ctl.getsockname()[0])
        self.iface = interface_of(self.addr)
        #: this host's clock against the controller's; the ranks' logs, shipped to it
        self.clock = ClockSync(self.send_built, injected_skew_ns(name), f"pto-host-agent {name}")
        self.logs = LogShipper(agent_log_root(), self.send)

    # -- plumbing ------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self.send_built(lambda: message)

    def send_built(self, make: Any) -> None:
        """Send ``make()``, built once the connection is ours (a clock ping's send stamp)."""
        with self.send_lock:
            send_msg(self.ctl, make())

    def reply(self, msg: dict[str, Any], **answer: Any) -> None:
        answer["id"] = msg.get("id")
        if msg.get("world"):  # the round's log lines first: the answer may be its failure
            self.logs.ship(msg["world"])
        self.send(answer)

    def fail(self, msg: dict[str, Any], exc: BaseException) -> None:
        self.reply(msg, error=_portable(exc), trace=traceback.format_exc())

    def in_thread(self, msg: dict[str, Any], fn: Any) -> None:
        def run() -> None:
            try:
                self.reply(msg, **(fn(msg) or {}))
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    self.fail(msg, exc)
            finally:
                self.busy.pop(threading.current_thread(), None)

        thread = threading.Thread(target=run, name=f"pto-agent-{msg.get('op')}", daemon=True)
        self.busy[thread] = msg.get("world")
        thread.start()

    # -- the mesh between agents ---------------------------------------------------------------
    def accept_peers(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.receive_peer, args=(conn,), daemon=True).start()

    def receive_peer(self, conn: socket.socket) -> None:
        """Apply another agent's updates; when its connection ends, its ranks are dead here
        (waits on them fail with PeerDead instead of timing out)."""
        peer = ""
        with conn, contextlib.suppress(OSError):
            while True:
                msg = recv_msg(conn)
                if msg is None:
                    break
                if isinstance(msg, dict):  # the hello naming the sending host
                    peer = str(msg.get("host", ""))
                    continue
                world, update = msg
                mirror = self.mirrors.get(world)
                if mirror is not None:
                    with contextlib.suppress(Exception):  # a closing window drops updates
                        mirror.apply(update)
        if peer:
            for mirror in list(self.mirrors.values()):
                with contextlib.suppress(Exception):
                    mirror.mark_host_lost(peer)

    def connect_peers(self, msg: dict[str, Any]) -> dict[str, Any]:
        for index, (addr, port) in msg["peers"].items():
            if index == self.index:
                continue
            sock = socket.create_connection((addr, port), timeout=30)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_msg(sock, {"host": self.name})
            self.peers[index] = sock
            self.peer_locks[index] = threading.Lock()
        return {}

    def broadcast(self, world: str, update: Any) -> None:
        for index, sock in list(self.peers.items()):
            with contextlib.suppress(OSError), self.peer_locks[index]:
                send_msg(sock, (world, update))

    # -- requests ------------------------------------------------------------------------------
    def lease(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Lease from this host's lock dir; with ``health`` (--pto-health-check on) every
        leased device is probed here, on the host that has it, and a failing one is
        quarantined in this host's lock dir before the lease moves on."""
        from pytest_pto._health import lease_healthy
        from pytest_pto.devices import DevicePool

        pool = DevicePool(
            tuple(msg["pool"]),
            Path(msg["lock_dir"]),
            host=self.name,
            honour_quarantine=msg.get("honour_quarantine", True),
        )
        health = msg.get("health")
        lease = lease_healthy(
            pool,
            msg["count"],
            msg["nodeid"],
            msg["timeout"],
            tuple(msg["avoid"]),
            probes=self.probes(health, msg.get("sys_path")) if health else None,
            ttl=health.get("ttl") if health else None,
            round=health.get("round") if health else None,
        )
        self.leases[msg["lease"]] = lease
        return {"devices": list(lease.devices), "wait_ms": lease.wait_ms}

    def probes(self, health: dict[str, Any], sys_path: list[str] | None) -> list[Any]:
        """The runtime adapter's probe (its class loaded here, instantiated without
        arguments, as in every process that needs it) and the platform's."""
        from pytest_pto._health import device_probes

        adapter = None
        if health.get("runtime"):
            from pytest_pto._registry import load_spec

            for entry in reversed(sys_path or []):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            adapter = load_spec(health["runtime"])()
            if health.get("cache_dir"):
                adapter.cache_dir = Path(health["cache_dir"])
        return device_probes(adapter, health.get("label", ""), health["platform"])

    def pool(self, msg: dict[str, Any]) -> dict[str, Any]:
        """``pto-devices`` across hosts: this host's pool as its own lock dir has it (holders,
        quarantines), after releasing the quarantines ``release`` names (None: none)."""
        from pytest_pto.devices import DevicePool

        pool = DevicePool(tuple(msg["pool"]), Path(msg["lock_dir"]), host=self.name)
        if msg.get("release") is not None:
            before = pool.quarantined()
            which = msg["release"]
            done = pool.release_quarantine(None if which == "all" else which)
            return {"released": {d: before[d].reason for d in done}}
        return {"states": pool.state(clean=True), "quarantined": pool.quarantined()}

    def quarantine(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Quarantine a device of this host in this host's lock dir (a poisoning code)."""
        from pytest_pto.devices import DevicePool

        pool = DevicePool(tuple(msg["pool"]), Path(msg["lock_dir"]), host=self.name)
        return {"quarantine": pool.quarantine(msg["device"], **msg["fields"])}

    def release(self, msg: dict[str, Any]) -> dict[str, Any]:
        lease = self.leases.pop(msg["lease"], None)
        if lease is not None:
            lease.release()
        return {}

    def prepare(self, msg: dict[str, Any]) -> dict[str, Any]:
        from libpto._comm import create_bridged
        from libpto._comm_bridge import CommMirror, MirrorPump

        world = msg["world"]
        name = create_bridged(msg["size"])
        self.windows[world] = name
        mirror = CommMirror(name, msg.get("ranks"), host=self.name, hosts=msg.get("hosts"))
        self.mirrors[world] = mirror
        pump = MirrorPump(mirror, lambda update: self.broadcast(world, update))
        self.pumps[world] = pump
        pump.start()
        return {"comm_name": name}

    def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        from libpto.world import World, WorldConfig

        world_id = msg["world"]
        kwargs = dict(msg["config"])
        kwargs["comm_name"] = self.windows[world_id]
        kwargs["host"] = self.name
        kwargs["log_dir"] = self.logs.folder(world_id)  # on this host; shipped to the controller
        env = dict(kwargs.get("env") or {})
        env.update(PTO_HOST=self.name, PTO_HOST_ADDR=self.addr)
        # gloo (torch) picks its interface from the host name, which often resolves to
        # 127.0.0.1: use the one that reaches the controller unless the test chose one
        if self.iface and "GLOO_SOCKET_IFNAME" not in env:
            env["GLOO_SOCKET_IFNAME"] = self.iface
        kwargs["env"] = env
        config = WorldConfig(**kwargs)
        if msg.get("cwd"):
            with contextlib.suppress(OSError):
                os.chdir(msg["cwd"])
        try:
            world = World.start(config)
        except BaseException as exc:
            failed = getattr(exc, "pto_world", None)
            if failed is not None:
                exc.pto_world = None  # type: ignore[attr-defined]
                self.worlds[world_id] = failed
            raise
        self.worlds[world_id] = world
        return {"pids": list(world.pids), **self.timeline(world_id)}

    def timeline(self, world_id: str) -> dict[str, Any]:
        world = self.worlds.get(world_id)
        if world is None:
            return {}
        return {
            "init_ms": dict(world.init_ms),
            "events": self.clock.rebase(world.events, self.name),
        }

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:
        world = self.worlds[msg["world"]]
        for entry in reversed(msg["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        op = msg["op_ref"].resolve()
        results = world.run(op, *msg["args"], timeout=msg["timeout"], **msg["kwargs"])
        return {"results": list(results)}

    def stacks(self, msg: dict[str, Any]) -> dict[str, Any]:
        world = self.worlds.get(msg["world"])
        if world is None or world.closed:
            return {"stacks": {}}
        return {"stacks": world.stacks()}

    def close(self, msg: dict[str, Any]) -> dict[str, Any]:
        world_id = msg["world"]
        world = self.worlds.pop(world_id, None)
        answer: dict[str, Any] = {}
        try:
            if world is not None:
                if msg.get("kill"):
                    self.quiesce({world_id: world})  # a run of this world may still wait
                    world._close(kill=list(range(world.size)), grace=0.0)
                else:
                    world.shutdown()
        except BaseException as exc:
            answer["error"] = _portable(exc)
        finally:
            if world is not None:
                self.worlds[world_id] = world  # for the timeline
                answer.update(self.timeline(world_id))
                del self.worlds[world_id]
            self.drop_window(world_id)
            with contextlib.suppress(OSError):
                self.logs.drop(world_id)
        return answer

    def drop_window(self, world_id: str) -> None:
        from libpto._comm import CommWindow

        pump = self.pumps.pop(world_id, None)
        if pump is not None:
            pump.stop.set()
            pump.join(5)
        mirror = self.mirrors.pop(world_id, None)
        if mirror is not None:
            with contextlib.suppress(Exception):  # the unlink below must still happen
                mirror.close()
        name = self.windows.pop(world_id, None)
        if name is not None:
            CommWindow.unlink(name, missing_ok=True)

    def quiesce(self, worlds: dict[str, Any]) -> None:
        """Kill the ranks of ``worlds``, then wait (at most TEARDOWN_JOIN_S) for the other
        request threads inside them, which see the deaths and return: closing a World under
        a thread waiting in ``World.run`` unmaps its mailboxes under the wait (SIGSEGV)."""
        for world in worlds.values():
            for pid in world.pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        me = threading.current_thread()
        deadline = time.monotonic() + TEARDOWN_JOIN_S
        for thread, world_id in list(self.busy.items()):
            if thread is not me and world_id in worlds:
                thread.join(max(deadline - time.monotonic(), 0.0))

    def teardown(self) -> None:
        """The controller is gone (or said bye): kill every rank, drop every lease.

        The ranks die first and the request threads get a moment to see it: a thread inside
        ``World.run`` waits on the World's mailboxes, and closing the World under it would
        unmap them under its wait (the agent crashed with SIGSEGV before drop_window).

        The window names go first, before anything that can take time or fail: ranks and the
        mirror keep their mappings, and a SIGKILL from mpirun's own teardown can no longer
        leave a window in this host's /dev/shm. A SIGTERM arriving now is ignored, so the
        cleanup it asks for runs to its end."""
        from libpto._comm import CommWindow

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name in list(self.windows.values()):
            with contextlib.suppress(BaseException):
                CommWindow.unlink(name, missing_ok=True)
        self.quiesce(dict(self.worlds))
        for world_id, world in list(self.worlds.items()):
            with contextlib.suppress(BaseException):
                world._close(kill=list(range(world.size)), grace=0.0)
            self.drop_window(world_id)
        for world_id in list(self.windows):
            self.drop_window(world_id)
        for lease in list(self.leases.values()):
            with contextlib.suppress(BaseException):
                lease.release()
        self.leases.clear()

    def serve(self) -> None:
        threading.Thread(target=self.accept_peers, name="pto-agent-peers", daemon=True).start()
        threading.Thread(target=self.clock.run, name="pto-agent-clock", daemon=True).start()
        # answered at once, in order (the mesh, a window); the rest run in their own threads
        quick = {"connect": self.connect_peers, "prepare": self.prepare}
        threaded = {
            "lease": self.lease,
            "release": self.release,
            "quarantine": self.quarantine,
            "pool": self.pool,
            "start": self.start,
            "run": self.run,
            "stacks": self.stacks,
            "close": self.close,
        }
        try:
            while True:
                msg = recv_msg(self.ctl)
                if msg is None or msg.get("op") == "bye":
                    return
                op = msg.get("op")
                if op == "clock":  # the controller's answer to a clock ping
                    self.clock.on_pong(msg)
                elif op in quick:
                    try:
                        self.reply(msg, **quick[op](msg))
                    except BaseException as exc:
                        self.fail(msg, exc)
                elif op in threaded:
                    self.in_thread(msg, threaded[op])
                else:
                    self.reply(msg, error=RuntimeError(f"host agent: unknown request {op!r}"))
        finally:
            self.clock.stop.set()
            self.teardown()
            self.logs.close()


def main() -> int:
    """``python -m pytest_pto._host_agent``, as ``mpirun`` starts it on every host."""
    from libpto._mailbox import set_proctitle

    # the launcher names its MPI's rank variable (hydra passes the whole environment on, so
    # another MPI's variable may be there too); else the first one set
    named = os.environ.get("PTO_LAUNCH_RANK_ENV")
    keys = (named, *HOST_RANK_ENVS) if named else HOST_RANK_ENVS
    index = next((int(os.environ[k]) for k in keys if k in os.environ), 0)
    names = os.environ.get("PTO_LAUNCH_HOSTS", "").split(",")
    name = names[index] if index < len(names) and names[index] else socket.gethostname()
    set_proctitle(f"pto-host-agent host={name} index={index}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.environ.get("PTO_LAUNCH_CWD"):
        with contextlib.suppress(OSError):
            os.chdir(os.environ["PTO_LAUNCH_CWD"])
    addr, _, port = os.environ["PTO_LAUNCH_ADDR"].rpartition(":")
    listener = socket.create_server(("0.0.0.0", 0))
    ctl = socket.create_connection((addr, int(port)), timeout=60)
    ctl.settimeout(None)
    ctl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send_msg(
        ctl,
        {
            "op": "hello",
            "token": os.environ.get("PTO_LAUNCH_TOKEN", ""),
            "index": index,
            "pid": os.getpid(),
            "bridge_port": listener.getsockname()[1],
        },
    )
    try:
        Agent(ctl, index, name, listener).serve()
    finally:
        listener.close()
        ctl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
