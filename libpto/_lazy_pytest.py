"""Load an op's module into the zygote without importing pytest.

Why: ops usually live in the test module that runs them (the README's shape), and a test module
starts with ``import pytest``. The zygote preloads each op's module so that chip workers import
nothing after the fork; importing the test module for real would load all of pytest into the
zygote (~100 ms on the first round), and every worker forked from it would carry pytest's heap:
~12 MB more to map at each fork and unmap at each exit (bench_rounds, a test file with
``import pytest``: 11.1-11.4 -> 8.6 ms per 2-rank round, 22-23 -> 14-15 ms of CPU).

How: while the zygote (or a worker, for a module first met in its round) executes that
module, the module's own ``import pytest`` (or ``from pytest
import ...``) gets a stand-in module instead; every other module imports normally. What the
test module does with pytest at import time -- decorators (``@pytest.mark...``,
``@pytest.fixture``), ``pytest.param``, module-level ``pytestmark`` -- is recorded, not run:
a decorator with one function returns the function (chip workers never call tests or
fixtures), anything else becomes a :class:`_Deferred` that remembers the calls.
``pytest.importorskip(name)`` really imports ``name``. Once the module is loaded, the stand-in
forwards to the real pytest, imported on first use: an op that does use pytest in a chip worker
(``pytest.raises``, ``pytest.approx``, a module-level ``APPROX = pytest.approx(...)``) still
gets real pytest objects, at the cost of that import in that worker. Module-level code the
stand-in cannot satisfy (a class deriving from a pytest class, a version comparison) raises,
and the caller then imports the module with the real pytest, as before.
"""

from __future__ import annotations

import builtins
import importlib
import sys
import types
from typing import Any

__all__ = ["import_op_module"]

_loading = False  # True only while the zygote executes a module with the stand-in


def _real_pytest() -> Any:
    return importlib.import_module("pytest")


class _Deferred:
    """``pytest.<path>`` as seen while a test module is loaded: a recorded path of attribute
    accesses and calls, replayed against the real pytest when used afterwards (attributes,
    calls, operators, ``with``, ``isinstance``). Used while the module is still loading in a
    way a record cannot serve (a comparison, a base class), it raises: the module is then
    imported with the real pytest."""

    __slots__ = ("_entered", "_steps")

    def __init__(self, steps: tuple[tuple[Any, ...], ...]) -> None:
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_entered", [])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle, inspect: not pytest's business
        if _loading:
            return _Deferred((*self._steps, ("attr", name)))
        return getattr(self._resolve(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _loading:
            return self._resolve()(*args, **kwargs)
        if self._steps == (("attr", "importorskip"),) and args and isinstance(args[0], str):
            return importlib.import_module(args[0])  # what the module goes on to use
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]  # a decorator: the function itself
        return _Deferred((*self._steps, ("call", args, kwargs)))

    def _resolve(self) -> Any:
        if _loading:
            raise TypeError(f"{self!r} cannot be used while its module loads")
        obj = _real_pytest()
        for step in self._steps:
            obj = getattr(obj, step[1]) if step[0] == "attr" else obj(*step[1], **step[2])
        return obj

    def __repr__(self) -> str:
        path = "".join(f".{s[1]}" if s[0] == "attr" else "(...)" for s in self._steps)
        return f"<pytest{path}, deferred by pytest-pto's zygote>"

    # what a real object is used for beyond attributes and calls: forwarded once resolved
    def __eq__(self, other: object) -> Any:
        return self._resolve() == other

    def __ne__(self, other: object) -> Any:
        return self._resolve() != other

    __hash__ = None  # type: ignore[assignment]  # like pytest.approx's: not a dict key

    def __bool__(self) -> bool:
        return bool(self._resolve())

    def __iter__(self) -> Any:
        return iter(self._resolve())

    def __len__(self) -> int:
        return len(self._resolve())

    def __contains__(self, item: object) -> bool:
        return item in self._resolve()

    def __getitem__(self, key: Any) -> Any:
        return self._resolve()[key]

    def __enter__(self) -> Any:
        manager = self._resolve()
        self._entered.append(manager)
        return manager.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._entered.pop().__exit__(*exc)

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, self._resolve())

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self._resolve())


def _module_getattr(name: str) -> Any:
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    if _loading:
        return _Deferred((("attr", name),))
    return getattr(_real_pytest(), name)


_STANDIN = types.ModuleType("pytest", "pytest, deferred by pytest-pto's zygote (_lazy_pytest)")
_STANDIN.__getattr__ = _module_getattr  # type: ignore[method-assign]


def import_op_module(name: str) -> types.ModuleType:
    """Import an op's module, with the stand-in for its own ``import pytest``; if the module
    cannot be loaded that way, import it as it is (saying so on stderr: the zygote's log, or
    the rank's)."""
    try:
        return _import_without_pytest(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise  # not there at all: nothing to retry
        _print_fallback(name, exc)
    except Exception as exc:
        _print_fallback(name, exc)
    return importlib.import_module(name)


def _print_fallback(name: str, exc: BaseException) -> None:
    print(
        f"pytest-pto: {name} cannot be loaded without pytest ({type(exc).__name__}: {exc}); "
        "importing it with pytest, which every chip worker then carries",
        file=sys.stderr,
    )


def _import_without_pytest(name: str) -> types.ModuleType:
    global _loading
    if "pytest" in sys.modules or name in sys.modules:
        return importlib.import_module(name)  # nothing to save: pytest is here already
    real_import = builtins.__import__

    def hook(
        module: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if module == "pytest" and level == 0 and globals and globals.get("__name__") == name:
            return _STANDIN
        return real_import(module, globals, locals, fromlist, level)

    builtins.__import__ = hook  # type: ignore[assignment]
    _loading = True
    try:
        return importlib.import_module(name)
    finally:
        _loading = False
        builtins.__import__ = real_import
