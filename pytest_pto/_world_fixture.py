"""The ``pto_world`` fixture's object: one round's device lease and chip-worker World.

The round's runtime adapter (:class:`RoundRuntime`) is consulted here: ``prepare`` once per
test before its first round, ``worker_env`` for each rank's environment, ``after_round`` once
the World is closed (a killed round too). The chip workers run its ``init``/``close``.

Starting is lazy (first use of ``devices``/``run``/``world``) and otherwise forced at the start
of the test call, so lock wait and init are failures *of the round* (call phase) and are timed
apart: ``lock_wait_ms`` (waiting for devices) and ``init_ms``/``init_skew_ms`` (the World).

The round's hang budget (``round_timeout``) runs from the moment the World is up. Inside
``run`` the World's own deadline enforces it (it collects every rank's stack); outside ``run``
(the test body itself stuck) a SIGALRM watchdog raises :class:`RoundHang` in the main thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import libpto
from libpto._checks import seconds_problem
from libpto.errors import InvalidArgument, PtoError, RankError, RuntimeAdapterError
from pytest_pto._adapter import RoundInfo, RuntimeAdapter
from pytest_pto._platforms import get_platform
from pytest_pto._rounds import RoundPlan
from pytest_pto.devices import DevicePool, DeviceUnavailable, Lease
from pytest_pto.outcomes import RoundHang

__all__ = [
    "PtoWorld",
    "RoundRuntime",
    "drop_round_dirs",
    "give_round_dir",
    "session_temp_dir",
    "take_round_dir",
]

_WATCHDOG_GRACE_S = 1.0
MASTER_ADDR = "127.0.0.1"


def session_temp_dir(kind: str) -> Path:
    """A temporary directory ``pto-<kind>-<pid>-XXXXXXXX``, named after this process so that
    a later session removes it if this one is killed before its cleanup (the first call of
    each kind sweeps those of dead owners)."""
    return libpto.owner_temp_dir(kind)


#: emptied per-round folders kept for the next round, by kind (``logs``, ``round``)
_spare: dict[str, list[Path]] = {}


def take_round_dir(kind: str) -> Path:
    """An empty per-round folder: one an earlier round of this process emptied, else a new
    :func:`session_temp_dir`. Why reuse: making and removing two folders per round costs
    milliseconds a round on a journalled /tmp of a busy machine; emptying a folder the round
    left empty costs a listing. The name stays this process's, so a later session removes
    it if this one is killed; the session removes it at its end (:func:`drop_round_dirs`)."""
    spare = _spare.get(kind)
    while spare:
        path = spare.pop()
        if path.is_dir():
            return path
    return session_temp_dir(kind)


def give_round_dir(kind: str, path: Path) -> None:
    """Empty ``path`` (what the round left in it) and keep it for the next round; a folder
    that cannot be emptied is removed instead."""
    try:
        with os.scandir(path) as it:
            entries = list(it)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    _spare.setdefault(kind, []).append(path)


def drop_round_dirs() -> None:
    """Remove the kept folders (the session's end)."""
    for paths in _spare.values():
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
    _spare.clear()


_recent_ports: deque[int] = deque(maxlen=64)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the round's ``MASTER_PORT``, not one of the last
    rounds' (the kernel may hand a just-closed port out again; a rank of the previous round
    may still hold it in TIME_WAIT)."""
    for _ in range(32):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((MASTER_ADDR, 0))
            port = int(s.getsockname()[1])
        if port not in _recent_ports:
            break
    _recent_ports.append(port)
    return port


@dataclass
class RoundRuntime:
    """The runtime adapter of a round: its name (``--pto-runtime``/marker), the
    ``module:attribute`` the workers import, the session's instance and cache dir, and
    ``prepare`` (the session's once-per-test call of the adapter's ``prepare``)."""

    name: str
    spec: str
    adapter: RuntimeAdapter
    cache_dir: Path | None
    prepare: Callable[[], None]

    @property
    def worker_spec(self) -> str | None:
        """What the chip workers load: the adapter's ``module:attribute``, or None for the
        built-in ``libpto`` adapter itself, whose ``init``/``close`` are libpto's own chip
        default (:func:`libpto._worker.open_libpto_runtime`, ``Runtime.close``): the workers
        then need not import pytest and the plugin, which keeps the default path as fast as
        it was. A subclass of it is loaded like any adapter."""
        from pytest_pto._libpto_adapter import LibptoAdapter

        return None if type(self.adapter) is LibptoAdapter else self.spec

    @property
    def label(self) -> str:
        named = f" ({self.spec})" if self.spec != self.name else ""
        return f"runtime adapter {self.name!r}{named}"


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:180] or "round"


class PtoWorld:
    """What a test sees as ``pto_world``: ``size``, ``devices``, ``round``, ``run(op, ...)``."""

    def __init__(
        self,
        item: pytest.Item,
        plan: RoundPlan,
        pool: DevicePool,
        lock_timeout: float,
        runtime: RoundRuntime | None = None,
        *,
        health_check: bool = False,
        quarantine_ttl: float | None = None,
        multihost: Any = None,
    ):
        self._item = item
        #: --pto-launcher=mpirun: a pytest_pto._launcher.MultiHost (hosts, mpirun, ...)
        self._multihost = multihost
        #: the host each rank ran on (rank order), with --pto-launcher=mpirun
        self.rank_hosts: tuple[str, ...] = ()
        self.rank_host_index: tuple[int, ...] = ()
        self._health_check = health_check
        self.quarantine_ttl = quarantine_ttl
        #: 1, or 2 for the retry of a round whose first attempt failed for infra reasons
        self.attempt = 1
        self.first_outcome: str | None = None
        self.first_devices: tuple[int, ...] = ()
        #: devices a lease leaves out when it can (the first attempt's, on a retry)
        self.avoid: tuple[int, ...] = ()
        #: the same with --pto-launcher=mpirun, per host index (device ids repeat across hosts)
        self.avoid_by_host: dict[int, tuple[int, ...]] = {}
        #: World.start failed to launch the workers (OS or libpto error, not a rank's)
        self.launch_failed = False
        self.plan = plan
        self.runtime = runtime
        self.round_dir: Path | None = None
        self.rank_devices: dict[int, tuple[int, ...]] = {}
        self.outcome: str | None = None  # the round's class, set when it is classified
        self._pids: tuple[int, ...] = ()
        self._pool = pool
        self._lock_timeout = lock_timeout
        self.lease: Lease | None = None
        self._world: Any = None
        self.started = False
        self.start_error: BaseException | None = None
        self.ready_at: float | None = None
        self._failed_world: Any = None
        self._in_run = False
        self._closed = False
        self._alarm_armed = False
        self._old_alarm: Any = None
        if plan.log_dir is not None:
            self.log_dir = Path(plan.log_dir) / _safe(plan.nodeid)
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # e.g. the disk filled up since the session started
                pytest.fail(
                    f"pytest-pto: --pto-log-dir: cannot create {self.log_dir}: "
                    f"{exc.strerror or exc}",
                    pytrace=False,
                )
            self._own_log_dir = False
        else:
            self.log_dir = take_round_dir("logs")
            self._own_log_dir = True

    # -- the test API (docs/design.md §4) -------------------------------------------------------
    @property
    def size(self) -> int:
        return self.plan.ranks

    @property
    def round(self) -> int:
        return self.plan.round

    @property
    def rounds(self) -> int:
        return self.plan.rounds

    @property
    def variant(self) -> str | None:
        return self.plan.variant

    @property
    def env(self) -> dict[str, str]:
        return dict(self.plan.env)

    @property
    def devices(self) -> tuple[int, ...]:
        self.start()
        assert self.lease is not None
        return self.lease.devices

    @property
    def world(self) -> Any:
        """The ``libpto.World`` of this round (started on first use)."""
        self.start()
        return self._world

    @property
    def logs(self) -> dict[int, Path] | None:
        """Each rank's log file of the running World (``None`` before it starts or after it
        closed): the classification reads the ranks' side of a failure there."""
        if self._world is None:
            return None
        return dict(getattr(self._world, "logs", {}) or {})

    @property
    def lock_wait_ms(self) -> float | None:
        return self.lease.wait_ms if self.lease is not None else None

    @property
    def _timeline_world(self) -> Any:
        """The running World, or the closed one of a failed start (its stamps survive)."""
        return self._world if self._world is not None else self._failed_world

    @property
    def init_skew_ms(self) -> float | None:
        return getattr(self._timeline_world, "init_skew_ms", None)

    @property
    def init_skew_partial(self) -> bool:
        """``init_skew_ms`` is a lower bound: some rank had not ended init at teardown."""
        return bool(getattr(self._timeline_world, "init_skew_partial", False))

    @property
    def init_ms(self) -> dict[int, float]:
        return dict(getattr(self._timeline_world, "init_ms", {}) or {})

    def events(self) -> list[dict[str, Any]]:
        """The round's timeline (World.events), also of a start that failed; [] if none."""
        world = self._timeline_world
        return [dict(e) for e in getattr(world, "events", None) or []]

    def run(self, op: Callable[..., Any], /, *args: Any, **kwargs: Any) -> list[Any]:
        """Run ``op(chip, *args, **kwargs)`` in every rank; per-rank results in rank order.

        A ``timeout=`` keyword is the World's own (seconds); it is capped by what is left of
        the round's hang budget.
        """
        timeout = kwargs.pop("timeout", None)
        if timeout is not None and seconds_problem(timeout) is not None:
            raise InvalidArgument(
                f"pto_world.run: timeout={timeout!r}: {seconds_problem(timeout)}, or None"
            )
        world = self.world
        left = self._budget_left()
        if left is not None:
            timeout = left if timeout is None else min(timeout, left)
        self._in_run = True
        try:
            return list(world.run(op, *args, timeout=timeout, **kwargs))
        except PtoError as exc:
            if type(exc).__name__ == "LaunchError":  # a host agent or mpirun was lost: infra
                self.launch_failed = True
            # The World's poll loop is not where the failure is: cut its frames, so the report
            # shows the test line, the error, and the "pto round" section with the ranks' side.
            __tracebackhide__ = True
            raise exc.with_traceback(None) from exc.__cause__
        finally:
            self._in_run = False

    def stacks(self) -> dict[int, str]:
        if self._world is None:
            return {}
        try:
            return dict(self._world.stacks())
        except Exception as exc:  # a broken World must not hide the round's real failure
            return {-1: f"(stacks unavailable: {exc!r})"}

    def __repr__(self) -> str:
        devs = self.lease.devices if self.lease else "not leased"
        return f"<pto_world {self.plan.nodeid} ranks={self.size} devices={devs}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def _budget_left(self) -> float | None:
        if self.plan.round_timeout is None or self.ready_at is None:
            return None
        return max(self.plan.round_timeout - (time.monotonic() - self.ready_at), 0.05)

    def start(self) -> None:
        """Lease the devices and start the chip workers (once; a failure is re-raised)."""
        if self.started:
            if self.start_error is not None:
                __tracebackhide__ = True
                raise self.start_error.with_traceback(None)
            return
        if self._closed:
            raise RuntimeError("pto_world is closed (the round is over)")
        self.started = True
        hook = self._item.config.hook
        try:
            if self.runtime is not None:
                self.runtime.prepare()
            if self._multihost is not None:
                self._start_on_hosts()
                return
            self.lease = self._lease()
            hook.pytest_pto_lease_acquired(item=self._item, lease=self.lease)
            from libpto.world import World, WorldConfig

            config = self._hooked(self._world_config(WorldConfig, self.lease.devices))
            try:
                self._world = World.start(config)
            except (OSError, PtoError) as exc:
                # workers that could not be launched (fork, shared memory, spawn) are the
                # machine's failure; a rank's own init failure (RankError) is the product's
                if not isinstance(exc, (RankError, RuntimeAdapterError, InvalidArgument)):
                    self.launch_failed = True
                if not isinstance(exc, RuntimeAdapterError):
                    raise
                self.start_error = exc
                named = ""
                if self.runtime is not None and self.runtime.name != self.runtime.spec:
                    named = f" (runtime {self.runtime.name!r})"
                pytest.exit(f"pytest-pto: {exc}{named}", returncode=pytest.ExitCode.USAGE_ERROR)
            self._pids = tuple(self._world.pids)
            self.ready_at = time.monotonic()
            hook.pytest_pto_round_started(item=self._item, world=self._world)
        except BaseException as exc:
            self.start_error = exc
            self._failed_world = getattr(exc, "pto_world", None)
            if self._failed_world is not None:  # for after_round: the ranks that were forked
                self._pids = tuple(getattr(self._failed_world, "pids", ()))
            if isinstance(exc, (PtoError, DeviceUnavailable)):
                # as for op failures (run): the report shows the classified headline and the
                # rank's own frames ("pto round" section), not the plugin's start-up path
                __tracebackhide__ = True
                raise exc.with_traceback(None) from exc.__cause__
            raise

    def _hooked(self, config: Any) -> Any:
        """``config`` after the ``pytest_pto_world_config`` hook: its replacement, checked
        (devices, and with --pto-launcher=mpirun the hosts, must stay the leased ones)."""
        replaced = self._item.config.hook.pytest_pto_world_config(item=self._item, config=config)
        if replaced is None:
            return config
        assert self.lease is not None
        if tuple(replaced.devices) != self.lease.devices:
            raise ValueError(
                "pytest_pto_world_config: devices must stay the leased "
                f"{self.lease.devices}, got {replaced.devices}"
            )
        if config.hosts and (
            tuple(replaced.hosts) != config.hosts
            or replaced.devices_per_rank != config.devices_per_rank
        ):
            raise ValueError(
                "pytest_pto_world_config: hosts and devices_per_rank must stay the placed "
                f"{config.hosts} and {config.devices_per_rank}, got {replaced.hosts} and "
                f"{replaced.devices_per_rank}"
            )
        return replaced

    def _start_on_hosts(self) -> None:
        """--pto-launcher=mpirun: lease on every host (fixed order; probed there with
        --pto-health-check on), show the whole world to the ``pytest_pto_world_config`` hook,
        start the round's ranks through the session's host agents (docs/design.md, ranks
        across hosts)."""
        from libpto._hosts import place
        from libpto.world import WorldConfig
        from pytest_pto._launcher import HostsLease, LaunchError, MpiWorld, get_launch

        mh, plan = self._multihost, self.plan
        hook = self._item.config.hook
        placement = place(plan.ranks, mh.hosts, plan.devices_per_rank, plan.ranks_per_host)
        try:
            launch = get_launch(
                *(mh.hosts, mh.mpirun, mh.mpi_args, mh.log_dir, plan.init_timeout),
                flavor=mh.mpi_flavor,
            )
        except LaunchError:
            self.launch_failed = True
            raise
        self.rank_hosts = tuple(mh.hosts[h].name for h in placement)
        self.rank_host_index = tuple(placement)
        counts: dict[int, int] = {}
        for h in placement:
            counts[h] = counts.get(h, 0) + plan.devices_per_rank
        self.lease = HostsLease(  # type: ignore[assignment]
            launch,
            counts,
            test=plan.nodeid,
            timeout=self._lock_timeout,
            lock_dir=mh.lock_dir,
            honour_quarantine=mh.quarantine,
            avoid=self.avoid_by_host,
            health=self._remote_health(),
        )
        hook.pytest_pto_lease_acquired(item=self._item, lease=self.lease)
        assert self.lease is not None
        config = self._world_config(
            WorldConfig,
            self.lease.devices,
            hosts=self.rank_hosts,
            master_addr=launch.agents[placement[0]].addr,
        )
        config = self._hooked(config)
        try:
            self._world = MpiWorld.start(launch, MpiWorld.fields_of(config), placement)
        except LaunchError:
            self.launch_failed = True
            raise
        self._pids = tuple(self._world.pids)
        self.ready_at = time.monotonic()
        hook.pytest_pto_round_started(item=self._item, world=self._world)

    def _lease(self) -> Lease:
        """The round's devices; with ``--pto-health-check on`` every leased device is probed
        first, and a failing one is quarantined (the lease then moves on to healthy ones)."""
        from pytest_pto._health import device_probes, lease_healthy

        probes = None
        if self._health_check:
            runtime = self.runtime
            probes = device_probes(
                runtime.adapter if runtime is not None else None,
                runtime.label if runtime is not None else "",
                self.plan.platform,
            )
        return lease_healthy(
            self._pool,
            self.plan.ranks * self.plan.devices_per_rank,
            self.plan.nodeid,
            self._lock_timeout,
            self.avoid,
            probes=probes,
            ttl=self.quarantine_ttl,
            round=self.plan.round,
        )

    def _remote_health(self) -> dict[str, Any] | None:
        """With ``--pto-health-check on`` and --pto-launcher=mpirun: what each host agent needs
        to run the probes on its own host (the adapter by ``module:attribute``, instantiated
        there as in every process that needs it; None when it keeps the no-op default)."""
        if not self._health_check:
            return None
        runtime = self.runtime
        spec = None
        if runtime is not None and type(runtime.adapter).probe is not RuntimeAdapter.probe:
            spec = runtime.spec
        return {
            "runtime": spec,
            "label": runtime.label if runtime is not None else "",
            "cache_dir": str(runtime.cache_dir) if runtime and runtime.cache_dir else None,
            "platform": self.plan.platform,
            "ttl": self.quarantine_ttl,
            "round": self.plan.round,
        }

    def quarantine(self, rank: int, device: int, **fields: Any) -> Any:
        """Quarantine ``rank``'s ``device`` where it is: this machine's pool, or with
        --pto-launcher=mpirun the lock dir of the rank's host (through its agent)."""
        if self.rank_hosts:
            assert self.lease is not None and self._multihost is not None
            try:
                return self.lease.quarantine(  # type: ignore[attr-defined]
                    self.rank_host_index[rank], device, self._multihost.lock_dir, **fields
                )
            except Exception as exc:  # the host or its agent is gone: reported like a lost dir
                raise OSError(f"host {self.rank_hosts[rank]}: {exc}") from exc
        return self._pool.quarantine(device, **fields)

    def retry(self, first_outcome: str) -> None:
        """End this attempt (workers, after_round, lease) and make the handle ready for a
        second attempt in fresh workers, on other devices where the pool has them."""
        first = self.lease.devices if self.lease is not None else ()
        self.outcome = first_outcome
        errors: list[str] = []
        self._end_attempt(errors)
        with contextlib.suppress(OSError):  # keep the first attempt's logs apart
            old = self.log_dir / "attempt-1"
            old.mkdir(exist_ok=True)
            for path in self.log_dir.glob("*.log"):
                path.rename(old / path.name)
        self.attempt = 2
        self.first_outcome = first_outcome
        self.first_devices = tuple(first)
        self.avoid = tuple(first)
        # with --pto-launcher=mpirun: each host avoids its own first devices, not their ids on
        # every host (device 1 of host b failed; device 1 of host a is another card)
        self.avoid_by_host = dict(getattr(self.lease, "by_host", None) or {})
        self.lease = None
        self._world = None
        self._failed_world = None
        self.started = False
        self.start_error = None
        self.ready_at = None
        self.round_dir = None
        self.rank_devices = {}
        self._pids = ()
        self.launch_failed = False
        self.outcome = None
        if errors:
            raise RuntimeError("; ".join(errors))

    def _world_config(
        self,
        world_config: Any,
        devices: tuple[int, ...],
        *,
        hosts: tuple[str, ...] = (),
        master_addr: str = MASTER_ADDR,
    ) -> Any:
        """This round's WorldConfig: the plan, the adapter, the platform's device binding and
        the conventional environment of distributed jobs (docs/design.md section 4.5); with
        --pto-launcher=mpirun the whole world (``hosts``: each rank's host, ``master_addr``:
        rank 0's host)."""
        plan = self.plan
        per_rank = plan.devices_per_rank
        size = plan.ranks
        self.rank_devices = {r: devices[r * per_rank : (r + 1) * per_rank] for r in range(size)}
        platform = get_platform(plan.platform)
        self.round_dir = take_round_dir("round")
        env = {
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(free_port()),
            # the round's effective deadlines, so a runtime can time out before the watchdogs
            "PTO_INIT_TIMEOUT": f"{plan.init_timeout:g}",
            "PTO_ROUND_TIMEOUT": f"{plan.round_timeout:g}" if plan.round_timeout else "off",
        }
        env.update(plan.env)
        if hosts:  # across hosts the ranks meet at rank 0's host, whatever --pto-env says
            env["MASTER_ADDR"] = master_addr
        rank_env: dict[int, dict[str, str]] = {}
        runtime = self.runtime
        for rank, ids in self.rank_devices.items():
            extra: Mapping[str, str] = {}
            if runtime is not None:
                extra = runtime.adapter.worker_env(rank, size, ids[0]) or {}
                _check_worker_env(runtime.label, rank, extra)
            merged = {**extra, **plan.rank_env.get(rank, {})}
            if merged:
                rank_env[rank] = merged
        return world_config(
            devices=devices,
            env=env,
            rank_env=rank_env,
            init_barrier=plan.init_barrier,
            init_timeout=plan.init_timeout,
            round_timeout=plan.round_timeout,
            log_dir=self.log_dir,
            platform=plan.platform,
            name=plan.nodeid,
            devices_per_rank=per_rank,
            runtime=runtime.worker_spec if runtime is not None else None,
            cache_dir=runtime.cache_dir if runtime is not None else None,
            round_dir=self.round_dir,
            device_env={r: platform.binding_env(ids) for r, ids in self.rank_devices.items()},
            local_device_ids={
                r: platform.local_device_id(ids) for r, ids in self.rank_devices.items()
            },
            hosts=hosts,
        )

    # -- watchdog for the test body outside run() ----------------------------------------------
    def arm_watchdog(self) -> None:
        if (
            self.plan.round_timeout is None
            or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None)
        ):
            return
        self._old_alarm = signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.plan.round_timeout + _WATCHDOG_GRACE_S)
        self._alarm_armed = True

    def disarm_watchdog(self) -> None:
        if not self._alarm_armed:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old_alarm or signal.SIG_DFL)
        self._alarm_armed = False

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._in_run:  # World.run enforces the deadline itself, with every rank's stack
            signal.setitimer(signal.ITIMER_REAL, _WATCHDOG_GRACE_S)
            return
        __tracebackhide__ = True
        self.disarm_watchdog()
        budget = self.plan.round_timeout
        raise RoundHang(
            f"the test body ran past the {budget:g} s round timeout (--pto-round-timeout or "
            "the marker's round_timeout), outside pto_world.run; every rank's stack follows"
        )

    # -- teardown ------------------------------------------------------------------------------
    def log_texts(self, limit: int = 20000) -> dict[str, str]:
        """Tail of every log file of this round (name -> text), for report sections."""
        out: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for path in sorted(self.log_dir.glob("*.log")):
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                text = data[-limit:].decode("utf-8", "replace")
                if len(data) > limit:
                    text = f"[... {len(data) - limit} bytes cut ...]\n" + text
                out[path.name] = text
        return out

    def finish(self) -> None:
        """Close the World at the end of a test body that passed, so that a rank whose
        runtime fails to close fails this round (phase ``close``) instead of its teardown."""
        if self._world is not None and not self._world.closed:
            self._world.shutdown()

    def close(self) -> None:
        """Stop the chip workers, tell the adapter the round is over, remove the round dir,
        release the devices, drop temporary logs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        try:
            self._end_attempt(errors)
        finally:
            if self._own_log_dir:
                give_round_dir("logs", self.log_dir)
        if errors:
            raise RuntimeError("; ".join(errors))

    def _end_attempt(self, errors: list[str]) -> None:
        """Stop the workers, after_round, remove the round dir, release the lease."""
        self.disarm_watchdog()
        try:
            if self._world is not None:
                try:
                    self._world.close()
                except Exception as exc:  # keep going: the devices must still be released
                    errors.append(f"World.close failed: {exc!r}")
            if self.runtime is not None and self.round_dir is not None:
                try:
                    self.runtime.adapter.after_round(self._round_info())
                except Exception as exc:
                    errors.append(f"{self.runtime.label}: after_round raised {exc!r}")
        finally:  # even when interrupted (a second Ctrl-C): close() will not come again
            if self.round_dir is not None:
                give_round_dir("round", self.round_dir)
            if self.lease is not None:
                try:
                    self._item.config.hook.pytest_pto_lease_released(
                        item=self._item, lease=self.lease
                    )
                finally:
                    self.lease.release()

    def _round_info(self) -> RoundInfo:
        return RoundInfo(
            nodeid=self.plan.nodeid,
            round=self.plan.round,
            devices=self.lease.devices if self.lease is not None else (),
            pids=self._pids,
            round_dir=self.round_dir,
            outcome=self.outcome or "failed",
            platform=self.plan.platform,
        )


def _check_worker_env(label: str, rank: int, env: Any) -> None:
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
    ):
        raise TypeError(
            f"{label}: worker_env(rank={rank}, ...) returned {env!r}: must be a dict of "
            "environment variable names to str values"
        )
