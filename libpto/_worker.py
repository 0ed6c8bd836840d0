"""The chip worker: what runs in each rank's process after the zygote forked it.

Life of a worker: rename itself (``pto-chip rank=K/N ...``), send its output to its own log
(fd 1 and 2, so the C runtime's stderr lands there too), take the world's environment, attach
its mailbox, initialise its chip (the comm window, then the runtime: the runtime adapter's
``init`` when the world names one, else a libpto runtime bound to the window), publish
INIT_DONE or INIT_FAILED, then serve TASK_READY until SHUTDOWN, and close the runtime on the
same (main) thread; a close error is left in the INIT channel and the worker exits with
EXIT_CLOSE_FAILED, so the owner raises it (``RankCloseFailed``). A watcher thread answers
stack requests (CONTROL_REQUEST) even while the op runs, and kills the worker if the world's
owner dies.
"""

from __future__ import annotations

import _thread
import contextlib
import faulthandler
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libpto._mailbox import Channel, Mailbox, Stamp, State, mask, set_proctitle
from libpto._worker_frames import decode_task, encode_failure, encode_result

__all__ = ["EXIT_CLOSE_FAILED", "Chip", "load_adapter", "open_libpto_runtime", "worker_main"]

INIT_HOOK_ENV = "PTO_CHIP_INIT_HOOK"
EXIT_INIT_FAILED = 3
EXIT_CLOSE_FAILED = 5  # the failure record is in the INIT channel (free after init)


class Chip:
    """What an op sees as its first argument: this rank's identity, runtime and comm window.

    ``device_id`` is the rank's (first) physical device, ``device_ids`` all of its devices,
    ``local_device_id`` the id its runtime opens once the platform's visibility variable has
    renumbered the devices (the physical id when nothing is bound), ``round_dir`` a directory
    common to every rank of the round (None when the caller gave none). ``runtime`` is what the
    runtime adapter's ``init`` returned (libpto's ``Runtime`` by default)."""

    def __init__(
        self,
        rank: int,
        size: int,
        device_id: int,
        env: Mapping[str, str],
        *,
        device_ids: tuple[int, ...] | None = None,
        local_device_id: int | None = None,
        round_dir: str | None = None,
        adapter: Any = None,
    ) -> None:
        self.rank = rank
        self.size = size
        self.device_id = device_id
        self.device_ids: tuple[int, ...] = device_ids or (device_id,)
        self.local_device_id = device_id if local_device_id is None else local_device_id
        self.round_dir = Path(round_dir) if round_dir else None
        self.env: dict[str, str] = dict(env)
        self.runtime: Any = None
        self.comm: Any = None
        self.adapter = adapter
        self._runtime_up = False  # the adapter's close runs only after its init returned

    def log(self, msg: str) -> None:
        """A timestamped line in this rank's log file."""
        stamp = (
            time.strftime("%H:%M:%S", time.localtime()) + f".{time.time_ns() // 1000 % 10**6:06d}"
        )
        print(f"[{stamp} rank {self.rank}] {msg}", file=sys.stderr, flush=True)

    def init(self) -> None:
        """Attach the comm window (every runtime may use it), then bring the runtime up: the
        adapter's ``init`` when there is one, else libpto's own (this is where init latency
        lives, ``PTO_SIM_INIT_DELAY_MS`` and the malloc model)."""
        from libpto._comm import CommWindow

        comm_name = self.env.get("PTO_COMM_NAME", "")
        if comm_name:
            self.comm = CommWindow.attach(comm_name, self.rank)
        if self.adapter is not None:
            self.runtime = self.adapter.init(self)
        else:
            self.runtime = open_libpto_runtime(self)
        self._runtime_up = True
        hook = self.env.get(INIT_HOOK_ENV)
        if hook:
            _call_hook(hook, self)

    def close(self) -> None:
        """Close the runtime (through the adapter when there is one), then the comm window;
        the runtime's error, if any, is raised after the window is closed."""
        runtime, self.runtime = self.runtime, None
        comm, self.comm = self.comm, None
        up, self._runtime_up = self._runtime_up, False
        try:
            if self.adapter is not None:
                if up:
                    self.adapter.close(self, runtime)
            elif runtime is not None:
                runtime.close()
        finally:
            if comm is not None:
                comm.close()

    def dump_state(self) -> str | None:
        """The runtime's state for a stack dump; None when the runtime has none to give (a
        runtime other than libpto's says nothing of libpto's)."""
        dump = getattr(self.runtime, "dump_state", None)
        if dump is None:
            return None
        try:
            return str(dump())
        except Exception as exc:
            return f"(runtime.dump_state failed: {type(exc).__name__}: {exc})"


def open_libpto_runtime(chip: Chip) -> Any:
    """libpto's simulated runtime for ``chip``, bound to its comm window: the default chip
    runtime, and what the ``libpto`` runtime adapter's ``init`` returns."""
    from libpto.runtime import Runtime

    runtime = Runtime(rank=chip.rank, device_id=chip.device_ids)
    if chip.comm is not None:
        try:
            runtime.bind_comm(chip.comm)
        except BaseException:
            runtime.close()
            raise
    return runtime


def load_adapter(spec: str, cache_dir: str | None) -> Any:
    """Instantiate the runtime adapter class ``module:attribute`` (pytest-pto's contract) in
    this process; ``cache_dir`` is set on it. Imported by name: libpto does not depend on
    pytest_pto, the caller names the class."""
    import importlib

    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"runtime adapter {spec!r}: must be 'module:attribute'")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    adapter = target()
    adapter.cache_dir = Path(cache_dir) if cache_dir else None
    return adapter


def _call_hook(spec: str, chip: Chip) -> None:
    """``module:function`` run in the chip after its runtime is up, before INIT_DONE: lets a
    test or an integration inject init behaviour (a slow device, a failing one)."""
    import importlib

    module, _, func = spec.partition(":")
    if not module or not func:
        raise ValueError(f"{INIT_HOOK_ENV}={spec!r}: must be 'module:function'")
    getattr(importlib.import_module(module), func)(chip)


def python_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()  # the watcher asking is not interesting
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        out.append(f'Thread "{names.get(ident, "?")}" ({ident}):\n')
        out.extend(traceback.format_stack(frame))
    return "".join(out)


class _Worker:
    def __init__(self, spec: dict[str, Any], mbox: Mailbox, adapter: Any = None) -> None:
        self.spec = spec
        self.mbox = mbox
        self.rank: int = spec["rank"]
        #: this rank's mailbox slot: the rank itself, or its local index in a host slice
        self.slot: int = spec.get("slot", spec["rank"])
        self.adapter = adapter
        self.chip = Chip(
            spec["rank"],
            spec["size"],
            spec["device_id"],
            spec["env"],  # what os.environ now is (_adopt_env): a plain dict, nothing to decode
            device_ids=tuple(spec.get("device_ids") or (spec["device_id"],)),
            local_device_id=spec.get("local_device_id"),
            round_dir=spec.get("round_dir"),
        )
        self.stop = threading.Event()

    # -- watcher thread -----------------------------------------------------------------------
    def watch(self) -> None:
        owner_fd = -1
        try:
            owner_fd = os.pidfd_open(self.spec["owner"])
        except OSError:
            os.kill(os.getpid(), signal.SIGKILL)  # the owner is already gone
        while not self.stop.is_set():
            got = self.mbox.ctrl_wait(self.slot, mask(State.CONTROL_REQUEST), 250)
            if got == State.CONTROL_REQUEST:
                self.answer_control()
            if select.select([owner_fd], [], [], 0)[0]:
                os.kill(os.getpid(), signal.SIGKILL)  # nothing may outlive the world's owner

    def answer_control(self) -> None:
        text = f"--- rank {self.rank} (pid {os.getpid()}) Python threads ---\n{python_stacks()}"
        state = self.chip.dump_state()
        if state is not None:
            text += f"--- rank {self.rank} runtime state ---\n{state}\n"
        print(text, file=sys.stderr, flush=True)
        data = text.encode("utf-8", "replace")[: self.mbox.capacity]
        self.mbox.write(self.slot, Channel.CONTROL, data)
        self.mbox.ctrl_store(self.slot, State.CONTROL_DONE)

    # -- main thread ------------------------------------------------------------------------------
    def serve(self) -> int:
        # not threading.Thread: its start() waits until the new thread has run, a context
        # switch each way in front of init on a busy machine; nothing joins the watcher (the
        # worker leaves with os._exit) and stacks and faulthandler see it all the same
        _thread.start_new_thread(self.watch, ())
        self.mbox.stamp(self.slot, Stamp.INIT_START)
        try:
            runtime = self.spec.get("runtime")
            if runtime and self.adapter is None:  # not preloaded by the zygote: load it here
                self.adapter = load_adapter(runtime, self.spec.get("cache_dir"))
            self.chip.adapter = self.adapter
            self.chip.init()
        except BaseException as exc:
            traceback.print_exc()
            self.mbox.write(self.slot, Channel.INIT, encode_failure(exc, self.mbox.capacity))
            self.mbox.stamp(self.slot, Stamp.INIT_END)
            self.mbox.store(self.slot, State.INIT_FAILED)
            self.shutdown()
            return EXIT_INIT_FAILED
        self.mbox.stamp(self.slot, Stamp.INIT_END)
        # with the barrier off the parent may have posted TASK_READY already: keep it
        self.mbox.cas(self.slot, State.IDLE, State.INIT_DONE)
        wanted = mask(State.TASK_READY, State.SHUTDOWN)
        while True:
            state = self.mbox.wait(self.slot, wanted, -1)
            if state == State.SHUTDOWN:
                break
            if state == State.TASK_READY:
                self.run_task()
        failure = self.shutdown()
        if failure is not None:  # the owner reads it from the INIT channel after our exit
            self.mbox.write(self.slot, Channel.INIT, encode_failure(failure, self.mbox.capacity))
            return EXIT_CLOSE_FAILED
        return 0

    def run_task(self) -> None:
        self.mbox.stamp(self.slot, Stamp.OP_START)
        cap = self.mbox.capacity
        label = "?"
        try:
            task = decode_task(self.mbox.read(self.slot, Channel.TASK))
            label = task.op.label
            for entry in reversed(task.sys_path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            op = task.op.resolve()
            args, kwargs = task.arguments()
            answer = encode_result(op(self.chip, *args, **kwargs), label, cap)
        except BaseException as exc:
            print(f"rank {self.rank}: op {label} raised:", file=sys.stderr)
            traceback.print_exc()
            answer = encode_failure(exc, cap)
        sys.stdout.flush()
        sys.stderr.flush()
        self.mbox.stamp(self.slot, Stamp.OP_END)
        self.mbox.write(self.slot, Channel.TASK, answer)
        # a SHUTDOWN posted while the op ran must survive: it is what ends the serve loop
        self.mbox.cas(self.slot, State.TASK_READY, State.TASK_DONE)

    def shutdown(self) -> BaseException | None:
        """Close the chip on this (the main) thread, the one that ran init and the ops; the
        close error, if any, is returned (and printed to the rank's log)."""
        self.stop.set()
        try:
            self.chip.close()
        except Exception as exc:
            print(f"rank {self.rank}: close failed:", file=sys.stderr)
            traceback.print_exc()
            return exc
        return None


def _redirect_output(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def _adopt_env(env: Mapping[str, str]) -> None:
    """Make ``os.environ`` exactly ``env``. The zygote's environment is the owner's at session
    start, so only a few variables differ (the rank's own): touching only those saves a
    clear-and-refill of every variable in every rank of every round. They are found against
    the plain-dict copy :func:`prepare` took (``os.environ`` decodes every key it yields)."""
    assert _ENV_AT_FORK is not None, "prepare() runs first (worker_main)"
    current = _ENV_AT_FORK
    for key in [k for k in current if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if current.get(key) != value:
            os.environ[key] = value


#: the modules this process had when the zygote forked it (what it did not import itself)
MODULES_AT_FORK: frozenset[str] = frozenset()
_ENV_AT_FORK: dict[str, str] | None = None  # os.environ as prepare() found it


def prepare() -> None:
    """What a worker needs from the process it was forked from. The zygote takes it before it
    forks (:func:`snapshot_before_fork`, :func:`arm_faulthandler`) and every child inherits
    it as it is: a frozenset of every module name and a copy of the environment made in each
    child touched every module name and variable, and so copied ~100 of the zygote's heap
    pages per rank per round (~0.4 ms of CPU). Does the work only in a process nobody
    prepared."""
    if _ENV_AT_FORK is None:
        snapshot_before_fork()
        arm_faulthandler()


_snapshot_key: tuple[int, int] | None = None


def snapshot_before_fork(generation: int = 0) -> None:
    """In the forking process, right before a fork: its modules and its environment, for the
    child to inherit. Taken again only when ``generation`` (the zygote's, bumped by whatever
    it imports for its workers) or the number of modules changed."""
    global MODULES_AT_FORK, _ENV_AT_FORK, _snapshot_key
    key = (generation, len(sys.modules))
    if key != _snapshot_key:
        MODULES_AT_FORK = frozenset(sys.modules)
        _ENV_AT_FORK = dict(os.environ)
        _snapshot_key = key


def arm_faulthandler() -> None:
    """Crash and SIGUSR1 stack dumps to fd 2, which is the rank's log once _redirect_output
    has pointed it there: armed once in the zygote, inherited by every child it forks."""
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def worker_main(spec: dict[str, Any], adapter: Any = None) -> int:
    """Run one chip worker to completion; the return value is its exit code. ``adapter`` is
    the runtime adapter the zygote preloaded (else ``spec["runtime"]`` is loaded here)."""
    prepare()
    rank, size = spec["rank"], spec["size"]
    set_proctitle(f"pto-chip rank={rank}/{size} world={spec['world']} owner={spec['owner']}")
    _redirect_output(spec["log"])
    _adopt_env(spec["env"])
    if spec.get("cwd"):
        with contextlib.suppress(OSError):
            os.chdir(spec["cwd"])
    mbox = Mailbox.attach(spec["mbox"])
    slot = spec.get("slot", rank)
    mbox.set_pid(slot, os.getpid())
    mbox.stamp(slot, Stamp.START)
    try:
        return _Worker(spec, mbox, adapter).serve()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
