"""TEST DOUBLE of a vendor NPU runtime's Python binding (we cannot reach the real one here).

It behaves, on the outside, like the binding of a real C++ NPU runtime: one ``NativeRuntime``
per chip, opened on the rank's device and closed on the thread that opened it; a failed run
raises a plain ``RuntimeError("finalize_native_run failed with code -100 (run_id=3)")``
(negative codes on the simulator, positive on hardware; 1-11 orchestrator, 100+ scheduler) and
the runtime's diagnosis goes to file descriptor 2 with ``os.write``, as a C++ runtime writes it,
not through Python's ``sys.stderr``::

    [ERROR] PTO2 runtime failed: orch_error_code=0 sched_error_code=100
    [ERROR] error detail: sched thread 0 latched SCHEDULER_TIMEOUT - task 1 on core 0 ...
    [ERROR] stall diagnosis: sub_class=S1 stuck_task=1 core=0 completed=1/3

It also logs harmless ``[ERROR]`` lines in runs that pass (an unsupported device attribute, a
missing profiling config), as real runtimes do: a log line alone is no failure.

Underneath is libpto's real simulator (real scheduler threads, real latches, real comm window):
outcomes come from the mechanism, never from a scripted answer. ``VENDOR_RT_TARGET=hardware``
makes it report codes with the hardware sign (positive).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import libpto
from libpto.ops import mesh_allreduce

__all__ = ["NativeRuntime"]

_run_ids = itertools.count(1)


def _fd2(line: str) -> None:
    """One line straight to file descriptor 2, bypassing Python's buffered ``sys.stderr``."""
    os.write(2, (line.rstrip("\n") + "\n").encode())


class NativeRuntime:
    """The binding's runtime object (test double; see the module docstring)."""

    def __init__(self, device_id: int, *, rank: int, comm: Any = None) -> None:
        self.device_id = device_id
        self.simulator = os.environ.get("VENDOR_RT_TARGET", "simulator") != "hardware"
        self._owner = threading.get_ident()
        # the real runtime's host-side sync waits far longer than its scheduler's budget, so a
        # stall is diagnosed on the device (SCHEDULER_TIMEOUT with its sub_class) first
        sync = (
            {} if "PTO_STREAM_SYNC_TIMEOUT_MS" in os.environ else {"stream_sync_timeout_ms": 60000}
        )
        self._rt = libpto.Runtime(rank=rank, **sync)
        self._comm = comm
        if comm is not None:
            self._rt.bind_comm(comm)
        # harmless, and printed by every init of the real runtime on this SoC
        _fd2(
            f"[ERROR] RUNTIME dev {device_id}: aclrtGetDeviceInfo attribute 7 is not supported "
            "on this SoC, using the default"
        )

    def _fail(self, run_id: int, err: libpto.PtoError) -> RuntimeError:
        """What the real binding does with a latched error: log it to fd 2, return the plain
        RuntimeError its finalize raises."""
        orch = int(getattr(err, "orch_error_code", 0) or 0)
        sched = int(getattr(err, "sched_error_code", 0) or 0)
        code = err.code or orch or sched
        _fd2(f"[ERROR] PTO2 runtime failed: orch_error_code={orch} sched_error_code={sched}")
        thread = getattr(err, "latch_thread_name", "") or "runtime"
        stuck = getattr(err, "stuck_task", -1)
        core = getattr(err, "core", -1)
        _fd2(
            f"[ERROR] error detail: {thread} latched {err.name} - task {stuck} on core {core}: "
            f"{str(err).splitlines()[0]}"
        )
        sub = getattr(err, "sub_class", "") or ""
        if sub:
            done = f"{getattr(err, 'completed', '?')}/{getattr(err, 'total', '?')}"
            _fd2(
                f"[ERROR] stall diagnosis: sub_class={sub} stuck_task={stuck} core={core} "
                f"completed={done}"
            )
        signed = -code if self.simulator else code
        return RuntimeError(f"finalize_native_run failed with code {signed} (run_id={run_id})")

    def launch(self, build: Callable[[Any], object], *, timeout_ms: float | None = None) -> int:
        """Build a task graph with ``build(graph)`` and run it to completion; the run id."""
        run_id = next(_run_ids)
        graph = self._rt.graph()
        try:
            build(graph)
            try:
                self._rt.run(graph, timeout_ms)
            except (libpto.SchedulerError, libpto.OrchestratorError) as err:
                raise self._fail(run_id, err) from None
        finally:
            graph.close()
        _fd2(f"[ERROR] PROFILING run {run_id}: no profiling config found, profiling disabled")
        return run_id

    def allreduce(self, values: Sequence[float], *, timeout_ms: float | None = None) -> list[float]:
        """Elementwise sum over every rank (the binding's collective)."""
        run_id = next(_run_ids)
        chip = SimpleNamespace(runtime=self._rt, comm=self._comm)
        try:
            out = mesh_allreduce(chip, values, timeout_ms=timeout_ms)
        except (libpto.SchedulerError, libpto.OrchestratorError) as err:
            raise self._fail(run_id, err) from None
        _fd2(f"[ERROR] PROFILING run {run_id}: no profiling config found, profiling disabled")
        return out

    def close(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError("NativeRuntime must be closed on the thread that init()'d it")
        self._rt.close()
