"""The chip worker: what runs in each rank's process after the zygote forked it.

Life of a worker: rename itself (``pto-chip rank=K/N ...``), send its output to its own log
(fd 1 and 2, so the C runtime's stderr lands there too), take the world's environment, attach
its mailbox, initialise its chip (a libpto runtime bound to the world's comm window), publish
INIT_DONE or INIT_FAILED, then serve TASK_READY until SHUTDOWN. A watcher thread answers
stack requests (CONTROL_REQUEST) even while the op runs, and kills the worker if the world's
owner dies.
"""

from __future__ import annotations

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
from typing import Any

from libpto._mailbox import Channel, Mailbox, Stamp, State, mask, set_proctitle
from libpto._worker_frames import decode_task, encode_failure, encode_result

__all__ = ["Chip", "worker_main"]

INIT_HOOK_ENV = "PTO_CHIP_INIT_HOOK"
EXIT_INIT_FAILED = 3


class Chip:
    """What an op sees as its first argument: this rank's identity, runtime and comm window."""

    def __init__(self, rank: int, size: int, device_id: int, env: Mapping[str, str]) -> None:
        self.rank = rank
        self.size = size
        self.device_id = device_id
        self.env: dict[str, str] = dict(env)
        self.runtime: Any = None
        self.comm: Any = None

    def log(self, msg: str) -> None:
        """A timestamped line in this rank's log file."""
        stamp = (
            time.strftime("%H:%M:%S", time.localtime()) + f".{time.time_ns() // 1000 % 10**6:06d}"
        )
        print(f"[{stamp} rank {self.rank}] {msg}", file=sys.stderr, flush=True)

    def init(self) -> None:
        """Attach the comm window, create the runtime (this is where init latency lives,
        ``PTO_SIM_INIT_DELAY_MS`` and the malloc model) and bind the window to it."""
        from libpto._comm import CommWindow
        from libpto.runtime import Runtime

        comm_name = self.env.get("PTO_COMM_NAME", "")
        if comm_name:
            self.comm = CommWindow.attach(comm_name, self.rank)
        self.runtime = Runtime(rank=self.rank)
        if self.comm is not None:
            self.runtime.bind_comm(self.comm)
        hook = self.env.get(INIT_HOOK_ENV)
        if hook:
            _call_hook(hook, self)

    def close(self) -> None:
        runtime, self.runtime = self.runtime, None
        comm, self.comm = self.comm, None
        try:
            if runtime is not None:
                runtime.close()
        finally:
            if comm is not None:
                comm.close()

    def dump_state(self) -> str:
        if self.runtime is None:
            return "(no runtime)"
        try:
            return str(self.runtime.dump_state())
        except Exception as exc:
            return f"(runtime.dump_state failed: {type(exc).__name__}: {exc})"


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
    def __init__(self, spec: dict[str, Any], mbox: Mailbox) -> None:
        self.spec = spec
        self.mbox = mbox
        self.rank: int = spec["rank"]
        self.chip = Chip(spec["rank"], spec["size"], spec["device_id"], os.environ)
        self.stop = threading.Event()

    # -- watcher thread -----------------------------------------------------------------------
    def watch(self) -> None:
        owner_fd = -1
        try:
            owner_fd = os.pidfd_open(self.spec["owner"])
        except OSError:
            os.kill(os.getpid(), signal.SIGKILL)  # the owner is already gone
        while not self.stop.is_set():
            got = self.mbox.ctrl_wait(self.rank, mask(State.CONTROL_REQUEST), 250)
            if got == State.CONTROL_REQUEST:
                self.answer_control()
            if select.select([owner_fd], [], [], 0)[0]:
                os.kill(os.getpid(), signal.SIGKILL)  # nothing may outlive the world's owner

    def answer_control(self) -> None:
        text = (
            f"--- rank {self.rank} (pid {os.getpid()}) Python threads ---\n{python_stacks()}"
            f"--- rank {self.rank} runtime state ---\n{self.chip.dump_state()}\n"
        )
        print(text, file=sys.stderr, flush=True)
        data = text.encode("utf-8", "replace")[: self.mbox.capacity]
        self.mbox.write(self.rank, Channel.CONTROL, data)
        self.mbox.ctrl_store(self.rank, State.CONTROL_DONE)

    # -- main thread ------------------------------------------------------------------------------
    def serve(self) -> int:
        threading.Thread(target=self.watch, name="pto-watcher", daemon=True).start()
        self.mbox.stamp(self.rank, Stamp.INIT_START)
        try:
            self.chip.init()
        except BaseException as exc:
            traceback.print_exc()
            self.mbox.write(self.rank, Channel.INIT, encode_failure(exc, self.mbox.capacity))
            self.mbox.stamp(self.rank, Stamp.INIT_END)
            self.mbox.store(self.rank, State.INIT_FAILED)
            self.shutdown()
            return EXIT_INIT_FAILED
        self.mbox.stamp(self.rank, Stamp.INIT_END)
        # with the barrier off the parent may have posted TASK_READY already: keep it
        self.mbox.cas(self.rank, State.IDLE, State.INIT_DONE)
        wanted = mask(State.TASK_READY, State.SHUTDOWN)
        while True:
            state = self.mbox.wait(self.rank, wanted, -1)
            if state == State.SHUTDOWN:
                break
            if state == State.TASK_READY:
                self.run_task()
        self.shutdown()
        return 0

    def run_task(self) -> None:
        self.mbox.stamp(self.rank, Stamp.OP_START)
        cap = self.mbox.capacity
        label = "?"
        try:
            task = decode_task(self.mbox.read(self.rank, Channel.TASK))
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
        self.mbox.stamp(self.rank, Stamp.OP_END)
        self.mbox.write(self.rank, Channel.TASK, answer)
        # a SHUTDOWN posted while the op ran must survive: it is what ends the serve loop
        self.mbox.cas(self.rank, State.TASK_READY, State.TASK_DONE)

    def shutdown(self) -> None:
        self.stop.set()
        try:
            self.chip.close()
        except Exception:
            traceback.print_exc()


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


def worker_main(spec: dict[str, Any]) -> int:
    """Run one chip worker to completion; the return value is its exit code."""
    rank, size = spec["rank"], spec["size"]
    set_proctitle(f"pto-chip rank={rank}/{size} world={spec['world']} owner={spec['owner']}")
    _redirect_output(spec["log"])
    os.environ.clear()
    os.environ.update(spec["env"])
    if spec.get("cwd"):
        with contextlib.suppress(OSError):
            os.chdir(spec["cwd"])
    mbox = Mailbox.attach(spec["mbox"])
    mbox.set_pid(rank, os.getpid())
    mbox.stamp(rank, Stamp.START)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    try:
        return _Worker(spec, mbox).serve()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
