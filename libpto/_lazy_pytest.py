"""Load an op's module into the zygote without importing pytest, unless the module needs it.

Why: ops usually live in the test module that runs them (the README's shape), and a test module
starts with ``import pytest``. The zygote preloads each op's module so that chip workers import
nothing after the fork; importing the test module for real would load all of pytest into the
zygote (~100 ms on the first round), and every worker forked from it would carry pytest's heap:
~12 MB more to map at each fork and unmap at each exit (bench_rounds, a test file with
``import pytest``: 11.1-11.4 -> 8.6 ms per 2-rank round, 22-23 -> 14-15 ms of CPU).

How: while the module executes, its own ``import pytest`` (or ``from pytest import ...``) gets
a stand-in; every other module imports normally. The stand-in knows pytest's public names (the
owner, which has pytest, sends them: :func:`configure`), so ``hasattr``, ``getattr(pytest, n,
default)`` and ``try: from pytest import X`` take the branch they take with pytest. What the
module does with pytest at import time is recorded, not run: ``@pytest.fixture`` and
``@pytest.mark...`` given a function return the function (workers never run tests or
fixtures), anything else becomes a :class:`_Deferred` record; ``pytest.importorskip(name)``
imports ``name``. Anything a record cannot stand for -- a class deriving from a pytest class, a
comparison, a ``with`` -- imports pytest on the spot and uses the real object, so loading never
fails because of the stand-in and the module runs once.

Once the module is loaded, it keeps the stand-in only if nothing a worker may run can reach
pytest: no module-level value, default argument or class attribute that is a record, and no
function or method -- other than tests (``test*``, ``Test*``) and fixtures -- that names
``pytest``. Otherwise (or if pytest got imported while loading) the zygote imports pytest and
the module is *upgraded* in place: its ``pytest`` becomes the real module and its records the
real objects, so an op that uses ``pytest.approx`` finds pytest already in the zygote, as it
did before this module existed, instead of importing it in every rank of every round.
"""

from __future__ import annotations

import builtins
import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["configure", "import_op_module", "pytest_api"]

_loading = False  # True only while a module executes with the stand-in
_api: dict[str, Any] | None = None  # pytest's public surface, from the owner (configure)
_fixtures: set[int] = set()  # ids of the functions @pytest.fixture returned as they were


def configure(api: dict[str, Any]) -> None:
    """Learn pytest's public names (``dir(pytest)``), ``__all__``, ``__version__`` and
    ``version_tuple`` from a process that has pytest. Without them the stand-in is never
    used: a name check it could not make might take a branch pytest would not."""
    global _api
    _api = api
    space = vars(_STANDIN)  # real attributes: `from pytest import *`, version checks
    space["__all__"] = list(api.get("all", ()))
    space["__version__"] = api.get("version", "")
    space["version_tuple"] = tuple(api.get("version_tuple", ()))
    space["__file__"] = api.get("file", "")  # also what a failed `from pytest import X` reads


def pytest_api() -> dict[str, Any]:
    """What :func:`configure` needs, from this process's pytest (which must be imported)."""
    pytest = sys.modules["pytest"]
    return {
        "names": sorted(n for n in dir(pytest) if not n.startswith("__")),
        "all": list(getattr(pytest, "__all__", ())),
        "version": str(getattr(pytest, "__version__", "")),
        "version_tuple": tuple(getattr(pytest, "version_tuple", ())),
        "file": str(getattr(pytest, "__file__", "")),
    }


def _real_pytest() -> Any:
    return importlib.import_module("pytest")


def _is_decorator(steps: tuple[tuple[Any, ...], ...]) -> bool:
    """``pytest.fixture``/``pytest.mark...`` (possibly called with options): applied to a
    function at import time, they return it unchanged in a chip worker."""
    return bool(steps) and steps[0][0] == "attr" and steps[0][1] in ("fixture", "mark")


class _Deferred:
    """``pytest.<path>`` as recorded while a module loads: the attribute accesses and calls,
    replayed once against the real pytest when something needs the real object."""

    __slots__ = ("_entered", "_steps", "_value")

    def __init__(self, steps: tuple[tuple[Any, ...], ...]) -> None:
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_entered", [])

    def _resolve(self) -> Any:
        try:
            return object.__getattribute__(self, "_value")
        except AttributeError:
            pass
        obj = _real_pytest()
        for step in self._steps:
            obj = getattr(obj, step[1]) if step[0] == "attr" else obj(*step[1], **step[2])
        object.__setattr__(self, "_value", obj)
        return obj

    def __getattr__(self, name: str) -> Any:
        if _loading and not (name.startswith("__") and name.endswith("__")):
            return _Deferred((*self._steps, ("attr", name)))
        return getattr(self._resolve(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _loading:
            return self._resolve()(*args, **kwargs)
        if self._steps == (("attr", "importorskip"),) and args and isinstance(args[0], str):
            return importlib.import_module(args[0])  # what the module goes on to use
        if len(args) == 1 and not kwargs and callable(args[0]) and _is_decorator(self._steps):
            if self._steps[0][1] == "fixture":
                _fixtures.add(id(args[0]))
            return args[0]
        return _Deferred((*self._steps, ("call", args, kwargs)))

    def __repr__(self) -> str:
        path = "".join(f".{s[1]}" if s[0] == "attr" else "(...)" for s in self._steps)
        return f"<pytest{path}, deferred by pytest-pto's zygote>"

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self._resolve(),)  # class X(pytest.Item): only the real class will do

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, self._resolve())

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self._resolve())

    def __enter__(self) -> Any:
        manager = self._resolve()
        self._entered.append(manager)
        return manager.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._entered.pop().__exit__(*exc)


def _forward(name: str) -> Callable[..., Any]:
    def method(self: _Deferred, *args: Any) -> Any:
        return getattr(self._resolve(), name)(*args)

    method.__name__ = name
    return method


# what a real object is used for beyond attributes and calls: the real object does it
_FORWARDED = (
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__",
    "__len__", "__iter__", "__contains__", "__getitem__", "__setitem__", "__delitem__",
    "__str__", "__format__", "__int__", "__float__", "__index__", "__add__", "__radd__",
    "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__neg__",
    "__abs__",
)  # fmt: skip
for _name in _FORWARDED:
    setattr(_Deferred, _name, _forward(_name))


def _module_getattr(name: str) -> Any:
    if not _loading:
        return getattr(_real_pytest(), name)
    if _api is None or name.startswith("__") or name not in _api["names"]:
        # what pytest lacks too (its dunders that matter are real attributes: configure),
        # so hasattr, getattr with a default and `try: from pytest import X` branch as with it
        raise AttributeError(f"module 'pytest' has no attribute {name!r}")
    return _Deferred((("attr", name),))


_STANDIN = types.ModuleType("pytest", "pytest, deferred by pytest-pto's zygote (_lazy_pytest)")
_STANDIN.__getattr__ = _module_getattr  # type: ignore[method-assign]


def import_op_module(name: str) -> types.ModuleType:
    """Import an op's module; with the stand-in for its own ``import pytest`` when pytest is
    not here yet, upgraded to the real pytest when the module needs it (module docstring)."""
    if _api is None or "pytest" in sys.modules or name in sys.modules:
        return importlib.import_module(name)  # nothing to save, or no names to check with
    try:
        module = _load_with_standin(name)
    except (TypeError, AttributeError) as exc:
        # a record used in a way it does not forward (``pytest.X ** 2``), or a name pytest
        # serves without listing it: the module's code ran up to there once already
        print(
            f"pytest-pto: {name} cannot be loaded without pytest ({type(exc).__name__}: {exc});"
            " loading it again with pytest",
            file=sys.stderr,
        )
        return importlib.import_module(name)
    if "pytest" in sys.modules or _needs_pytest(module):
        _upgrade(module)
    return module


def _load_with_standin(name: str) -> types.ModuleType:
    global _loading
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
        if builtins.__import__ is hook:  # the module may have installed a hook of its own
            builtins.__import__ = real_import


def _holds_record(value: Any) -> bool:
    if isinstance(value, _Deferred):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(isinstance(v, _Deferred) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, _Deferred) for v in value.values())
    return False


def _names_in(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_in(const)
    return names


def _function_needs(func: types.FunctionType, pytest_names: set[str]) -> bool:
    if id(func) in _fixtures or func.__name__.startswith("test"):
        return False  # run by pytest in the owner, never in a chip worker
    defaults = (*(func.__defaults__ or ()), *(func.__kwdefaults__ or {}).values())
    return any(_holds_record(d) for d in defaults) or bool(_names_in(func.__code__) & pytest_names)


def _needs_pytest(module: types.ModuleType) -> bool:
    """Whether something a chip worker may run can reach pytest (module docstring). Looks
    at types and plain attributes only: any other probe of a record or of the stand-in
    would import pytest."""
    name = module.__name__
    space = vars(module)
    pytest_names = {k for k, v in space.items() if v is _STANDIN or isinstance(v, _Deferred)}
    for key, value in space.items():
        if value is _STANDIN:
            continue
        if _holds_record(value):
            if key == "pytestmark":
                continue  # read by pytest in the owner only
            return True
        if isinstance(value, types.FunctionType):
            if value.__module__ == name and _function_needs(value, pytest_names):
                return True
        elif isinstance(value, type) and value.__module__ == name:
            if value.__name__.startswith("Test"):
                continue  # a test class: run by pytest in the owner only
            for attr, member in vars(value).items():
                if member is _STANDIN or attr == "pytestmark":
                    continue
                if _holds_record(member):
                    return True
                wrapped = isinstance(member, (staticmethod, classmethod))
                func = member.__func__ if wrapped else member
                if isinstance(func, types.FunctionType) and _function_needs(func, pytest_names):
                    return True
    return False


def _real(value: Any) -> Any:
    """``value`` with its records (itself, or the items of a list, tuple or dict) replaced by
    the real objects; the same object when it holds none."""
    if value is _STANDIN:
        return _real_pytest()
    if isinstance(value, _Deferred):
        return value._resolve()
    if not _holds_record(value):
        return value
    if isinstance(value, list):
        value[:] = [_real(v) for v in value]
        return value
    if isinstance(value, dict):
        value.update({k: _real(v) for k, v in value.items()})
        return value
    return type(value)(_real(v) for v in value)  # tuple, set, frozenset


def _upgrade(module: types.ModuleType) -> None:
    """Give ``module`` the real pytest: its ``pytest`` names, module-level records, default
    arguments and class attributes become the real objects (a record replays its path once)."""
    space = vars(module)
    for key, old in list(space.items()):
        space[key] = value = _real(old)
        if isinstance(value, types.FunctionType) and value.__defaults__:
            value.__defaults__ = tuple(_real(d) for d in value.__defaults__)
        if isinstance(value, type) and value.__module__ == module.__name__:
            for attr, member in list(vars(value).items()):
                if _holds_record(member) or member is _STANDIN:
                    setattr(value, attr, _real(member))
