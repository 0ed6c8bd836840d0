"""Chip workers and the INIT_DONE barrier: one process per rank, driven through shared-memory
mailboxes.

``World.start(WorldConfig(devices=(0, 1)))`` forks one chip worker per device from the zygote
(:mod:`libpto._zygote`); each initialises its runtime (libpto's, bound to the world's comm
window, or the one a runtime adapter named by ``WorldConfig.runtime`` brings up) and publishes
INIT_DONE (or INIT_FAILED with its error). With ``init_barrier`` on (the fix of
docs/design.md §1) the parent waits for every rank before it dispatches anything, then resets each
mailbox to IDLE; off, each rank picks up its first task as soon as its own init is done, which
reproduces the old behaviour where a fast rank's op budget pays for a slow peer's init.

``World.run(op, *args)`` sends a module-level op by reference to every rank and returns the
per-rank results in rank order, or raises the first failing rank's error (see
:class:`libpto.errors.RankError`). A failed world is closed; nothing it started outlives it.

Environment read here (besides what WorldConfig passes on to the ranks):
 - ``PTO_MBOX_PAYLOAD_BYTES`` (owner): capacity of each mailbox channel, default 1 MiB; a task
   frame or a result larger than that fails with an error naming the limit.
 - ``PTO_CHIP_INIT_HOOK=module:function`` (a rank's env, e.g. via ``rank_env``): called with
   the chip after its runtime is up and before INIT_DONE, to inject init behaviour (tests use it
   to make one rank fail, die or stall during init).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libpto import _footprint, _procs
from libpto._checks import EnvError, env_mapping, seconds_problem, text_problem
from libpto._comm import CommWindow
from libpto._footprint import cleanup_stale, new_name
from libpto._mailbox import DEFAULT_PAYLOAD_BYTES, Channel, Mailbox, Stamp, State, now_ns
from libpto._worker import EXIT_CLOSE_FAILED, INIT_HOOK_ENV, Chip
from libpto._worker_frames import Failure, OpRef, decode_result, encode_task
from libpto.errors import (
    CommTimeout,
    ConfigError,
    InitFailed,
    InitTimeout,
    InvalidArgument,
    PeerDead,
    PtoError,
    RankCloseFailed,
    RankCrashed,
    RankHang,
    RankOpFailed,
    RuntimeStateError,
)

__all__ = [
    "INIT_HOOK_ENV",
    "Chip",
    "World",
    "WorldConfig",
    "start_zygote",
]

PAYLOAD_ENV = "PTO_MBOX_PAYLOAD_BYTES"
#: Platform labels a world accepts (pytest-pto's platforms). libpto's own runtime is simulated
#: whatever the label; the device binding of each rank is ``WorldConfig.device_env``.
PLATFORMS = ("sim", "ascend", "cuda")
_ADAPTER_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
SHUTDOWN_GRACE = 2.0  # seconds a rank gets to leave after SHUTDOWN before it is killed
STARTUP_GRACE = 0.5  # the same, when a failed start rolls back (a rank stuck in init won't leave)
KILL_WAIT = 5.0  # seconds to wait for killed ranks to be reaped
STACKS_WAIT = 1.0  # seconds ranks get to answer a stack request
FAILURE_SETTLE = 0.05  # after a first failure, how long to let other ranks report (for blame)
POLL_SLICE_MS = 100  # longest single sleep of a wait loop (zygote liveness, deadlines)

start_zygote = _procs.start_zygote


@dataclass(frozen=True)
class WorldConfig:
    """How to start a world of chip workers (one rank per ``devices_per_rank`` devices).

    ``runtime`` names a runtime adapter class (``module:attribute``, pytest-pto's
    ``RuntimeAdapter`` contract) that each rank instantiates to bring its runtime up and down;
    None (the default) is libpto's own runtime, bound to the comm window. ``cache_dir`` is set
    on the adapter. ``round_dir`` is a directory common to every rank (``chip.round_dir``,
    ``PTO_ROUND_DIR``). ``device_env`` is each rank's device binding (e.g.
    ``{0: {"CUDA_VISIBLE_DEVICES": "2"}}``); None binds with ``ASCEND_RT_VISIBLE_DEVICES`` as
    libpto always did. ``local_device_ids`` is the id each rank's runtime opens after that
    binding (default: its first physical device). ``platform`` is one of :data:`PLATFORMS`, a
    label: libpto's runtime is simulated whatever it says.
    """

    devices: tuple[int, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    rank_env: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    init_barrier: bool = True
    init_timeout: float = 60.0
    round_timeout: float | None = None
    log_dir: Path | None = None
    platform: str = "sim"
    name: str = ""
    devices_per_rank: int = 1
    runtime: str | None = None
    cache_dir: Path | None = None
    round_dir: Path | None = None
    device_env: Mapping[int, Mapping[str, str]] | None = None
    local_device_ids: Mapping[int, int] | None = None
    #: a slice of a larger world whose other ranks run on other hosts (pytest-pto's mpirun
    #: launcher): local rank r is global rank ``rank_base + r`` of ``world_size`` ranks, and
    #: attaches to the existing comm window ``comm_name`` (global size) that the host agent
    #: mirrors to the other hosts (without one, the world creates a window of ``world_size``).
    #: Mailbox slots stay local; everything the World reports names global ranks: error texts
    #: and details, ``stacks()``, ``events``, ``init_ms``, ``logs``, ``close_failures``.
    rank_base: int = 0
    world_size: int | None = None
    comm_name: str | None = None
    #: the host this world runs on, named after every rank in its texts ("rank 3 (host b)")
    #: and set as the errors' ``details["host"]``; "" (the default) names no host
    host: str = ""
    #: the host each rank runs on, in rank order: how pytest-pto's mpirun launcher shows the
    #: whole world of a multi-host round (to its ``pytest_pto_world_config`` hook); device ids
    #: are then unique per host. Empty (the default): every rank on this machine.
    #: ``World.start`` runs ranks of one host only (a host agent starts its slice without it).
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.devices, (str, bytes)) or not isinstance(self.devices, Iterable):
            raise InvalidArgument(
                f"WorldConfig.devices={self.devices!r}: must be a sequence of device ids"
            )
        devices = tuple(self.devices) if not isinstance(self.devices, tuple) else self.devices
        if not devices:
            raise InvalidArgument("WorldConfig.devices: must name at least one device")
        for d in devices:
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise InvalidArgument(f"WorldConfig.devices: {d!r} is not a device id (int >= 0)")
        if len(set(devices)) != len(devices) and not self.hosts:
            raise InvalidArgument(f"WorldConfig.devices: {devices} names a device twice")
        object.__setattr__(self, "devices", devices)
        k = self.devices_per_rank
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or len(devices) % k:
            raise InvalidArgument(
                f"WorldConfig.devices_per_rank={k!r}: must be an int >= 1 that divides the "
                f"{len(devices)} devices"
            )
        size = len(devices) // k
        _check_env("WorldConfig.env", self.env)
        for label, per_rank in (("rank_env", self.rank_env), ("device_env", self.device_env)):
            if per_rank is None and label == "device_env":
                continue
            if not isinstance(per_rank, Mapping):
                raise InvalidArgument(
                    f"WorldConfig.{label}={per_rank!r}: must be a mapping rank -> env"
                )
            for rank, env in per_rank.items():
                if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < size:
                    raise InvalidArgument(
                        f"WorldConfig.{label}: rank {rank!r} is not in [0, {size})"
                    )
                _check_env(f"WorldConfig.{label}[{rank}]", env)
        for rank, local in (self.local_device_ids or {}).items():
            if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < size:
                raise InvalidArgument(
                    f"WorldConfig.local_device_ids: rank {rank!r} is not in [0, {size})"
                )
            if isinstance(local, bool) or not isinstance(local, int) or local < 0:
                raise InvalidArgument(
                    f"WorldConfig.local_device_ids[{rank}]={local!r}: must be an int >= 0"
                )
        problem = seconds_problem(self.init_timeout)
        if problem is not None:
            raise InvalidArgument(f"WorldConfig.init_timeout={self.init_timeout!r}: {problem}")
        if self.round_timeout is not None:
            problem = seconds_problem(self.round_timeout)
            if problem is not None:
                raise InvalidArgument(
                    f"WorldConfig.round_timeout={self.round_timeout!r}: {problem}, or None"
                )
        if not isinstance(self.init_barrier, bool):
            raise InvalidArgument(
                f"WorldConfig.init_barrier={self.init_barrier!r}: must be True or False"
            )
        for label, path in (
            ("log_dir", self.log_dir),
            ("cache_dir", self.cache_dir),
            ("round_dir", self.round_dir),
        ):
            if path is not None and (
                not isinstance(path, (str, os.PathLike)) or text_problem(str(path))
            ):
                raise InvalidArgument(
                    f"WorldConfig.{label}={path!r}: must be a path (str or Path) without "
                    "NUL, or None"
                )
        if not isinstance(self.name, str) or text_problem(self.name):
            raise InvalidArgument(f"WorldConfig.name={self.name!r}: must be text without NUL")
        if self.platform not in PLATFORMS:
            raise InvalidArgument(
                f"WorldConfig.platform={self.platform!r}: unknown platform (known: "
                f"{', '.join(map(repr, PLATFORMS))})"
            )
        if self.runtime is not None and (
            not isinstance(self.runtime, str) or not _ADAPTER_SPEC.match(self.runtime)
        ):
            raise InvalidArgument(
                f"WorldConfig.runtime={self.runtime!r}: must be 'module:attribute' of a runtime "
                "adapter class, or None for libpto's own runtime"
            )
        self._check_slice(size)
        self._check_hosts(size)

    def _check_hosts(self, size: int) -> None:
        """``hosts``: one name per rank; a device id at most once per host."""
        if isinstance(self.hosts, (str, bytes)) or not isinstance(self.hosts, Iterable):
            raise InvalidArgument(f"WorldConfig.hosts={self.hosts!r}: must be a sequence of names")
        hosts = tuple(self.hosts)
        object.__setattr__(self, "hosts", hosts)
        if not hosts:
            return
        if len(hosts) != size or not all(isinstance(h, str) and h for h in hosts):
            raise InvalidArgument(
                f"WorldConfig.hosts={hosts!r}: must name the host of each of the {size} ranks"
            )
        seen: set[tuple[str, int]] = set()
        for rank, host in enumerate(hosts):
            for device in self.rank_devices(rank):
                if (host, device) in seen:
                    raise InvalidArgument(
                        f"WorldConfig.devices: {self.devices} names device {device} twice on "
                        f"host {host}"
                    )
                seen.add((host, device))

    def _check_slice(self, size: int) -> None:
        """``rank_base``/``world_size``/``comm_name``: a host slice of a larger world."""
        base, total = self.rank_base, self.world_size
        if isinstance(base, bool) or not isinstance(base, int) or base < 0:
            raise InvalidArgument(f"WorldConfig.rank_base={base!r}: must be an int >= 0")
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < base + size
        ):
            raise InvalidArgument(
                f"WorldConfig.world_size={total!r}: must be an int >= rank_base + ranks "
                f"({base + size}), or None"
            )
        if total is None and base:
            raise InvalidArgument(
                f"WorldConfig.rank_base={base}: a slice (rank_base > 0) needs world_size"
            )
        if not isinstance(self.host, str) or text_problem(self.host):
            raise InvalidArgument(f"WorldConfig.host={self.host!r}: must be text without NUL")
        if self.comm_name is not None and (
            not isinstance(self.comm_name, str) or not self.comm_name.startswith("pto-")
        ):
            raise InvalidArgument(
                f"WorldConfig.comm_name={self.comm_name!r}: must name a comm window "
                "('pto-...'), or None"
            )

    @property
    def size(self) -> int:
        return len(self.devices) // self.devices_per_rank

    def rank_devices(self, rank: int) -> tuple[int, ...]:
        """The devices of ``rank``: ``devices[rank*K:(rank+1)*K]`` with K devices per rank."""
        k = self.devices_per_rank
        return self.devices[rank * k : (rank + 1) * k]


def _check_env(source: str, env: Mapping[str, str]) -> None:
    try:
        env_mapping(env)  # the rules every env source shares
    except EnvError as exc:
        text = exc.text(
            source,
            mapping="{where}={got!r}: {rule}",
            value="{where}: {key}={got!r}: the value {rule}",
        )
        raise InvalidArgument(text) from None


def _payload_bytes() -> int:
    raw = os.environ.get(PAYLOAD_ENV)
    if raw is None:
        return DEFAULT_PAYLOAD_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 4096 <= value <= 1 << 30:
        raise ConfigError(f"{PAYLOAD_ENV}={raw}: must be an integer in [4096, 1073741824]")
    return value


_default_log_root: Path | None = None
_stale_checked = False


def _default_log_dir() -> Path:
    global _default_log_root
    if _default_log_root is None or not _default_log_root.exists():
        # per process, removed at exit (or by a later process if this one is killed):
        # pass WorldConfig.log_dir to keep logs
        _default_log_root = _footprint.owner_temp_dir("logs")
        import shutil  # here, not at the top: ops modules import this one (_footprint._tmp_root)

        atexit.register(shutil.rmtree, _default_log_root, True)
    return _default_log_root


def _cleanup_stale_once() -> None:
    global _stale_checked
    if _stale_checked:
        return
    _stale_checked = True
    with contextlib.suppress(Exception):  # a courtesy: starting must not depend on it
        cleanup_stale()


class World:
    """N chip-worker processes, one per device, and the mailboxes that drive them."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.size = config.size
        self.devices = config.devices
        self.name = config.name
        self.logs: dict[int, Path] = {}
        self.init_ms: dict[int, float] = {}
        self.init_skew_ms: float | None = None
        #: True when ``init_skew_ms`` is a lower bound: the world was torn down while some
        #: rank was still initialising (or never started), so its init end is "after teardown"
        self.init_skew_partial = False
        self._mbox: Mailbox | None = None
        self._mbox_name = ""
        self._comm: CommWindow | None = None
        self._comm_name = ""
        self._zygote: _procs.Zygote | None = None
        self._pids: list[int] = []
        self._closed = False
        self._close_lock = threading.Lock()
        self._stamps: dict[int, dict[Stamp, int]] = {}
        self._op_spans: list[tuple[int, int, int, int]] = []  # (run, rank, start_ns, end_ns)
        # slices still open at teardown (a hung op, an unfinished init): (name, rank, start, end)
        self._open_spans: list[tuple[str, int, int, int]] = []
        self._teardown: dict[int, tuple[int, int]] = {}
        self._runs = 0
        self.close_failures: dict[int, Failure] = {}  # rank -> its runtime's close error
        self._t_start = 0.0
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- start ------------------------------------------------------------------------------------
    @classmethod
    def start(cls, config: WorldConfig) -> World:
        """Start every rank; with the barrier on, return once all are initialised.

        Raises InitFailed / InitTimeout / RankCrashed naming the rank; nothing is left behind.
        The error carries the closed world as ``pto_world`` so callers can still read its
        timeline (``events``, ``init_ms``, ``init_skew_ms``) of the failed start."""
        if len(set(config.hosts)) > 1:
            raise InvalidArgument(
                f"WorldConfig.hosts={config.hosts!r}: World.start runs the ranks of one host; "
                "ranks on several hosts start through pytest-pto's --pto-launcher=mpirun"
            )
        world = cls(config)
        try:
            world._spawn()
            if config.init_barrier:
                world._barrier()
        except BaseException as exc:
            # rollback: ranks that are up leave gracefully, the rest are killed after a grace
            try:
                world._close(grace=STARTUP_GRACE)
            finally:
                with contextlib.suppress(AttributeError, TypeError):
                    exc.pto_world = world  # type: ignore[attr-defined]
            raise
        return world

    def _spawn(self) -> None:
        _cleanup_stale_once()
        cfg = self.config
        self._mbox_name = new_name("mbox")
        self._mbox = Mailbox.create(self._mbox_name, self.size, _payload_bytes())
        first, total = cfg.rank_base, cfg.world_size or self.size
        if cfg.comm_name:  # a host slice: the host agent owns (and unlinks) the window
            self._comm, self._comm_name = None, ""
            comm_name = cfg.comm_name
        else:
            self._comm, self._comm_name = _create_comm(total)
            comm_name = self._comm_name
        log_dir = Path(cfg.log_dir) if cfg.log_dir is not None else _default_log_dir()
        if cfg.log_dir is None:
            log_dir = log_dir / self._mbox_name.removeprefix("pto-mbox-")
        log_dir.mkdir(parents=True, exist_ok=True)
        base = dict(os.environ)
        base.update(cfg.env)
        label = cfg.name or self._mbox_name
        specs = []
        for rank in range(self.size):
            ids = cfg.rank_devices(rank)
            device = ids[0]
            grank = first + rank
            local = (cfg.local_device_ids or {}).get(rank, device)
            env = dict(base)
            env.update(cfg.rank_env.get(rank, {}))
            if cfg.device_env is None:  # libpto's own binding, as it always was
                env["ASCEND_RT_VISIBLE_DEVICES"] = ",".join(map(str, ids))
            else:
                env.update(cfg.device_env.get(rank, {}))
            env.update(
                PTO_RANK=str(grank),
                PTO_WORLD_SIZE=str(total),
                PTO_DEVICE_ID=str(device),
                PTO_DEVICE_IDS=",".join(map(str, ids)),
                PTO_LOCAL_DEVICE_ID=str(local),
                PTO_COMM_NAME=comm_name,
                # the conventional names (torch.distributed, HCCL) of the same facts
                RANK=str(grank),
                WORLD_SIZE=str(total),
                LOCAL_RANK=str(rank),
                RANK_ID=str(grank),
                RANK_SIZE=str(total),
            )
            if cfg.round_dir is not None:
                env["PTO_ROUND_DIR"] = str(cfg.round_dir)
            self.logs[grank] = log_dir / f"rank{grank}.log"
            specs.append(
                {
                    "rank": grank,
                    "slot": rank,
                    "size": total,
                    "device_id": device,
                    "device_ids": list(ids),
                    "local_device_id": local,
                    "round_dir": str(cfg.round_dir) if cfg.round_dir is not None else None,
                    "runtime": cfg.runtime,
                    "cache_dir": str(cfg.cache_dir) if cfg.cache_dir is not None else None,
                    "mbox": self._mbox_name,
                    "owner": os.getpid(),
                    "env": env,
                    "log": str(self.logs[grank]),
                    "cwd": os.getcwd(),
                    "world": "".join(c if c.isalnum() or c in "-_.:/[]" else "_" for c in label)[
                        :80
                    ],
                }
            )
        segments = [s for s in (self._mbox_name, self._comm_name) if s]
        _procs.register_world(self)
        self._t_start = time.monotonic()
        t_spawn = now_ns()
        zygote = _procs.get_zygote()
        pids = self._spawn_on(zygote, specs, segments, t_spawn)
        if pids is None:  # the zygote preloaded a module that started a thread: replace it
            zygote = _procs.get_zygote(blocked={zygote.culprit} - {""})
            pids = self._spawn_on(zygote, specs, segments, t_spawn)
            if pids is None:
                raise RuntimeStateError(f"pto-zygote is unusable: {zygote.tainted}")
        self._zygote = zygote
        self._pids = pids
        self._finalizer = weakref.finalize(
            self, _finalize, list(pids), list(segments), self._mbox, self._comm
        )

    def _spawn_on(
        self, zygote: _procs.Zygote, specs: list[dict[str, Any]], segments: list[str], t: int
    ) -> list[int] | None:
        """The zygote's spawn, within what is left of the startup deadline."""
        left = max(self._t_start + self.config.init_timeout - time.monotonic(), 0.001)
        try:
            return zygote.spawn(
                self._mbox_name,
                specs,
                segments,
                t,
                timeout=left,
                runtime=self.config.runtime,
                cache_dir=str(self.config.cache_dir) if self.config.cache_dir else None,
            )
        except TimeoutError as exc:
            missing = list(range(self.size))
            raise InitTimeout(
                f"{self._who(missing)}: not started within the "
                f"{self.config.init_timeout:g} s startup deadline (init_timeout): {exc}",
                rank=self._global(missing[0]),
                missing=[self._global(r) for r in missing],
                stacks={},
                **self._host_detail(),
            ) from None

    # -- barrier ----------------------------------------------------------------------------------
    def _barrier(self) -> None:
        mbox = self._require_mbox()
        deadline = self._t_start + self.config.init_timeout
        pending = set(range(self.size))
        while pending:
            bell = mbox.doorbell()
            failures = []
            for rank in sorted(pending):
                state = mbox.load(rank)
                if state == State.INIT_DONE:
                    pending.discard(rank)
                elif state == State.INIT_FAILED:
                    failures.append((mbox.time(rank, Stamp.INIT_END), rank))
                elif mbox.exit_status(rank) is not None:
                    failures.append((mbox.time(rank, Stamp.EXIT), rank))
            if failures:
                raise self._init_error(min(failures)[1])
            if not pending:
                break
            self._check_zygote(pending, "before INIT_DONE")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._init_timeout(sorted(pending))
            mbox.doorbell_wait(bell, min(POLL_SLICE_MS, max(1, int(left * 1000))))
        for rank in range(self.size):
            mbox.stamp(rank, Stamp.RELEASE)
            mbox.cas(rank, State.INIT_DONE, State.IDLE)
        self._snapshot()

    def _init_error(self, rank: int) -> PtoError:
        mbox = self._require_mbox()
        if mbox.load(rank) == State.INIT_FAILED:
            ok, failure = decode_result(mbox.read(rank, Channel.INIT))
            assert not ok and isinstance(failure, Failure)
            err = failure.pto
            details = _error_details(err)
            return InitFailed(
                f"{self._who(rank)}: INIT_FAILED: {failure.text}",
                code=err.code if err else 0,
                name=err.name if err else failure.type_name,
                rank=self._global(rank),
                error=failure.error,
                traceback=failure.traceback,
                exc_type=failure.qualname,
                exc_code=failure.code,
                exc_message=failure.text,
                log=self._log_of(rank),
                **details,
                **self._host_detail(),
            )
        status = mbox.exit_status(rank)
        assert status is not None
        cause, details = _procs.describe_wait_status(status)
        return RankCrashed(
            f"{self._who(rank)}: died before INIT_DONE ({cause})",
            rank=self._global(rank),
            phase="init",
            log=self._log_of(rank),
            **details,
            **self._host_detail(),
        )

    def _init_timeout(self, missing: list[int]) -> InitTimeout:
        stacks = self._collect_stacks(missing)
        text = "\n".join(stacks.values())
        return InitTimeout(
            f"{self._who(missing)}: no INIT_DONE within the {self.config.init_timeout:g} s "
            f"startup deadline (init_timeout)\n{text}",
            rank=self._global(missing[0]),
            missing=[self._global(r) for r in missing],
            stacks=stacks,
            **self._host_detail(),
        )

    # -- run --------------------------------------------------------------------------------------
    def run(
        self, op: Callable[..., Any], /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> list[Any]:
        """Call ``op(chip, *args, **kwargs)`` in every rank; per-rank returns in rank order."""
        if self._closed:
            raise RuntimeStateError(
                f"World {self.name or self._mbox_name}: closed (a failed world is not reused)"
            )
        mbox = self._require_mbox()
        if timeout is not None and seconds_problem(timeout) is not None:
            raise InvalidArgument(
                f"World.run: timeout={timeout!r}: {seconds_problem(timeout)}, or None"
            )
        frame = encode_task(op, args, kwargs)
        ref = OpRef.of(op)
        if len(frame) > mbox.capacity:
            raise InvalidArgument(
                f"World.run: the task frame of op {ref.label} is {len(frame)} bytes, more than "
                f"the mailbox limit of {mbox.capacity} bytes per rank ({PAYLOAD_ENV})"
            )
        if self._zygote is not None:
            self._zygote.want(ref.module)
        limit = timeout if timeout is not None else self.config.round_timeout
        try:
            try:
                return self._run(frame, ref.label, limit)
            finally:
                self._record_ops()
        except BaseException:
            # ranks still inside the op cannot answer SHUTDOWN: kill them now, the rest leave
            self._close(kill=self._busy_ranks())
            raise

    def _busy_ranks(self) -> list[int]:
        mbox = self._mbox
        if mbox is None or mbox.closed:
            return []
        return [r for r in range(self.size) if mbox.load(r) == State.TASK_READY]

    def _run(self, frame: bytes, label: str, limit: float | None) -> list[Any]:
        mbox = self._require_mbox()
        self._runs += 1
        t0 = time.monotonic()
        results: list[Any] = [None] * self.size
        failures: list[tuple[int, int, int, str, Any]] = []  # (secondary, ns, rank, kind, info)
        pending = set(range(self.size))
        for rank in range(self.size):
            mbox.write(rank, Channel.TASK, frame)
            mbox.stamp(rank, Stamp.DISPATCH)
            if not (
                mbox.cas(rank, State.IDLE, State.TASK_READY)
                or mbox.cas(rank, State.INIT_DONE, State.TASK_READY)
            ):
                state = mbox.load(rank)
                if state != State.INIT_FAILED and mbox.exit_status(rank) is None:
                    raise RuntimeStateError(
                        f"{self._who(rank)}: mailbox in state {state.name}, cannot dispatch "
                        f"op {label}"
                    )
        first_failure = 0.0
        while pending:
            bell = mbox.doorbell()
            for rank in sorted(pending):
                state = mbox.load(rank)
                if state == State.TASK_DONE:
                    pending.discard(rank)
                    ok, value = decode_result(mbox.read(rank, Channel.TASK))
                    mbox.cas(rank, State.TASK_DONE, State.IDLE)
                    if ok:
                        results[rank] = value
                    else:
                        secondary = isinstance(value.error, (PeerDead, CommTimeout))
                        ns = mbox.time(rank, Stamp.OP_END)
                        failures.append((int(secondary), ns, rank, "op", value))
                elif state == State.INIT_FAILED:
                    pending.discard(rank)
                    failures.append((0, mbox.time(rank, Stamp.INIT_END), rank, "init", None))
                else:
                    status = mbox.exit_status(rank)
                    if status is not None:
                        pending.discard(rank)
                        failures.append((0, mbox.time(rank, Stamp.EXIT), rank, "crash", status))
            if not pending:
                break
            now = time.monotonic()
            if failures:
                first_failure = first_failure or now
                if now - first_failure > FAILURE_SETTLE:
                    break
            else:
                self._check_zygote(pending, f"during op {label}")
                if not self.config.init_barrier:
                    late = [r for r in sorted(pending) if not mbox.time(r, Stamp.INIT_END)]
                    if late and now - self._t_start > self.config.init_timeout:
                        raise self._init_timeout(late)
                if limit is not None and now - t0 > limit:
                    raise self._hang(sorted(pending), label, limit)
            wait_ms = POLL_SLICE_MS
            if failures:
                wait_ms = 10
            elif limit is not None:
                wait_ms = max(1, min(wait_ms, int((t0 + limit - now) * 1000) + 1))
            mbox.doorbell_wait(bell, wait_ms)
        if failures:
            raise self._op_failure(sorted(failures), sorted(pending), label)
        return results

    def _op_failure(
        self, failures: list[tuple[int, int, int, str, Any]], running: list[int], label: str
    ) -> PtoError:
        _, _, rank, kind, info = failures[0]
        stacks = self._collect_stacks(list(range(self.size)))
        others = {self._global(r): k for _, _, r, k, _ in failures[1:]}
        common = {
            "rank": self._global(rank),
            "stacks": stacks,
            "still_running": [self._global(r) for r in running],
            "other_failures": others,
            "log": self._log_of(rank),
            **self._host_detail(),
        }
        who = self._who(rank)
        if kind == "init":
            err = self._init_error(rank)
            err.details.update(common)
            return err
        if kind == "crash":
            cause, details = _procs.describe_wait_status(info)
            details.update(common)
            return RankCrashed(
                f"{who}: crashed with {cause} during op {label}", phase="op", **details
            )
        failure: Failure = info
        pto = failure.pto
        if pto is not None and pto.code:
            bits = [f"code {pto.code}"]
            sub = pto.details.get("sub_class")
            if sub:
                bits.append(str(sub))
            stuck = pto.details.get("stuck_task")
            if stuck is not None and stuck >= 0:
                bits.append(f"stuck task {stuck}")
            by, thread = pto.details.get("latched_by"), pto.details.get("latch_thread")
            if by and isinstance(thread, int) and thread >= 0:
                bits.append(f"latched by {by} thread {thread}")
            head = f"{who}: {pto.name} ({', '.join(bits)})"
        elif pto is not None:
            head = f"{who}: {type(pto).__name__}: {pto.message}"
        else:
            head = f"{who}: op {label} raised {failure.type_name}: {failure.text}"
        return RankOpFailed(
            f"{head}\n{failure.traceback}",
            code=pto.code if pto else 0,
            name=pto.name if pto else failure.type_name,
            error=pto,
            traceback=failure.traceback,
            exception_type=failure.type_name,
            exc_type=failure.qualname,
            exc_code=failure.code,
            exc_message=failure.text,
            **{**_error_details(pto), **common},
        )

    def _hang(self, running: list[int], label: str, limit: float) -> RankHang:
        stacks = self._collect_stacks(list(range(self.size)))
        rank = -1 if len(running) == self.size else self._global(running[0])
        text = "\n".join(stacks.values())
        return RankHang(
            f"{self._who(running)}: hang: op {label} still running after the {limit:.3g} s "
            f"round deadline\n{text}",
            rank=rank,
            stuck_ranks=[self._global(r) for r in running],
            stacks=stacks,
            **self._host_detail(),
        )

    # -- stacks -----------------------------------------------------------------------------------
    def stacks(self) -> dict[int, str]:
        """Every rank's Python stacks and runtime state (what each thread is doing)."""
        if self._closed:
            raise RuntimeStateError("World.stacks: the world is closed")
        return self._collect_stacks(list(range(self.size)))

    def _collect_stacks(self, ranks: list[int]) -> dict[int, str]:
        """The stacks of local ranks ``ranks``, keyed (and titled) by global rank."""
        mbox = self._require_mbox()
        out: dict[int, str] = {}
        asked = []
        for rank in ranks:
            status = mbox.exit_status(rank)
            if status is not None:
                cause, _ = _procs.describe_wait_status(status)
                out[rank] = f"--- {self._who(rank)}: not running ({cause}) ---"
            else:
                mbox.ctrl_store(rank, State.CONTROL_REQUEST)
                asked.append(rank)
        deadline = time.monotonic() + STACKS_WAIT
        waiting = set(asked)
        while waiting and time.monotonic() < deadline:
            bell = mbox.doorbell()
            for rank in sorted(waiting):
                if mbox.ctrl_load(rank) == State.CONTROL_DONE:
                    out[rank] = mbox.read(rank, Channel.CONTROL).decode("utf-8", "replace")
                    waiting.discard(rank)
                elif mbox.exit_status(rank) is not None:
                    out[rank] = f"--- {self._who(rank)}: exited while dumping its stacks ---"
                    waiting.discard(rank)
            if waiting:
                mbox.doorbell_wait(bell, 20)
        if waiting:  # no answer from the watcher thread: faulthandler dumps into the log
            offsets = {}
            for rank in waiting:
                offsets[rank] = _size(self.logs[self._global(rank)])
                pid = mbox.pid(rank) or self._pids[rank]
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGUSR1)
            time.sleep(0.3)
            for rank in waiting:
                dump = _read_from(self.logs[self._global(rank)], offsets[rank])
                out[rank] = (
                    f"--- {self._who(rank)}: no answer to CONTROL_REQUEST; faulthandler dump "
                    f"---\n{dump}"
                )
        for rank in asked:
            mbox.ctrl_store(rank, State.IDLE)
        return {self._global(r): out[r] for r in ranks}

    # -- timeline ---------------------------------------------------------------------------------
    def _record_ops(self) -> None:
        """Op spans of this run (ranks that finished it; a hung rank has no end)."""
        self._snapshot()
        dispatched = min((st[Stamp.DISPATCH] for st in self._stamps.values()), default=0)
        for rank, st in self._stamps.items():
            start, end = st[Stamp.OP_START], st[Stamp.OP_END]
            if start >= dispatched and end >= start > 0:
                self._op_spans.append((self._runs, rank, start, end))

    def _record_open_spans(self) -> None:
        """Slices a rank never ended before teardown: they end where its teardown ends.

        An op of the last run with no end (a hung rank), an init with no end (a rank still
        initialising), so a hang's trace shows what each rank was doing when it was stopped."""
        dispatched = min((st[Stamp.DISPATCH] for st in self._stamps.values()), default=0)
        for rank, st in sorted(self._stamps.items()):
            end = self._teardown[rank][1]
            init_start, init_end = st[Stamp.INIT_START], st[Stamp.INIT_END]
            if init_start and not init_end:
                self._open_spans.append(("init", rank, init_start, end))
            op_start, op_end = st[Stamp.OP_START], st[Stamp.OP_END]
            if self._runs and dispatched and op_start >= dispatched and op_end < op_start:
                self._open_spans.append(("op", rank, op_start, end))

    def _snapshot(self, teardown_ns: int | None = None) -> None:
        """Read every rank's stamps; init times and the init skew from them.

        The skew is exact once every rank ended init. At teardown (``teardown_ns``) a rank
        still initialising ends init no earlier than now, so the skew of a failed round is
        the lower bound ``teardown - first init end`` (``init_skew_partial``)."""
        mbox = self._mbox
        if mbox is None or mbox.closed:
            return
        for rank in range(self.size):
            self._stamps[rank] = mbox.times(rank)
        ends = []
        for rank, st in self._stamps.items():
            if st[Stamp.INIT_END] and st[Stamp.INIT_START]:
                self.init_ms[self._global(rank)] = (st[Stamp.INIT_END] - st[Stamp.INIT_START]) / 1e6
                ends.append(st[Stamp.INIT_END])
        if len(ends) == self.size:
            self.init_skew_ms = (max(ends) - min(ends)) / 1e6
            self.init_skew_partial = False
        elif ends and teardown_ns is not None and self.size > 1:
            self.init_skew_ms = max(teardown_ns - min(ends), max(ends) - min(ends), 0) / 1e6
            self.init_skew_partial = True

    @property
    def events(self) -> list[dict[str, Any]]:
        """Timeline for trace viewers: per rank spawn/init/barrier_wait/op/teardown, in µs of
        wall-clock time (``time.time_ns() // 1000``)."""
        out: list[dict[str, Any]] = []

        def add(rank: int, name: str, start: int, end: int, **extra: Any) -> None:
            if start and end and end >= start:
                out.append(
                    {
                        "rank": self._global(rank),
                        "name": name,
                        "ts_us": start // 1000,
                        "dur_us": (end - start) // 1000,
                        **extra,
                    }
                )

        for rank, st in sorted(self._stamps.items()):
            add(rank, "spawn", st[Stamp.SPAWN], st[Stamp.START])
            add(rank, "init", st[Stamp.INIT_START], st[Stamp.INIT_END])
            add(rank, "barrier_wait", st[Stamp.INIT_END], st[Stamp.RELEASE])
        for run, rank, start, end in self._op_spans:
            add(rank, "op", start, end, run=run)
        for name, rank, start, end in self._open_spans:
            add(rank, name, start, end, open=True)
        for rank, (start, end) in sorted(self._teardown.items()):
            add(rank, "teardown", start, end)
        out.sort(key=lambda e: (e["ts_us"], e["rank"]))
        return out

    # -- close ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Graceful SHUTDOWN, kill after a grace, reap every rank, unlink the segments.

        Raises :class:`RankCloseFailed` (after all of that) when a rank's runtime failed to
        close; a world that already failed (closed by ``run`` or ``start``) raises nothing."""
        self.shutdown()

    def shutdown(self) -> None:
        """What :meth:`close` does (close is this, for ``with`` blocks and finalizers)."""
        first = not self._closed
        self._close()
        if first and self.close_failures:
            raise self._close_error()

    def _close_error(self) -> RankCloseFailed:
        rank = min(self.close_failures)  # global ranks
        failure = self.close_failures[rank]
        others = sorted(set(self.close_failures) - {rank})
        local = rank - self.config.rank_base
        also = f" ({self._who([r - self.config.rank_base for r in others])} too)" if others else ""
        return RankCloseFailed(
            f"{self._who(local)}: closing its runtime failed{also}: {failure.type_name}: "
            f"{failure.text}\n{failure.traceback}",
            code=failure.pto.code if failure.pto else 0,
            name=failure.pto.name if failure.pto else failure.type_name,
            rank=rank,
            phase="close",
            error=failure.error,
            traceback=failure.traceback,
            exception_type=failure.type_name,
            exc_type=failure.qualname,
            exc_code=failure.code,
            exc_message=failure.text,
            other_failures={r: "close" for r in others},
            log=self._log_of(local),
            **self._host_detail(),
        )

    def _read_close_failures(self, mbox: Mailbox) -> None:
        """Ranks that exited with EXIT_CLOSE_FAILED left their error in the INIT channel."""
        for rank in range(self.size):
            status = mbox.exit_status(rank)
            if status is None or not os.WIFEXITED(status):
                continue
            if os.WEXITSTATUS(status) != EXIT_CLOSE_FAILED:
                continue
            ok, failure = decode_result(mbox.read(rank, Channel.INIT))
            if not ok and isinstance(failure, Failure):
                self.close_failures[self._global(rank)] = failure

    def _close(self, kill: list[int] | None = None, grace: float = SHUTDOWN_GRACE) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        t_close = now_ns()
        mbox = self._mbox
        try:
            if mbox is not None and self._pids:
                self._stop_ranks(mbox, kill or [], grace)
        except BaseException:
            # interrupted while waiting for the ranks to leave (Ctrl-C, a timeout signal): no
            # more waiting, but no rank may outlive the world, and close() will not come again
            if self._zygote is not None:
                self._zygote.kill(self._pids)
            raise
        finally:
            if mbox is not None and not mbox.closed:
                with contextlib.suppress(Exception):  # a courtesy: cleanup must go on
                    self._read_close_failures(mbox)
                self._snapshot(teardown_ns=t_close)
                for rank in range(self.size):
                    self._teardown[rank] = (t_close, self._stamps[rank][Stamp.EXIT] or now_ns())
                self._record_open_spans()
            self._release_segments()

    def _stop_ranks(self, mbox: Mailbox, kill: list[int], grace: float) -> None:
        """Kill ``kill`` at once; SHUTDOWN for the others, killed if still there after ``grace``."""
        zygote = self._zygote
        live = [r for r in range(self.size) if mbox.exit_status(r) is None]
        doomed = [r for r in live if r in kill]
        if doomed and zygote is not None:
            zygote.kill(self._pids[r] for r in doomed)
        for rank in live:
            if rank not in doomed:
                mbox.store(rank, State.SHUTDOWN)
        self._wait_exits(mbox, grace)
        live = [r for r in range(self.size) if mbox.exit_status(r) is None]
        if live and zygote is not None:
            zygote.kill(self._pids[r] for r in live)
            self._wait_exits(mbox, KILL_WAIT)

    def _wait_exits(self, mbox: Mailbox, limit: float) -> None:
        deadline = time.monotonic() + limit
        while True:
            bell = mbox.doorbell()
            live = [r for r in range(self.size) if mbox.exit_status(r) is None]
            if not live:
                return
            # workers die with their zygote (PDEATHSIG) and nobody writes their exit record
            zygote_gone = self._zygote is None or not self._zygote.alive
            if zygote_gone and all(not _footprint.pid_alive(self._pids[r]) for r in live):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            mbox.doorbell_wait(bell, min(POLL_SLICE_MS, max(1, int(left * 1000))))

    def _release_segments(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        segments = [s for s in (self._mbox_name, self._comm_name) if s]
        if self._mbox is not None:
            self._mbox.close()
            Mailbox.unlink(self._mbox_name)
        if self._comm is not None:
            _close_comm(self._comm, self._comm_name)
            self._comm = None
        if self._zygote is not None and self._zygote.alive:
            self._zygote.forget(segments)
        _procs.unregister_world(self)

    def _emergency(self) -> None:
        """From a signal handler: kill every rank and unlink the segments, without waiting."""
        self._closed = True
        for pid in self._pids:
            _procs.kill_group(pid)
        for name in (self._mbox_name, self._comm_name):
            if name:
                _footprint.unlink_segment(name)

    def _check_zygote(self, pending: set[int], when: str) -> None:
        if self._zygote is not None and not self._zygote.alive:
            rank = min(pending)
            raise RankCrashed(
                f"{self._who(rank)}: killed {when}: pto-zygote (pid {self._zygote.pid}) died",
                rank=self._global(rank),
                signal=signal.SIGKILL,
                exitcode=None,
                **self._host_detail(),
            )

    # -- naming: what the World reports names global ranks (a host slice's rank_base + index) --
    def _global(self, rank: int) -> int:
        """The global rank of local index ``rank``: ``rank_base + rank``."""
        return self.config.rank_base + rank

    def _who(self, ranks: int | list[int]) -> str:
        """``rank 3`` or ``ranks 2, 3`` (global numbers of local indexes ``ranks``), followed
        by `` (host b)`` when the world names its host (``WorldConfig.host``)."""
        local = [ranks] if isinstance(ranks, int) else ranks
        word = "rank" if len(local) == 1 else "ranks"
        nums = ", ".join(str(self._global(r)) for r in local)
        host = f" (host {self.config.host})" if self.config.host else ""
        return f"{word} {nums}{host}"

    def _host_detail(self) -> dict[str, Any]:
        return {"host": self.config.host} if self.config.host else {}

    def _log_of(self, rank: int) -> str:
        """The log file of local rank ``rank`` (as text, "" if it has none)."""
        return str(self.logs.get(self._global(rank), ""))

    def _require_mbox(self) -> Mailbox:
        if self._mbox is None or self._mbox.closed:
            raise RuntimeStateError("World: not started or already closed")
        return self._mbox

    @property
    def pids(self) -> tuple[int, ...]:
        """The rank processes' pids, in rank order (they may have exited)."""
        return tuple(self._pids)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<World {self.name or self._mbox_name} ranks={self.size} {state}>"


# -- helpers ---------------------------------------------------------------------------------------
def _error_details(err: PtoError | None) -> dict[str, Any]:
    if err is None:
        return {}
    return {
        "error_code": err.code,
        "error_name": err.name,
        "sub_class": err.details.get("sub_class"),
        "stuck_task": err.details.get("stuck_task"),
    }


def _create_comm(size: int) -> tuple[CommWindow, str]:
    """The world's comm window; the owner creates it as an observer and unlinks it at close."""
    name = new_name("comm")
    return CommWindow.create(name, size, None), name


def _close_comm(comm: CommWindow, name: str) -> None:
    try:
        comm.close()
    finally:
        CommWindow.unlink(name, missing_ok=True)


def _finalize(pids: list[int], segments: list[str], mbox: Mailbox, comm: Any) -> None:
    """A World dropped without close(): kill its ranks and unlink its segments."""
    for pid in pids:
        _procs.kill_group(pid)
    for name in segments:
        _footprint.unlink_segment(name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(256 * 1024).decode("utf-8", "replace")
    except OSError:
        return "(log unreadable)"
