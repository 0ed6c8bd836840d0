"""Runtime configuration: the environment, an ``env`` mapping and keyword overrides, all
validated by the one C validator (``pto_rt_config_set``).

Why not validate in Python: the chip workers read the same variables, and a value must get the
same verdict and the same message ("PTO2_RING_TASK_WINDOW=100: must be a power of two >= 4
...") whichever way it arrived. Python only maps keyword names to variable names and says
where a bad value came from (environment vs keyword argument).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from libpto._checks import text_problem
from libpto._ffi import ffi, lib
from libpto.errors import InvalidArgument, check, lib_str

__all__ = ["CONFIG_KEYS", "OVERRIDE_KEYS", "build_config", "config_dict", "config_warning"]


def _keys() -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while True:
        p = lib.pto_rt_config_key(i)
        if p == ffi.NULL:
            return tuple(out)
        out.append(lib_str(p))
        i += 1


#: every environment variable the runtime reads, in the C library's order
CONFIG_KEYS: tuple[str, ...] = _keys()

#: keyword override -> environment variable
OVERRIDE_KEYS: dict[str, str] = {
    "task_window": "PTO2_RING_TASK_WINDOW",
    "ring_task_window": "PTO2_RING_TASK_WINDOW",
    "heap": "PTO2_RING_HEAP",
    "ring_heap": "PTO2_RING_HEAP",
    "dep_pool": "PTO2_RING_DEP_POOL",
    "ring_dep_pool": "PTO2_RING_DEP_POOL",
    "latch_policy": "PTO_LATCH_POLICY",
    "scheduler_timeout_ms": "PTO_SCHEDULER_TIMEOUT_MS",
    "max_idle_iterations": "PTO_MAX_IDLE_ITERATIONS",
    "stream_sync_timeout_ms": "PTO_STREAM_SYNC_TIMEOUT_MS",
    "stall_report_ms": "PTO_STALL_REPORT_MS",
    "sched_threads": "PTO_SIM_SCHED_THREADS",
    "cores": "PTO_SIM_CORES",
    "init_delay_ms": "PTO_SIM_INIT_DELAY_MS",
    "malloc_model": "PTO_SIM_MALLOC_MODEL",
    "malloc_ms_per_gib": "PTO_SIM_MALLOC_MS_PER_GIB",
    "malloc_seed": "PTO_SIM_MALLOC_SEED",
    "malloc_sigma": "PTO_SIM_MALLOC_SIGMA",
    "cond_poll_us": "PTO_SIM_COND_POLL_US",
    "notify_delay_ms": "PTO_SIM_NOTIFY_DELAY_MS",
    "notify_median_ms": "PTO_SIM_NOTIFY_MEDIAN_MS",
    "notify_sigma": "PTO_SIM_NOTIFY_SIGMA",
    "deadlock_check": "PTO_DEADLOCK_CHECK",
    "ring_deadlock_ms": "PTO_RING_DEADLOCK_MS",
    "tensor_wait_timeout_ms": "PTO_TENSOR_WAIT_TIMEOUT_MS",
}


def _text(name: str, value: Any) -> str:
    """An override value as the text the environment would carry."""
    if isinstance(value, bool) or value is None:
        raise InvalidArgument(f"Runtime({name}={value!r}): expected a number or a string")
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Sequence):
        return ",".join(_text(name, v) for v in value)
    if isinstance(value, Mapping):  # per-rank init delay {rank: ms}
        return ",".join(f"{_text(name, k)}:{_text(name, v)}" for k, v in value.items())
    raise InvalidArgument(f"Runtime({name}={value!r}): unsupported type {type(value).__name__}")


def _set(cfg: Any, key: str, value: str, source: str) -> None:
    problem = text_problem(value)  # NUL, or a lone surrogate no byte string can carry
    if problem is not None:
        raise InvalidArgument(f"{source}: {key}={value!r}: the value {problem}")
    # os.fsencode: bytes that were not UTF-8 in the environment go back as they came, and
    # the C validator names the variable and its rule ("must be an integer ...")
    check(lib.pto_rt_config_set(cfg, key.encode(), os.fsencode(value)), source, key=key)


def build_config(
    env: Mapping[str, str] | None, rank: int | None, overrides: Mapping[str, Any]
) -> Any:
    """A validated ``pto_rt_config *``: defaults < os.environ < ``env`` < ``rank`` < overrides."""
    cfg = ffi.new("pto_rt_config *")
    check(lib.pto_rt_config_default(cfg), "Runtime config")
    merged = {k: os.environ[k] for k in CONFIG_KEYS if k in os.environ}
    if env is not None:
        if not isinstance(env, Mapping):
            raise InvalidArgument(f"Runtime(env=...): expected a mapping, got {type(env).__name__}")
        for k, v in env.items():
            if k in CONFIG_KEYS:
                if not isinstance(v, str):
                    raise InvalidArgument(f"Runtime(env): {k}={v!r}: values must be strings")
                merged[k] = v
    for k, v in merged.items():
        src = "environment" if env is None or k not in env else "Runtime(env)"
        _set(cfg, k, v, src)
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise InvalidArgument(f"Runtime(rank={rank!r}): expected an int in [0, 4095]")
        _set(cfg, "PTO_RANK", str(rank), f"Runtime(rank={rank})")
    for name, value in overrides.items():
        key = OVERRIDE_KEYS.get(name, name if name in CONFIG_KEYS else "")
        if not key:
            known = ", ".join(sorted(OVERRIDE_KEYS))
            raise InvalidArgument(
                f"Runtime({name}=...): unknown option; known: {known} (or a variable name "
                f"such as PTO2_RING_HEAP)"
            )
        _set(cfg, key, _text(name, value), f"Runtime({name}={value!r})")
    return cfg


def config_warning(cfg: Any) -> str:
    """The C coherence check's warning ("" when the combination is coherent)."""
    buf = ffi.new("char[]", 1024)
    check(lib.pto_rt_config_check(cfg, buf, 1024), "Runtime config")
    return lib_str(buf)


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in value)


def _either(code: int, then: str, otherwise: str) -> Callable[[Any], str]:
    """A two-valued C enum field as its environment spelling."""
    return lambda value: then if value == code else otherwise


#: environment variable -> (``pto_rt_config`` field, field value -> the variable's value)
_EFFECTIVE: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "PTO2_RING_TASK_WINDOW": ("task_window", _ints),
    "PTO2_RING_HEAP": ("heap_bytes", _ints),
    "PTO2_RING_DEP_POOL": ("dep_pool", _ints),
    "PTO_LATCH_POLICY": (
        "latch_policy",
        _either(lib.PTO_LATCH_OWNED_WALLCLOCK, "owned-wallclock", "idle-iterations"),
    ),
    "PTO_SCHEDULER_TIMEOUT_MS": ("sched_timeout_ms", int),
    "PTO_MAX_IDLE_ITERATIONS": ("max_idle_iterations", int),
    "PTO_STREAM_SYNC_TIMEOUT_MS": ("stream_sync_timeout_ms", int),
    "PTO_STALL_REPORT_MS": ("stall_report_ms", int),
    "PTO_SIM_SCHED_THREADS": ("sched_threads", int),
    "PTO_SIM_CORES": ("cores", int),
    "PTO_RANK": ("rank", int),
    "PTO_SIM_INIT_DELAY_MS": ("init_delay", lib_str),
    "PTO_SIM_MALLOC_MODEL": ("malloc_model", _either(lib.PTO_MALLOC_LONGTAIL, "longtail", "none")),
    "PTO_SIM_MALLOC_MS_PER_GIB": ("malloc_ms_per_gib", float),
    "PTO_SIM_MALLOC_SEED": ("malloc_seed", int),
    "PTO_SIM_MALLOC_SIGMA": ("malloc_sigma", float),
    "PTO_SIM_COND_POLL_US": ("cond_poll_us", int),
    "PTO_SIM_NOTIFY_DELAY_MS": ("notify_delay", lib_str),
    "PTO_SIM_NOTIFY_MEDIAN_MS": ("notify_median_ms", float),
    "PTO_SIM_NOTIFY_SIGMA": ("notify_sigma", float),
    "PTO_DEADLOCK_CHECK": (
        "deadlock_check",
        _either(lib.PTO_DEADLOCK_SNAPSHOT, "snapshot", "no-progress"),
    ),
    "PTO_RING_DEADLOCK_MS": ("ring_deadlock_ms", int),
    "PTO_TENSOR_WAIT_TIMEOUT_MS": ("tensor_wait_timeout_ms", int),
}


def config_dict(cfg: Any) -> dict[str, Any]:
    """Effective values, keyed by environment variable (for logs, reports and tests)."""
    return {key: convert(getattr(cfg, field)) for key, (field, convert) in _EFFECTIVE.items()}
