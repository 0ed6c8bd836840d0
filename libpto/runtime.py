"""``libpto.Runtime``: one simulated chip (orchestrator, scheduler threads, cores) driven from
Python, its graph builder and its device buffers.

The runtime's threads live in C from :class:`Runtime` creation to :meth:`Runtime.close` and
park between runs, so a run costs no thread start. Every C call goes through
:func:`libpto.errors.check`, so a failure arrives as one typed exception whose message names the
argument or variable and the rule, and whose ``details`` carry the device's error header
(``sub_class``, ``stuck_task``, ``core``, ``latch_thread``, ``latched_by``, ``latch_attempts``,
``completed``, ``total``, and both ``orch_error_code`` and ``sched_error_code``).

cffi releases the GIL around every C call, so a run blocked in its stream sync never blocks
other Python threads (e.g. a peer rank's runtime in the same process, or a watchdog calling
:meth:`Runtime.abort`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from libpto._args import I32, I64, U32, U64, cmp_arg, int_arg
from libpto._checks import name_problem
from libpto._config import build_config, config_dict, config_warning
from libpto._ffi import ffi, lib
from libpto.errors import InvalidArgument, RuntimeStateError, check, lib_str

__all__ = ["Buffer", "Graph", "MemRef", "RunInfo", "Runtime", "comm_ref"]

_MANY = {"independent": 0, "chain": 1, "fanout": 2}


@dataclass(frozen=True)
class MemRef:
    """A float32 operand: ``space`` 1 = device buffer ``id``, 2 = comm data window of rank
    ``id``; ``offset`` in bytes."""

    space: int
    id: int
    offset: int = 0

    def at(self, index: int) -> MemRef:
        """The operand ``index`` float32 elements further on."""
        int_arg("MemRef.at", "index", index, -(1 << 62), 1 << 62)
        return MemRef(self.space, self.id, self.offset + 4 * index)


def comm_ref(rank: int, offset: int = 0) -> MemRef:
    """Operand in ``rank``'s data window of the bound comm window (``offset`` in bytes)."""
    return MemRef(int(lib.PTO_MEM_COMM), rank, offset)


@dataclass(frozen=True)
class RunInfo:
    """What a successful run reports."""

    completed: int
    total: int
    elapsed_us: int


class _Handle:
    """The C runtime pointer, shared with graph finalizers, with in-flight accounting.

    Every C call holds a use (:meth:`enter` / :meth:`exit`). Closing marks the handle closing
    (no new uses), aborts the run in flight and waits until the uses drained before
    ``pto_rt_destroy``, so a call in another thread (a watchdog's ``abort`` or ``dump_state``, a
    buffer write, a graph builder call) never touches a freed runtime. When the closing thread
    holds a use itself (a close from a signal handler), the last :meth:`exit` destroys instead.
    """

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr
        self.pins: list[Any] = []  # comm windows bound to the runtime (unpinned on destroy)
        self.closing = False
        self.cond = threading.Condition(threading.RLock())
        self.users: dict[int, int] = {}  # thread ident -> uses

    def enter(self) -> Any:
        """The pointer with one more use, or None once closing."""
        with self.cond:
            if self.closing or self.ptr is None:
                return None
            me = threading.get_ident()
            self.users[me] = self.users.get(me, 0) + 1
            return self.ptr

    def exit(self) -> None:
        with self.cond:
            me = threading.get_ident()
            left = self.users[me] - 1
            if left:
                self.users[me] = left
            else:
                del self.users[me]
            self.cond.notify_all()
            deferred = self.closing and not self.users and self.ptr is not None
        if deferred:
            _destroy_rt(self)


def _destroy_rt(handle: _Handle) -> None:
    with handle.cond:
        handle.closing = True
        me = threading.get_ident()
        while handle.ptr is not None and handle.users:
            lib.pto_rt_abort(handle.ptr)  # again each round: a run may start after the first
            if me in handle.users:
                return  # this thread's own use ends later; its exit() destroys
            handle.cond.wait(0.05)
        ptr, handle.ptr = handle.ptr, None
    if ptr is not None:
        lib.pto_rt_destroy(ptr)  # also frees the runtime's remaining graphs
    for window in handle.pins:
        window.unpin()
    handle.pins.clear()


def _destroy_graph(rt: _Handle, ptr: Any) -> None:
    if rt.enter() is None:
        return  # the runtime is closed: pto_rt_destroy freed the graph
    try:
        lib.pto_graph_destroy(ptr)
    finally:
        rt.exit()


_LATCHED_BY = {1: "owner", 2: "sibling", 3: "no-owner"}


def _error_details(info: Any, rank: int) -> dict[str, Any]:
    code = int(info.orch_error_code) or int(info.sched_error_code)
    thread = int(info.latch_thread)
    if thread < 0:
        thread_name = ""
    elif thread == lib.PTO_LATCH_THREAD_ORCH:
        thread_name = "orchestrator"
    else:
        thread_name = f"sched{thread}"
    return {
        "code": code,
        "rank": rank,
        "orch_error_code": int(info.orch_error_code),
        "sched_error_code": int(info.sched_error_code),
        "sub_class": lib_str(lib.pto_stall_name(info.sub_class)) if info.sub_class else "",
        "stuck_task": int(info.stuck_task),
        "core": int(info.core),
        "ring": int(info.ring),
        "latch_thread": thread,
        "latch_thread_name": thread_name,
        "latched_by": _LATCHED_BY.get(int(info.latched_by), ""),
        "latch_attempts": int(info.latch_attempts),
        "completed": int(info.completed),
        "total": int(info.total),
        "elapsed_us": int(info.elapsed_us),
    }


def _device_fault(env: Mapping[str, str] | None, device_id: Any, rank: int) -> Any:
    """The configured fault of the first of ``device_id`` (an id or ids) that has one."""
    if device_id is None:
        return None
    from libpto._faults import device_faults

    ids = [device_id] if isinstance(device_id, int) else list(device_id)
    for d in ids:
        if isinstance(d, bool) or not isinstance(d, int):
            raise InvalidArgument(f"Runtime(device_id={device_id!r}): expected an int or ints")
    faults = device_faults(env)
    return next((faults[d] for d in ids if d in faults), None)


class Runtime:
    """One simulated chip.

    ``Runtime(env=None, *, rank=None, **overrides)``: configuration is os.environ, overlaid
    with ``env`` (only the runtime's variables are read), then ``rank`` (else ``PTO_RANK``, else
    0), then keyword overrides (``latch_policy=``, ``scheduler_timeout_ms=``,
    ``task_window=``, ``heap=``, ``dep_pool=``, ``cores=``, ... or a variable name). Creation
    models device_malloc of the rings, including the injected init latency; :attr:`init_ms`
    says how long it took.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        rank: int | None = None,
        device_id: int | Sequence[int] | None = None,
        **overrides: Any,
    ) -> None:
        cfg = build_config(env, rank, overrides)
        self.config: dict[str, Any] = config_dict(cfg)
        self.rank: int = int(cfg.rank)
        #: the simulated device fault of this runtime's device(s) (``PTO_SIM_DEVICE_FAULTS``)
        self._fault = _device_fault(env, device_id, self.rank)
        if self._fault is not None and self._fault.phase == "init":
            self._raise_fault("Runtime")
        #: the coherence warning (also printed to stderr by the C runtime), "" if coherent
        self.config_warning: str = config_warning(cfg)
        out = ffi.new("pto_rt **")
        check(lib.pto_rt_create(cfg, out), f"Runtime(rank={self.rank})", rank=self.rank)
        self._h = _Handle(out[0])
        self._comm: Any = None
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _destroy_rt, self._h)
        st = self.stats()
        self.init_ms: float = st["init_ns"] / 1e6
        self.init_delay_ms: int = st["init_delay_ms"]

    def _raise_fault(self, ctx: str) -> None:
        from libpto.errors import DeviceError

        f = self._fault
        assert f is not None
        raise DeviceError(
            f"rank {self.rank} {ctx}: device {f.device} reported error {f.code} "
            f"(simulated fault {f.device}={f.code}@{f.phase}, PTO_SIM_DEVICE_FAULTS)",
            code=f.code,
            name="SIM_DEVICE_FAULT",
            rank=self.rank,
            device_id=f.device,
            phase=f.phase,
        )

    # ---- lifecycle

    @property
    def closed(self) -> bool:
        return self._h.closing or self._h.ptr is None

    @contextmanager
    def _use(self, op: str) -> Iterator[Any]:
        """The C pointer, kept alive (close waits) until the block ends."""
        ptr = self._h.enter()
        if ptr is None:
            raise RuntimeStateError(f"{op}: the runtime is closed", name="PTO_E_STATE")
        try:
            yield ptr
        finally:
            self._h.exit()

    def close(self) -> None:
        """Abort a run in flight, stop and join the threads, free everything (idempotent).
        Calls in flight in other threads finish first (an aborted run returns promptly)."""
        self._finalizer()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Runtime rank={self.rank} {state}>"

    def stats(self) -> dict[str, int]:
        """init_ns, init_delay_ms, runs, tasks_completed, threads, sched_threads, cores, rank."""
        out = ffi.new("pto_rt_stats *")
        with self._use("Runtime.stats") as ptr:
            check(lib.pto_rt_stats_get(ptr, out), "Runtime.stats")
        keys = (
            "init_ns",
            "init_delay_ms",
            "runs",
            "tasks_completed",
            "threads",
            "sched_threads",
            "cores",
            "rank",
        )
        return {k: int(getattr(out, k)) for k in keys}

    # ---- comm

    def bind_comm(self, window: Any) -> None:
        """Bind a :class:`libpto.CommWindow` (``None`` unbinds) for notify/wait kernels and comm
        operands. The window's mapping stays valid while bound, even if it is closed."""
        from libpto._comm import CommWindow

        if window is not None and not isinstance(window, CommWindow):
            raise InvalidArgument(
                f"Runtime.bind_comm: expected a CommWindow or None, got {type(window).__name__}"
            )
        with self._lock, self._use("Runtime.bind_comm") as ptr:
            cptr = ffi.NULL if window is None else window.pin()
            st = lib.pto_rt_bind_comm(ptr, cptr)
            if st != 0:
                if window is not None:
                    window.unpin()
                check(st, "Runtime.bind_comm", rank=self.rank)
            pins = self._h.pins
            for old in pins:
                old.unpin()
            pins.clear()
            if window is not None:
                pins.append(window)
            self._comm = window

    @property
    def comm(self) -> Any:
        return self._comm

    # ---- buffers and graphs

    def buffer(self, count: int) -> Buffer:
        """A zeroed device buffer of ``count`` float32 elements."""
        n = int_arg("Runtime.buffer", "count", count, 1, 1 << 32)
        out = ffi.new("int32_t *")
        with self._use("Runtime.buffer") as ptr:
            check(lib.pto_rt_buffer_alloc(ptr, 4 * n, out), "Runtime.buffer")
        return Buffer(self, int(out[0]), n)

    def graph(self) -> Graph:
        """An empty task graph for this runtime."""
        out = ffi.new("pto_graph **")
        with self._use("Runtime.graph") as ptr:
            check(lib.pto_graph_create(ptr, out), "Runtime.graph")
        return Graph(self, out[0])

    # ---- runs

    def _timeout(self, ctx: str, timeout_ms: float | None) -> int:
        if timeout_ms is None:
            return -1  # PTO_SYNC_DEFAULT: PTO_STREAM_SYNC_TIMEOUT_MS
        if timeout_ms == float("inf"):
            return -2  # PTO_SYNC_FOREVER
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
            raise InvalidArgument(f"{ctx}: timeout_ms={timeout_ms!r} must be a number > 0")
        if not 0 < timeout_ms <= I64 // 1_000_000:
            raise InvalidArgument(
                f"{ctx}: timeout_ms={timeout_ms!r} must be > 0 and <= {I64 // 1_000_000} "
                "(or None: the stream-sync default, inf: no deadline)"
            )
        return max(1, int(timeout_ms))

    def _finish(self, st: int, ctx: str, info: Any) -> RunInfo:
        if st != 0:
            check(st, ctx, **_error_details(info, self.rank))
        return RunInfo(int(info.completed), int(info.total), int(info.elapsed_us))

    def run(self, graph: Graph, timeout_ms: float | None = None) -> RunInfo:
        """Submit ``graph`` and stream-sync it. ``timeout_ms``: the stream-sync budget (``None``:
        ``PTO_STREAM_SYNC_TIMEOUT_MS``; ``float('inf')``: none). Raises StreamSyncTimeout,
        SchedulerTimeout / SchedulerError, OrchestratorError, ..."""
        to = self._timeout("Runtime.run", timeout_ms)
        self._graph_arg("Runtime.run", graph)
        if self._fault is not None:
            self._raise_fault("Runtime.run")
        info = ffi.new("pto_rt_error_info *")
        with self._lock, graph._use("Runtime.run") as g, self._use("Runtime.run") as ptr:
            st = lib.pto_rt_run(ptr, g, to, info)
        return self._finish(st, f"rank {self.rank} Runtime.run", info)

    def submit(self, graph: Graph) -> None:
        """Start ``graph`` asynchronously; :meth:`sync` waits for it."""
        self._graph_arg("Runtime.submit", graph)
        if self._fault is not None:
            self._raise_fault("Runtime.submit")
        with self._lock, graph._use("Runtime.submit") as g, self._use("Runtime.submit") as ptr:
            check(lib.pto_rt_submit(ptr, g), "Runtime.submit", rank=self.rank)

    def sync(self, timeout_ms: float | None = None) -> RunInfo:
        """Wait for the submitted run (see :meth:`run` for ``timeout_ms``)."""
        to = self._timeout("Runtime.sync", timeout_ms)
        info = ffi.new("pto_rt_error_info *")
        with self._lock, self._use("Runtime.sync") as ptr:
            st = lib.pto_rt_sync(ptr, to, info)
        return self._finish(st, f"rank {self.rank} Runtime.sync", info)

    def _graph_arg(self, ctx: str, graph: Any) -> None:
        if not isinstance(graph, Graph):
            raise InvalidArgument(f"{ctx}: expected a Graph, got {type(graph).__name__}")
        if graph.runtime is not self:
            raise InvalidArgument(f"{ctx}: the graph belongs to another runtime")

    def fire(self, event: int) -> None:
        """Complete the EVENT task ``event`` of the run in flight (any thread)."""
        ev = int_arg("Runtime.fire", "event", event, 0, I64)
        with self._use("Runtime.fire") as ptr:
            check(lib.pto_rt_fire_event(ptr, ev), "Runtime.fire", rank=self.rank)

    def abort(self) -> None:
        """Abort the run in flight (any thread); its sync raises promptly."""
        ptr = self._h.enter()
        if ptr is not None:
            try:
                lib.pto_rt_abort(ptr)
            finally:
                self._h.exit()

    # ---- test hooks (tests only: they force an order on races the runtime leaves open)

    def _test_hold_latch(self, mask: int) -> None:
        """Hold the latch attempts of the threads in ``mask`` (bit i: scheduler thread i, bit 63:
        the orchestrator) after they are recorded and before the first-writer-wins
        compare-and-swap, until the bit is cleared (call again) or the run ends."""
        m = int_arg("Runtime._test_hold_latch", "mask", mask, 0, U64)
        with self._use("Runtime._test_hold_latch") as ptr:
            check(lib.pto_rt_test_hold_latch(ptr, m), "Runtime._test_hold_latch")

    def _test_latch_attempts(self) -> int:
        """The latch-attempt bitmap of the run in flight, read live (tests only)."""
        out = ffi.new("uint64_t *")
        with self._use("Runtime._test_latch_attempts") as ptr:
            check(lib.pto_rt_test_latch_attempts(ptr, out), "Runtime._test_latch_attempts")
        return int(out[0])

    def dump_state(self) -> str:
        """What every runtime thread is doing (for hang reports); safe from any thread."""
        ptr = self._h.enter()
        if ptr is None:
            return f"runtime rank {self.rank}: closed\n"
        try:
            buf = ffi.new("char[]", 16384)
            check(lib.pto_rt_dump_state(ptr, buf, 16384), "Runtime.dump_state")
        finally:
            self._h.exit()
        return lib_str(buf)


class Buffer:
    """A device buffer of float32 elements (host read/write are bounds-checked copies)."""

    def __init__(self, runtime: Runtime, buf_id: int, count: int) -> None:
        self.runtime = runtime
        self.id = buf_id
        self.count = count
        self.freed = False

    @property
    def nbytes(self) -> int:
        return 4 * self.count

    def ref(self, index: int = 0) -> MemRef:
        """Operand starting at element ``index``."""
        int_arg("Buffer.ref", "index", index, 0, self.count - 1)
        return MemRef(int(lib.PTO_MEM_BUFFER), self.id, 4 * index)

    def write(self, values: Iterable[float], index: int = 0) -> None:
        from array import array

        try:
            data = array("f", values)
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidArgument(f"Buffer.write: values must be numbers ({e})") from None
        int_arg("Buffer.write", "index", index, 0, self.count)
        with self.runtime._use("Buffer.write") as ptr:
            check(
                lib.pto_rt_buffer_write(
                    ptr, self.id, 4 * index, ffi.from_buffer(data), 4 * len(data)
                ),
                "Buffer.write",
            )

    def read(self, count: int | None = None, index: int = 0) -> list[float]:
        from array import array

        int_arg("Buffer.read", "index", index, 0, self.count)
        left = self.count - index
        # checked before allocating: a huge count must not exhaust host memory first
        n = left if count is None else int_arg("Buffer.read", "count", count, 0, left)
        data = array("f", bytes(4 * n))
        with self.runtime._use("Buffer.read") as ptr:
            check(
                lib.pto_rt_buffer_read(ptr, self.id, 4 * index, ffi.from_buffer(data), 4 * n),
                "Buffer.read",
            )
        return data.tolist()

    def free(self) -> None:
        if not self.freed:
            ptr = self.runtime._h.enter()
            if ptr is not None:  # a closed runtime freed every buffer
                try:
                    check(lib.pto_rt_buffer_free(ptr, self.id), "Buffer.free")
                finally:
                    self.runtime._h.exit()
        self.freed = True


def _mref(ctx: str, name: str, value: Any, out: Any) -> None:
    if isinstance(value, Buffer):
        value = value.ref()
    if not isinstance(value, MemRef):
        raise InvalidArgument(f"{ctx}: {name}={value!r} must be a Buffer or a MemRef")
    out.space = int_arg(ctx, f"{name} space", value.space, -(1 << 31), I32)
    out.id = int_arg(ctx, f"{name} id", value.id, -(1 << 31), I32)
    out.offset = int_arg(ctx, f"{name} offset", value.offset, 0, U64)


class Graph:
    """A task graph; every builder method returns the new task's id (an int). ``deps`` are ids
    of tasks already in this graph. Common keywords: ``ring`` (0..3), ``heap_bytes`` (ring heap
    the task holds until CONSUMED)."""

    def __init__(self, runtime: Runtime, ptr: Any) -> None:
        self.runtime = runtime
        self._ptr = ptr
        self._lock = threading.Lock()
        self._users = 0  # calls in flight (builder calls, runs); close refuses meanwhile
        self._closed = False
        self._finalizer = weakref.finalize(self, _destroy_graph, runtime._h, ptr)

    @contextmanager
    def _use(self, op: str) -> Iterator[Any]:
        """The C graph pointer, kept alive (close refuses) until the block ends."""
        with self._lock:
            if self._closed:
                raise RuntimeStateError(f"{op}: the graph is closed", name="PTO_E_STATE")
            self._users += 1
        try:
            with self.runtime._use(op):
                yield self._ptr
        finally:
            with self._lock:
                self._users -= 1

    def close(self) -> None:
        """Free the graph (idempotent). Refused while it is submitted or used by another
        thread."""
        with self._lock:
            if self._closed:
                return
            if self._users:
                raise RuntimeStateError(
                    "Graph.close: the graph is in use by another thread (a run or a builder "
                    "call); close it after that returns",
                    name="PTO_E_STATE",
                )
            self._closed = True
        rt = self.runtime._h.enter()
        if rt is None:  # the runtime is closed and freed the graph with it
            self._finalizer.detach()
            return
        try:
            st = lib.pto_graph_destroy(self._ptr)
        finally:
            self.runtime._h.exit()
        if st != 0:
            with self._lock:
                self._closed = False
            check(st, "Graph.close")
        self._finalizer.detach()

    def __len__(self) -> int:
        out = ffi.new("int64_t *")
        with self._use("Graph.len") as g:
            check(lib.pto_graph_size(g, out), "Graph.len")
        return int(out[0])

    def _desc(self, ctx: str, kernel: int, ring: int, heap_bytes: int) -> Any:
        d = ffi.new("pto_task_desc *")
        d.kernel = kernel
        d.ring = int_arg(ctx, "ring", ring, 0, 3)
        d.heap_bytes = int_arg(ctx, "heap_bytes", heap_bytes, 0, U64)
        return d

    def _add(self, ctx: str, d: Any, deps: Sequence[int] | None) -> int:
        dl = list(deps or ())
        for i, dep in enumerate(dl):
            int_arg(ctx, f"deps[{i}]", dep, -(1 << 63), I64)
        arr = ffi.new("int64_t[]", dl) if dl else ffi.NULL
        out = ffi.new("int64_t *")
        with self._use(ctx) as g:
            check(lib.pto_graph_add(g, d, arr, len(dl), out), ctx)
        return int(out[0])

    def kernel(
        self,
        name: str,
        *,
        deps: Sequence[int] | None = None,
        ring: int = 0,
        heap_bytes: int = 0,
        **params: Any,
    ) -> int:
        """Add a builtin kernel by name (``noop``, ``spin``, ``hang``, ``crash``, ``fill``,
        ``add``, ``copy``, ``notify``, ``wait``, ``event``, ``tensor_wait``) with its keyword
        parameters."""
        ctx = f"Graph.kernel({name!r})"
        problem = name_problem(name)  # 'noop\x00spin' must not run a noop
        if problem is not None:
            raise InvalidArgument(f"{ctx}: the kernel name {problem}")
        kid = int(lib.pto_kernel_id(os.fsencode(name)))
        if kid < 0:
            known = ", ".join(lib_str(lib.pto_kernel_name(i)) for i in range(lib.PTO_K_COUNT))
            raise InvalidArgument(f"{ctx}: unknown kernel; known: {known}")
        d = self._desc(ctx, kid, ring, heap_bytes)
        params_of: dict[str, tuple[str, ...]] = {
            "spin": ("duration_us",),
            "crash": ("mode",),
            "fill": ("dst", "count", "value"),
            "add": ("dst", "src0", "src1", "count"),
            "copy": ("dst", "src0", "count"),
            "notify": ("peer", "slot", "value", "add"),
            "wait": ("slot", "cmp", "value"),
        }
        allowed = params_of.get(name, ())
        for k in params:
            if k not in allowed:
                raise InvalidArgument(
                    f"{ctx}: unexpected parameter {k!r}; {name} takes "
                    f"{', '.join(allowed) or 'no parameters'}"
                )
        p = dict(params)
        if name == "spin":
            d.duration_us = int_arg(ctx, "duration_us", p.get("duration_us", 0), 0, I64)
        elif name == "crash":
            mode = p.get("mode", "segv")
            if mode not in ("segv", "abort"):
                raise InvalidArgument(f"{ctx}: mode={mode!r} must be 'segv' or 'abort'")
            d.mode = 0 if mode == "segv" else 1
        elif name in ("fill", "add", "copy"):
            d.count = int_arg(ctx, "count", p.get("count"), 1, 1 << 32)
            for op in allowed[:-1] if name != "fill" else ("dst",):
                if op not in p:
                    raise InvalidArgument(f"{ctx}: missing operand {op}")
                _mref(ctx, op, p[op], getattr(d, op))
            if name == "fill":
                v = p.get("value", 0.0)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InvalidArgument(f"{ctx}: value={v!r} must be a number")
                d.value = float(v)
        elif name == "notify":
            d.peer = int_arg(ctx, "peer", p.get("peer"), 0, I32)
            d.slot = int_arg(ctx, "slot", p.get("slot"), 0, U32)
            d.signal = int_arg(ctx, "value", p.get("value", 1), 0, U64)
            d.mode = 1 if p.get("add", False) else 0
        elif name == "wait":
            d.slot = int_arg(ctx, "slot", p.get("slot"), 0, U32)
            d.mode = cmp_arg(ctx, p.get("cmp", ">="))
            d.signal = int_arg(ctx, "value", p.get("value"), 0, U64)
        return self._add(ctx, d, deps)

    # convenience builders (thin wrappers over kernel())
    def noop(self, deps: Sequence[int] | None = None, **kw: Any) -> int:
        return self.kernel("noop", deps=deps, **kw)

    def spin(self, duration_us: int, deps: Sequence[int] | None = None, **kw: Any) -> int:
        return self.kernel("spin", deps=deps, duration_us=duration_us, **kw)

    def hang(self, deps: Sequence[int] | None = None, **kw: Any) -> int:
        return self.kernel("hang", deps=deps, **kw)

    def crash(self, mode: str = "segv", deps: Sequence[int] | None = None, **kw: Any) -> int:
        return self.kernel("crash", deps=deps, mode=mode, **kw)

    def event(self, **kw: Any) -> int:
        """A task no core runs: it completes when the host calls ``Runtime.fire(id)`` during
        the run (an external event). Never fired, its dependants cannot start: a genuine
        dependency deadlock with nothing RUNNING."""
        return self.kernel("event", **kw)

    def tensor_wait(self, deps: Sequence[int], **kw: Any) -> int:
        """Orchestration reads the outputs of ``deps`` (upstream's ``get_tensor_data``): the
        orchestrator publishes nothing further until every dep completed, and latches
        ``TENSOR_WAIT_TIMEOUT`` (8) after ``PTO_TENSOR_WAIT_TIMEOUT_MS`` (15000) without that."""
        return self.kernel("tensor_wait", deps=deps, **kw)

    def fill(
        self, dst: Any, count: int, value: float, deps: Sequence[int] | None = None, **kw: Any
    ) -> int:
        return self.kernel("fill", deps=deps, dst=dst, count=count, value=value, **kw)

    def add(
        self,
        dst: Any,
        src0: Any,
        src1: Any,
        count: int,
        deps: Sequence[int] | None = None,
        **kw: Any,
    ) -> int:
        return self.kernel("add", deps=deps, dst=dst, src0=src0, src1=src1, count=count, **kw)

    def copy(
        self, dst: Any, src0: Any, count: int, deps: Sequence[int] | None = None, **kw: Any
    ) -> int:
        return self.kernel("copy", deps=deps, dst=dst, src0=src0, count=count, **kw)

    def notify(
        self,
        peer: int,
        slot: int,
        value: int = 1,
        add: bool = False,
        deps: Sequence[int] | None = None,
        **kw: Any,
    ) -> int:
        return self.kernel("notify", deps=deps, peer=peer, slot=slot, value=value, add=add, **kw)

    def wait(
        self, slot: int, cmp: str, value: int, deps: Sequence[int] | None = None, **kw: Any
    ) -> int:
        """RUNNING on a core until the local comm slot compares true (``cmp`` like ``>=``)."""
        return self.kernel("wait", deps=deps, slot=slot, cmp=cmp, value=value, **kw)

    def noops(
        self,
        n: int,
        mode: str = "independent",
        dep: int | None = None,
        *,
        ring: int = 0,
        heap_bytes: int = 0,
    ) -> range:
        """``n`` noop tasks in one C call: ``independent``, ``chain`` (each depends on the
        previous) or ``fanout`` (each depends on ``dep``). Returns their ids."""
        ctx = "Graph.noops"
        if not isinstance(mode, str) or mode not in _MANY:
            raise InvalidArgument(f"{ctx}: mode={mode!r} must be one of {', '.join(_MANY)}")
        cnt = int_arg(ctx, "n", n, 1, 0x7FFFFFFE)
        if mode == "fanout" and dep is None:
            raise InvalidArgument(f"{ctx}: mode='fanout' needs dep=<task id>")
        dp = -1 if dep is None else int_arg(ctx, "dep", dep, -(1 << 63), I64)
        d = self._desc(ctx, int(lib.PTO_K_NOOP), ring, heap_bytes)
        out = ffi.new("int64_t *")
        with self._use(ctx) as g:
            check(lib.pto_graph_add_many(g, d, cnt, _MANY[mode], dp, out), ctx)
        return range(int(out[0]), int(out[0]) + cnt)
