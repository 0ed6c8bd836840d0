"""``--pto-launcher=mpirun``: ranks on several hosts, through one ``mpirun`` per session.

:class:`MpiLaunch` starts ``mpirun -np H --host a:1,b:1 ... python -m pytest_pto._host_agent``
once (at the first distributed round), so that ``mpirun`` places one host agent on every host
through its own launcher agent (ssh, or ``--pto-mpi-arg`` such as ``--mca plm_rsh_agent X``).
The agents dial back to this process (``PTO_LAUNCH_ADDR``), get each other's addresses, and
from then on every round is messages, not launches: lease on each host, create and mirror the
round's comm window, start each host's slice of ranks (fresh processes per round), run ops,
collect stacks, close. :class:`MpiWorld` is the round's World with the API of
``libpto.World`` (``run``, ``stacks``, ``close``, timeline), so the plugin's rounds, outcomes
and reports do not change. :class:`HostsLease` is the round's lease: every host's devices,
taken host by host in the fixed host order (two sessions never wait on each other crosswise),
all or none.

Teardown: ``mpirun`` runs in its own session (process group); at the end of the session the
agents are told to leave and ``mpirun`` gets its grace, then its process group is killed. If
this process dies (SIGKILL included) its sockets close, every agent kills its ranks, releases
its leases and exits, and ``mpirun``'s job ends with them.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libpto._hosts import Host
from libpto._worker_frames import OpRef
from libpto._zygote import recv_msg, send_msg
from libpto.errors import InitTimeout, PtoError, RankCrashed, RankError, RankHang
from pytest_pto._host_logs import write_shipment
from pytest_pto._mpi_flavor import RANK_ENV, launch_command

__all__ = [
    "HostsLease",
    "LaunchError",
    "MpiLaunch",
    "MpiWorld",
    "MultiHost",
    "close_launch",
    "get_launch",
    "live_tokens",
    "multihost_of",
]

ADDR_ENV = "PTO_LAUNCH_ADDR"
#: the agents' own knobs, passed through mpirun when set here (their hosts' rank-log folder;
#: the test knob that pretends a host's clock is off)
AGENT_ENVS = ("PTO_HOST_LOG_DIR", "PTO_TEST_CLOCK_SKEW_S")
FAILURE_SETTLE = 0.05
#: after a rank's death, a lost host agent or a PeerDead/CommTimeout, how long the other hosts
#: still running get to report: a rank there waiting on the dead one learns of it one
#: comm-mirror hop later (PeerDead) and must not be killed before it can say so, and a
#: secondary failure's cause is on its way (other failures: FAILURE_SETTLE, as in a World)
PEER_SETTLE = 2.0
#: error names of a rank's failure that follows from another's (as in World._run)
SECONDARY_NAMES = ("PTO_E_PEER_DEAD", "PTO_E_TIMEOUT")
REPLY_GRACE = 30.0  # beyond a request's own deadline: the agent or its host is gone
EXIT_GRACE = 5.0


class LaunchError(PtoError):
    """``mpirun`` or a host agent could not be started or reached; infrastructure."""


def _settle(errors: list[tuple[int, BaseException]], hosts: int) -> float:
    """How long the hosts not yet answered may still report after the first failure."""
    if hosts > 1 and any(
        isinstance(exc, (RankCrashed, LaunchError)) or getattr(exc, "name", "") in SECONDARY_NAMES
        for _, exc in errors
    ):
        return PEER_SETTLE
    return FAILURE_SETTLE


def _default_addr(hosts: Sequence[Host]) -> str:
    """The address the agents dial: ``PTO_LAUNCH_ADDR``, else the local address of the route
    to the first host, else this machine's name's address."""
    explicit = os.environ.get(ADDR_ENV)
    if explicit:
        return explicit
    for host in hosts:
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host.name, 9))
            return str(s.getsockname()[0])
    return socket.gethostbyname(socket.gethostname())


@dataclass(frozen=True)
class MultiHost:
    """What a round needs to run on hosts (from the session's settings)."""

    hosts: tuple[Host, ...]
    mpirun: str
    mpi_args: tuple[str, ...]
    lock_dir: Path
    quarantine: bool
    log_dir: Path
    mpi_flavor: str = "openmpi"  # resolved (never "auto"): pytest_pto._mpi_flavor


_launch_logs: Path | None = None


def multihost_of(settings: Any) -> MultiHost | None:
    """The session's MultiHost with --pto-launcher=mpirun, else None."""
    global _launch_logs
    if getattr(settings, "launcher", "local") != "mpirun":
        return None
    if _launch_logs is None:
        from pytest_pto._world_fixture import session_temp_dir

        _launch_logs = Path(settings.log_dir) if settings.log_dir else session_temp_dir("launch")
    return MultiHost(
        hosts=tuple(settings.hosts),
        mpirun=str(settings.mpirun),
        mpi_args=tuple(settings.mpi_args),
        mpi_flavor=str(getattr(settings, "mpi_flavor", None) or "openmpi"),
        lock_dir=Path(settings.lock_dir),
        quarantine=bool(settings.quarantine),
        log_dir=_launch_logs,
    )


class _Agent:
    """The controller's end of one host agent's connection."""

    def __init__(self, host: Host, index: int, sock: socket.socket, pid: int, port: int):
        self.host = host
        self.index = index
        self.sock = sock
        self.pid = pid
        self.addr = str(sock.getpeername()[0])
        self.bridge_port = port
        self.lock = threading.Lock()
        self.pending: dict[int, Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.alive = True
        #: each round's log folder here, by world id: where its ranks' shipped logs go
        self.log_folders: dict[str, Path] = {}
        threading.Thread(target=self._read, name=f"pto-launch-{host.name}", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = recv_msg(self.sock)
            except OSError:
                msg = None
            if msg is None:
                break
            op = msg.get("op")
            if op == "clock":  # the agent's clock ping: answer with this clock, at once
                with contextlib.suppress(OSError), self.lock:
                    send_msg(
                        self.sock, {"op": "clock", "seq": msg.get("seq"), "t_ns": time.time_ns()}
                    )
                continue
            if op == "logs":  # what a round's rank logs gained, before the answer that follows
                folder = self.log_folders.get(msg.get("world", ""))
                if folder is not None:
                    write_shipment(folder, msg.get("logs") or {})
                continue
            fut = self.pending.pop(msg.get("id"), None)
            if fut is not None:
                fut.set_result(msg)
        self.alive = False
        for fut in list(self.pending.values()):
            fut.set_result({"gone": True})
        self.pending.clear()

    def request(self, op: str, **fields: Any) -> Future[dict[str, Any]]:
        fut: Future[dict[str, Any]] = Future()
        with self.lock:
            rid = next(self.ids)
            self.pending[rid] = fut
            if not self.alive:
                self.pending.pop(rid, None)
                fut.set_result({"gone": True})
                return fut
            try:
                send_msg(self.sock, {"op": op, "id": rid, **fields})
            except OSError:
                self.pending.pop(rid, None)
                fut.set_result({"gone": True})
        return fut

    def answer(self, fut: Future[dict[str, Any]], timeout: float | None, what: str) -> Any:
        """The reply's fields; its error raised; a dead agent as RankCrashed-like LaunchError."""
        try:
            reply = fut.result(timeout)
        except TimeoutError:
            raise LaunchError(
                f"host {self.host.name}: the host agent did not answer {what} in time"
            ) from None
        if reply.get("gone"):
            raise LaunchError(f"host {self.host.name}: the host agent (pid {self.pid}) is gone")
        if "error" in reply:
            raise reply["error"]
        return reply


class MpiLaunch:
    """One ``mpirun`` and its host agents, for the session."""

    def __init__(
        self,
        hosts: Sequence[Host],
        mpirun: str,
        mpi_args: Sequence[str] = (),
        start_timeout: float = 60.0,
        flavor: str = "openmpi",
    ) -> None:
        self.hosts = tuple(hosts)
        self.mpirun = mpirun
        self.mpi_args = tuple(mpi_args)
        self.flavor = flavor  # pytest_pto._mpi_flavor: openmpi or mpich
        self.start_timeout = start_timeout
        self.agents: list[_Agent] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.closed = False
        self.launch_ms = 0.0
        self.token = ""

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.hosts, self.mpirun, self.mpi_args, self.flavor)

    def start(self, log_dir: Path) -> None:
        t0 = time.monotonic()
        self.token = token = secrets.token_hex(16)
        addr = _default_addr(self.hosts)
        listener = socket.create_server(("0.0.0.0", 0))
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        env = dict(os.environ)
        env.update(
            PTO_LAUNCH_ADDR=f"{addr}:{port}",
            PTO_LAUNCH_TOKEN=token,
            PTO_LAUNCH_HOSTS=",".join(h.name for h in self.hosts),
            PTO_LAUNCH_CWD=os.getcwd(),
        )
        root = [str(Path(__file__).resolve().parent.parent)]
        env["PYTHONPATH"] = os.pathsep.join(root + [p for p in sys.path if p])
        env["PTO_LAUNCH_RANK_ENV"] = RANK_ENV[self.flavor]  # where the agent finds its index
        passed = ["PTO_LAUNCH_ADDR", "PTO_LAUNCH_TOKEN", "PTO_LAUNCH_HOSTS"]
        passed += ["PTO_LAUNCH_RANK_ENV", "PTO_LAUNCH_CWD", "PYTHONPATH"]
        passed += [name for name in AGENT_ENVS if name in env]
        cmd = launch_command(
            self.flavor,
            self.mpirun,
            [h.name for h in self.hosts],
            env_names=passed,
            mpi_args=self.mpi_args,
            program=[sys.executable, "-m", "pytest_pto._host_agent"],
            as_root=os.geteuid() == 0,
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER")  # xdist workers may share --pto-log-dir
        self.log = log_dir / (f"mpirun-{worker}.log" if worker else "mpirun.log")
        with open(self.log, "ab") as logf:
            logf.write(f"$ {' '.join(cmd)}\n".encode())
            logf.flush()
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=logf,
                    start_new_session=True,  # one process group: torn down as one
                )
            except OSError as exc:
                listener.close()
                raise LaunchError(f"--pto-mpirun {self.mpirun}: cannot start: {exc}") from None
        _LIVE.add(self)
        by_index: dict[int, _Agent] = {}
        deadline = time.monotonic() + self.start_timeout
        try:
            while len(by_index) < len(self.hosts):
                if self.proc.poll() is not None:
                    raise LaunchError(
                        f"mpirun exited with status {self.proc.returncode} before every host "
                        f"agent called in ({len(by_index)}/{len(self.hosts)}); its output:\n"
                        + self._log_tail()
                    )
                if time.monotonic() > deadline:
                    missing = [h.name for i, h in enumerate(self.hosts) if i not in by_index]
                    raise LaunchError(
                        f"host agents on {', '.join(missing)} did not call in within "
                        f"{self.start_timeout:g} s (mpirun output:\n{self._log_tail()})"
                    )
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                conn.settimeout(10)
                try:
                    hello = recv_msg(conn)
                except OSError:
                    hello = None
                if not hello or hello.get("token") != token:
                    conn.close()
                    continue
                conn.settimeout(None)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                index = int(hello["index"])
                by_index[index] = _Agent(
                    self.hosts[index], index, conn, hello["pid"], hello["bridge_port"]
                )
            self.agents = [by_index[i] for i in range(len(self.hosts))]
            peers = {a.index: (a.addr, a.bridge_port) for a in self.agents}
            futs = [(a, a.request("connect", peers=peers)) for a in self.agents]
            for agent, fut in futs:
                agent.answer(fut, self.start_timeout, "connect")
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()
        self.launch_ms = (time.monotonic() - t0) * 1000

    def _log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:] if self.log else ""
        except OSError:
            return ""

    def close(self) -> None:
        """Agents leave, mpirun ends; its process group is killed after a grace."""
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        for agent in self.agents:
            with contextlib.suppress(OSError):
                send_msg(agent.sock, {"op": "bye"})
            with contextlib.suppress(OSError):
                agent.sock.close()
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _killpg(proc.pid, signal.SIGKILL)  # anything left in its group

    def emergency(self) -> None:
        """From a signal handler: kill mpirun's process group now."""
        self.closed = True
        if self.proc is not None:
            _killpg(self.proc.pid, signal.SIGKILL)
        for agent in self.agents:
            with contextlib.suppress(OSError):
                agent.sock.close()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)


_LIVE: set[MpiLaunch] = set()
_current: MpiLaunch | None = None


def live_tokens() -> list[str]:
    """The tokens of this process's live launches (every process of a launch has its token in
    its environment, ``PTO_LAUNCH_TOKEN``): how a leak check tells them apart."""
    return [launch.token for launch in _LIVE if launch.token]


def get_launch(
    hosts: Sequence[Host],
    mpirun: str,
    mpi_args: Sequence[str],
    log_dir: Path,
    timeout: float,
    *,
    flavor: str = "openmpi",
) -> MpiLaunch:
    """The session's launch for these hosts (started on first use, restarted if it died).
    One per process: under xdist every worker has its own mpirun and host agents."""
    global _current
    launch = _current
    key = (tuple(hosts), mpirun, tuple(mpi_args), flavor)
    if launch is not None and (
        launch.key != key or launch.closed or not all(a.alive for a in launch.agents)
    ):
        launch.close()
        launch = None
    if launch is None:
        launch = MpiLaunch(hosts, mpirun, mpi_args, timeout, flavor)
        _current = launch
        launch.start(log_dir)
    return launch


def close_launch() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


@atexit.register
def _at_exit() -> None:
    for launch in list(_LIVE):
        launch.close()


class HostsLease:
    """Devices on every host of a round: ``by_host[i]`` are host i's, ``devices`` flat in
    rank order (ids repeat across hosts), ``placement`` the host index of each device."""

    def __init__(
        self,
        launch: MpiLaunch,
        counts: dict[int, int],
        *,
        test: str,
        timeout: float,
        lock_dir: Path,
        honour_quarantine: bool,
        avoid: dict[int, tuple[int, ...]] | None = None,
        health: dict[str, Any] | None = None,
    ) -> None:
        """``avoid``: per host index, the devices that host leaves out when it can (a retry's
        first devices there); ``health``: with --pto-health-check on, what each agent needs
        to probe its leased devices on its own host (see ``PtoWorld._remote_health``)."""
        self.launch = launch
        self.test = test
        self.released = False
        self.by_host: dict[int, tuple[int, ...]] = {}
        self._ids: dict[int, str] = {}
        t0 = time.monotonic()
        try:
            for index in sorted(counts):  # the fixed order: no crosswise waits
                agent = launch.agents[index]
                lease_id = secrets.token_hex(6)
                self._ids[index] = lease_id
                left = max(timeout - (time.monotonic() - t0), 0.0)
                fut = agent.request(
                    "lease",
                    lease=lease_id,
                    count=counts[index],
                    nodeid=test,
                    timeout=left,
                    lock_dir=str(lock_dir),
                    pool=list(agent.host.devices),
                    avoid=list((avoid or {}).get(index, ())),
                    honour_quarantine=honour_quarantine,
                    health=health,
                    sys_path=list(sys.path) if health and health.get("runtime") else None,
                )
                try:
                    reply = agent.answer(fut, left + REPLY_GRACE, "lease")
                except Exception as exc:
                    from pytest_pto.devices import DeviceUnavailable

                    if isinstance(exc, DeviceUnavailable):
                        raise DeviceUnavailable(
                            f"host {agent.host.name}: {exc}", waited_s=time.monotonic() - t0
                        ) from None
                    raise
                self.by_host[index] = tuple(reply["devices"])
        except BaseException:
            self.release()
            raise
        self.wait_ms = (time.monotonic() - t0) * 1000
        self.devices = tuple(d for i in sorted(self.by_host) for d in self.by_host[i])
        self.since = time.time()

    def quarantine(self, rank_host: int, device: int, lock_dir: Path, **fields: Any) -> Any:
        """Quarantine ``device`` of host ``rank_host`` in that host's own lock dir."""
        agent = self.launch.agents[rank_host]
        fut = agent.request(
            "quarantine",
            device=device,
            lock_dir=str(lock_dir),
            pool=list(agent.host.devices),
            fields=fields,
        )
        return agent.answer(fut, REPLY_GRACE, "quarantine")["quarantine"]

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for index, lease_id in self._ids.items():
            agent = self.launch.agents[index]
            with contextlib.suppress(Exception):
                agent.answer(agent.request("release", lease=lease_id), REPLY_GRACE, "release")

    def __enter__(self) -> HostsLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MpiWorld:
    """One round's ranks on several hosts, with ``libpto.World``'s API."""

    def __init__(self, launch: MpiLaunch, config: dict[str, Any], placement: list[int]):
        self.launch = launch
        self.config = config
        self.size = len(placement)
        self.placement = placement
        self.name = config.get("name", "")
        self.devices = tuple(config["devices"])
        self.id = secrets.token_hex(8)
        #: the round's log folder here: the agents ship their ranks' logs into it
        self.log_dir = Path(config["log_dir"]) if config.get("log_dir") else None
        self.hosts = sorted(set(placement))
        self.base = {h: placement.index(h) for h in self.hosts}
        self.count = {h: placement.count(h) for h in self.hosts}
        self.init_ms: dict[int, float] = {}
        self.init_skew_ms: float | None = None
        self.init_skew_partial = False
        self._events: list[dict[str, Any]] = []
        self._pids: list[int] = []
        self._closed = False
        self._started: set[int] = set()
        self.close_failures: dict[int, Any] = {}

    @staticmethod
    def fields_of(config: Any) -> dict[str, Any]:
        """A ``WorldConfig`` of the whole world (``hosts`` set) as the plain fields that
        :meth:`_slice` cuts into each host's slice (``hosts`` itself stays here)."""
        import dataclasses

        out: dict[str, Any] = {}
        for f in dataclasses.fields(config):
            if f.name == "hosts":
                continue
            value = getattr(config, f.name)
            if f.name in ("rank_env", "device_env") and value is not None:
                value = {r: dict(env) for r, env in value.items()}
            elif f.name in ("env", "local_device_ids") and value is not None:
                value = dict(value)
            out[f.name] = value
        return out

    @property
    def host_of(self) -> dict[int, str]:
        return {r: self.launch.hosts[h].name for r, h in enumerate(self.placement)}

    def _agent(self, h: int) -> _Agent:
        return self.launch.agents[h]

    def _slice(self, h: int, comm_size: int) -> dict[str, Any]:
        cfg = self.config
        base, n = self.base[h], self.count[h]
        k = cfg.get("devices_per_rank", 1)

        def local(per_rank: Any) -> Any:
            if per_rank is None:
                return None
            return {r - base: v for r, v in per_rank.items() if base <= r < base + n}

        out = {
            key: value
            for key, value in cfg.items()
            if key not in ("rank_env", "device_env", "local_device_ids", "devices")
        }
        out.update(
            devices=tuple(cfg["devices"][base * k : (base + n) * k]),
            rank_env=local(cfg.get("rank_env") or {}),
            device_env=local(cfg.get("device_env")),
            local_device_ids=local(cfg.get("local_device_ids")),
            rank_base=base,
            world_size=comm_size,
        )
        return out

    @classmethod
    def start(cls, launch: MpiLaunch, config: dict[str, Any], placement: list[int]) -> MpiWorld:
        world = cls(launch, config, placement)
        try:
            world._start()
        except BaseException as exc:
            try:
                world._close(kill=True)
            finally:
                with contextlib.suppress(AttributeError, TypeError):
                    exc.pto_world = world  # type: ignore[attr-defined]
            raise
        return world

    @property
    def logs(self) -> dict[int, Path]:
        """Each rank's log file here (what its host's agent shipped of it so far)."""
        if self.log_dir is None:
            return {}
        return {r: self.log_dir / f"rank{r}.log" for r in range(self.size)}

    def _start(self) -> None:
        init_timeout = float(self.config.get("init_timeout", 60.0))
        for h in self.hosts:
            agent = self._agent(h)
            if self.log_dir is not None:
                agent.log_folders[self.id] = self.log_dir
            agent.answer(
                agent.request(
                    "prepare",
                    world=self.id,
                    size=self.size,
                    ranks=[r for r, host in enumerate(self.placement) if host == h],
                    hosts=[self.host_of[r] for r in range(self.size)],
                ),
                REPLY_GRACE,
                "prepare",
            )
            self._started.add(h)
        futs = {
            h: self._agent(h).request(
                "start", world=self.id, config=self._slice(h, self.size), cwd=os.getcwd()
            )
            for h in self.hosts
        }
        replies = self._gather(futs, init_timeout + REPLY_GRACE, "start")
        for reply in replies.values():
            self._pids += reply.get("pids", [])
            self._take_timeline(reply)

    def _take_timeline(self, reply: dict[str, Any]) -> None:
        self.init_ms.update(reply.get("init_ms", {}))
        events = reply.get("events")
        if events:
            ranks = {e["rank"] for e in events}
            self._events = [e for e in self._events if e["rank"] not in ranks] + list(events)
            self._events.sort(key=lambda e: (e["ts_us"], e["rank"]))
        ends = [
            e["ts_us"] + e["dur_us"]
            for e in self._events
            if e["name"] == "init" and not e.get("open")
        ]
        if len(ends) == self.size:
            self.init_skew_ms = (max(ends) - min(ends)) / 1000

    def _gather(
        self, futs: dict[int, Future[dict[str, Any]]], timeout: float, what: str
    ) -> dict[int, dict[str, Any]]:
        """Every host's reply; the first failure (any host) raised once the others had
        ``FAILURE_SETTLE`` to report theirs, with every host's stacks added."""
        deadline = time.monotonic() + timeout
        replies: dict[int, dict[str, Any]] = {}
        errors: list[tuple[int, BaseException]] = []
        first_error = 0.0
        while len(replies) + len(errors) < len(futs):
            for h, fut in futs.items():
                if h in replies or any(h == e[0] for e in errors) or not fut.done():
                    continue
                try:
                    replies[h] = self._agent(h).answer(fut, 0, what)
                except BaseException as exc:
                    errors.append((h, exc))
                    first_error = first_error or time.monotonic()
            now = time.monotonic()
            if errors and now - first_error > _settle(errors, len(futs)):
                break
            if now > deadline:
                late = [h for h in futs if h not in replies and all(h != e[0] for e in errors)]
                errors.append(
                    (
                        late[0],
                        LaunchError(
                            f"host {self.launch.hosts[late[0]].name}: no answer to {what} "
                            "in time (host agent or network gone)"
                        ),
                    )
                )
                break
            pending = [f for h, f in futs.items() if h not in replies and not f.done()]
            if pending:  # slices of at most 0.1 s: Ctrl-C and SIGTERM are handled promptly
                left = min(0.1, max(deadline - now, 0.001))
                wait(pending, timeout=left, return_when=FIRST_COMPLETED)
        if errors:
            raise self._failure(errors)
        return replies

    def _failure(self, errors: list[tuple[int, BaseException]]) -> BaseException:
        """The round's error: a rank's own failure before a secondary one (a hang elsewhere),
        with the stacks of every host's ranks."""
        rank_errors = [e for e in errors if isinstance(e[1], RankError)]
        # a PeerDead or CommTimeout follows from another rank's failure (on another host, or
        # its whole host agent gone): that one is the round's error, as in World._run
        secondary = [e for e in rank_errors if getattr(e[1], "name", "") in SECONDARY_NAMES]
        hangs = [e for e in rank_errors if isinstance(e[1], RankHang)]
        primary = [e for e in rank_errors if e not in hangs and e not in secondary]
        others = [e for e in errors if not isinstance(e[1], RankError)]
        h, exc = (primary or hangs or others or secondary or errors)[0]
        if isinstance(exc, PtoError):
            stacks = dict(exc.details.get("stacks") or {})
            for other in self.hosts:
                if other == h:
                    continue
                with contextlib.suppress(Exception):
                    agent = self._agent(other)
                    reply = agent.answer(agent.request("stacks", world=self.id), 5, "stacks")
                    stacks.update(reply.get("stacks", {}))
            hangs = [e for e in rank_errors if isinstance(e[1], RankHang)]
            if isinstance(exc, RankHang) and len(hangs) > 1:
                stuck = sorted(
                    {r for _, e in hangs for r in getattr(e, "details", {}).get("stuck_ranks", [])}
                )
                exc.details["stuck_ranks"] = stuck
            if stacks:
                exc.details["stacks"] = dict(sorted(stacks.items()))
            self._log_here(exc)
            # a hang's (an init timeout's) text carries its host's stacks: add the others'
            others = [r for r in sorted(stacks) if self.placement[r] != h]
            if isinstance(exc, (RankHang, InitTimeout)) and others:
                extra = "\n".join(str(stacks[r]) for r in others)
                exc.message += f"\n--- the ranks on the other hosts ---\n{extra}"
                exc.args = (exc.message,)
        return exc

    def run(
        self, op: Callable[..., Any], /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> list[Any]:
        if self._closed:
            from libpto.errors import RuntimeStateError

            raise RuntimeStateError(f"MpiWorld {self.name}: closed (a failed world is not reused)")
        ref = OpRef.of(op)
        limit = timeout if timeout is not None else self.config.get("round_timeout")
        futs = {
            h: self._agent(h).request(
                "run",
                world=self.id,
                op_ref=ref,
                args=args,
                kwargs=kwargs,
                sys_path=list(sys.path),
                timeout=limit,
            )
            for h in self.hosts
        }
        try:
            replies = self._gather(futs, (limit or 1e9) + REPLY_GRACE, f"op {ref.label}")
        except BaseException:
            self._close(kill=True)
            raise
        results: list[Any] = [None] * self.size
        for h, reply in replies.items():
            for i, value in enumerate(reply["results"]):
                results[self.base[h] + i] = value
        return results

    def stacks(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for h in self.hosts:
            agent = self._agent(h)
            with contextlib.suppress(Exception):
                out.update(
                    agent.answer(agent.request("stacks", world=self.id), 10, "stacks")["stacks"]
                )
        return dict(sorted(out.items()))

    def close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        first = not self._closed
        error = self._close(kill=False)
        if first and error is not None:
            raise error

    def _close(self, kill: bool) -> BaseException | None:
        if self._closed:
            return None
        self._closed = True
        futs = {h: self._agent(h).request("close", world=self.id, kill=kill) for h in self._started}
        error: BaseException | None = None
        for fut in futs.values():
            try:
                reply = fut.result(REPLY_GRACE)
            except TimeoutError:
                continue
            self._take_timeline(reply)
            if reply.get("error") is not None and error is None:
                error = self._log_here(reply["error"])
                rank = getattr(error, "details", {}).get("rank")
                if isinstance(rank, int):
                    self.close_failures[rank] = error
        for h in self.hosts:  # every shipment came before its host's close answer
            self._agent(h).log_folders.pop(self.id, None)
        return error

    def _log_here(self, exc: BaseException) -> BaseException:
        """``exc``'s rank log named by its copy here (the agent named the one on its host)."""
        details = getattr(exc, "details", None)
        rank = details.get("rank") if isinstance(details, dict) else None
        if isinstance(rank, int) and rank in self.logs:
            details["log"] = str(self.logs[rank])  # type: ignore[index]
        return exc

    @property
    def events(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._events]

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(self._pids)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> MpiWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
