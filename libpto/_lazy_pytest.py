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
imports ``name``. Whatever a record cannot stand for -- a class deriving from a pytest class,
``isinstance``, a comparison, ``repr``, a ``with`` -- imports pytest on the spot and uses the
real object, so the module runs once. (Only an operation no record forwards, which raises
TypeError or AttributeError, makes the module load a second time, with pytest.)

Once the module is loaded it keeps the stand-in only if nothing a worker may run can reach
pytest: pytest was not imported while loading; no record outlives the loading except in
``pytestmark`` (checked with the garbage collector, so records in nested data, closures or
defaults count); and no function or method other than tests (``test*``, collected ``Test*``
classes) and fixtures names ``pytest`` (a heuristic that only decides speed: an op that uses
the stand-in at run time gets the real pytest, imported in its rank). Otherwise the zygote
imports pytest and the module is *upgraded* in place: its ``pytest`` becomes the real module
and the records it holds (module and class attributes, defaults, closures, lists, tuples,
dicts, sets) the real objects; a record anywhere else still resolves itself on first use.
"""

from __future__ import annotations

import builtins
import gc
import importlib
import operator
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["configure", "import_op_module", "pytest_api"]

_loading = False  # True only while a module executes with the stand-in
_api: dict[str, Any] | None = None  # pytest's public surface, from the owner (configure)
_fixtures: weakref.WeakSet[Any] = weakref.WeakSet()  # what @pytest.fixture returned as it was
_made: list[weakref.ref[_Deferred]] = []  # the records of the module loading now
_DEPTH = 4  # how deep data is searched for records


def configure(api: dict[str, Any]) -> None:
    """Learn pytest's public names (``dir(pytest)``), ``__all__``, ``__version__``,
    ``version_tuple`` and ``__file__`` from a process that has pytest. Without them the
    stand-in is never used: a name check it could not make might take a branch pytest would
    not."""
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
    replayed once against the real pytest when something needs the real object. Beware:
    ``isinstance(record, X)`` for any X but :class:`_Deferred` asks ``__class__`` and so
    imports pytest; code here tests ``type(value) is _Deferred`` first."""

    __slots__ = ("__weakref__", "_entered", "_steps", "_value")

    def __init__(self, steps: tuple[tuple[Any, ...], ...]) -> None:
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_entered", [])
        _made.append(weakref.ref(self))

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

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(record, tuple) answers as the real object
        return type(self._resolve())

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
                _fixtures.add(args[0])
            return args[0]
        return _Deferred((*self._steps, ("call", args, kwargs)))

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


# what a real object is used for beyond attributes and calls: the real object does it, with
# Python's own rules (a reflected operand, TypeError for an unsupported one)
_ON_REAL: dict[str, Callable[..., Any]] = {
    "__repr__": repr, "__str__": str, "__format__": format, "__bytes__": bytes,
    "__hash__": hash, "__bool__": bool, "__len__": len, "__iter__": iter,
    "__reversed__": reversed, "__contains__": lambda r, x: x in r,
    "__getitem__": operator.getitem, "__setitem__": operator.setitem,
    "__delitem__": operator.delitem, "__int__": int, "__float__": float,
    "__complex__": complex, "__index__": operator.index, "__round__": round,
    "__neg__": operator.neg, "__pos__": operator.pos, "__abs__": abs,
    "__invert__": operator.invert, "__divmod__": divmod,
    "__rdivmod__": lambda r, o: divmod(o, r), "__pow__": pow,
    "__rpow__": lambda r, o: pow(o, r),
}  # fmt: skip
for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    _ON_REAL[f"__{_op}__"] = getattr(operator, _op)
for _op in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "lshift", "rshift",
            "and", "or", "xor"):  # fmt: skip
    _fn = getattr(operator, f"{_op}_" if _op in ("and", "or") else _op)
    _ON_REAL[f"__{_op}__"] = _fn
    _ON_REAL[f"__r{_op}__"] = lambda r, o, _fn=_fn: _fn(o, r)


def _forward(name: str, apply: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: _Deferred, *args: Any) -> Any:
        return apply(self._resolve(), *args)

    method.__name__ = name
    return method


for _name, _apply in _ON_REAL.items():
    setattr(_Deferred, _name, _forward(_name, _apply))


def _module_getattr(name: str) -> Any:
    if not _loading:
        return getattr(_real_pytest(), name)
    if _api is None or name.startswith("__") or name not in _api["names"]:
        # what pytest lacks too (its dunders that matter are real attributes: configure),
        # so hasattr, getattr with a default and `try: from pytest import X` branch as with it
        raise AttributeError(f"module 'pytest' has no attribute {name!r}")
    return _Deferred((("attr", name),))


def _module_dir() -> list[str]:
    return sorted(_api["names"]) if _loading and _api else dir(_real_pytest())


_STANDIN = types.ModuleType("pytest", "pytest, deferred by pytest-pto's zygote (_lazy_pytest)")
_STANDIN.__getattr__ = _module_getattr  # type: ignore[method-assign]
_STANDIN.__dir__ = _module_dir  # type: ignore[method-assign]


def import_op_module(name: str) -> types.ModuleType:
    """Import an op's module; with the stand-in for its own ``import pytest`` when pytest is
    not here yet, upgraded to the real pytest when the module needs it (module docstring)."""
    if _api is None or "pytest" in sys.modules or name in sys.modules:
        return importlib.import_module(name)  # nothing to save, or no names to check with
    try:
        try:
            module = _load_with_standin(name)
        except (TypeError, AttributeError) as exc:
            if "pytest" in sys.modules:
                raise  # real pytest objects were in use: the module fails with pytest too
            # a name pytest serves without listing it, or an operation no record forwards:
            # the module's code ran up to there once already
            print(
                f"pytest-pto: {name} cannot be loaded without pytest ({type(exc).__name__}: "
                f"{exc}); loading it again with pytest",
                file=sys.stderr,
            )
            return importlib.import_module(name)
        if "pytest" in sys.modules or _records_outlive(module) or _names_pytest(module):
            _upgrade(module)
        return module
    finally:
        _made.clear()  # the records of this module: counted, no longer tracked


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


def _marks(module: types.ModuleType) -> set[int]:
    """ids of the records in ``pytestmark`` (the module's, its classes'), with the records
    in their arguments: read by pytest in the owner only, never by a worker."""
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if type(obj) is _Deferred:
            if id(obj) not in seen:
                seen.add(id(obj))
                for step in obj._steps:
                    if step[0] == "call":
                        walk(step[1], depth + 1)
                        walk(tuple(step[2].values()), depth + 1)
        elif type(obj) in (list, tuple) and depth < _DEPTH:
            for item in obj:
                walk(item, depth + 1)

    holders = [module, *(v for v in vars(module).values() if _own_class(v, module))]
    for holder in holders:
        walk(vars(holder).get("pytestmark"), 0)
    return seen


def _records_outlive(module: types.ModuleType) -> bool:
    """Whether a record made while ``module`` loaded is still alive outside ``pytestmark``
    (anywhere: module data, nested containers, closures, defaults, instances)."""
    gc.collect()  # records in cycles that are garbage already
    marks = _marks(module)
    return any((r := ref()) is not None and id(r) not in marks for ref in _made)


def _own_class(value: Any, module: types.ModuleType) -> bool:
    return (
        type(value) is not _Deferred
        and isinstance(value, type)
        and value.__module__ == module.__name__
    )


def _collected_test_class(cls: type) -> bool:
    return cls.__name__.startswith("Test") and "__init__" not in vars(cls)


def _names_in(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_in(const)
    return names


def _names_pytest(module: types.ModuleType) -> bool:
    """Whether a function or method a worker may run names ``pytest`` (or another global
    bound to the stand-in or a record): tests and fixtures are run by pytest in the owner."""
    space = vars(module)
    pytest_names = {k for k, v in space.items() if v is _STANDIN or type(v) is _Deferred}

    def names_it(func: Any) -> bool:
        return (
            type(func) is types.FunctionType
            and func not in _fixtures
            and not func.__name__.startswith("test")
            and bool(_names_in(func.__code__) & pytest_names)
        )

    for value in space.values():
        if type(value) is types.FunctionType and value.__module__ == module.__name__:
            if names_it(value):
                return True
        elif _own_class(value, module) and not _collected_test_class(value):
            for member in vars(value).values():
                if type(member) is not _Deferred and any(map(names_it, _functions_of(member))):
                    return True  # (a record as member: _records_outlive has counted it)
    return False


def _functions_of(member: Any) -> tuple[Any, ...]:
    """The functions behind a class member: a method's, a static or class method's, a
    property's getter and setter."""
    if isinstance(member, property):
        return (member.fget, member.fset)
    if isinstance(member, (staticmethod, classmethod)):
        return (member.__func__,)
    return (member,)


def _real(value: Any, depth: int = 0) -> Any:
    """``value`` with its records replaced by the real objects: itself, or inside lists,
    dicts and sets (in place) and tuples (rebuilt, named ones too), ``_DEPTH`` levels deep;
    the same object when it holds none."""
    if value is _STANDIN:
        return _real_pytest()
    kind = type(value)
    if kind is _Deferred:
        return value._resolve()
    if depth >= _DEPTH:
        return value
    if kind is list:
        value[:] = [_real(v, depth + 1) for v in value]
    elif kind is dict:
        value.update({k: _real(v, depth + 1) for k, v in value.items()})
    elif kind is set:
        items = [_real(v, depth + 1) for v in value]
        value.clear()
        value.update(items)
    elif isinstance(value, tuple):
        items = [_real(v, depth + 1) for v in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            try:
                return value._make(items) if hasattr(value, "_fields") else kind(items)  # type: ignore[attr-defined]
            except Exception:  # a tuple type that cannot be rebuilt: its records stay
                return value  # records, which resolve themselves on first use
    return value


def _upgrade_function(func: types.FunctionType) -> None:
    if func.__defaults__:
        func.__defaults__ = tuple(_real(d) for d in func.__defaults__)
    if func.__kwdefaults__:
        func.__kwdefaults__ = {k: _real(v) for k, v in func.__kwdefaults__.items()}
    for cell in func.__closure__ or ():
        try:
            cell.cell_contents = _real(cell.cell_contents)
        except ValueError:  # an empty cell
            continue


def _upgrade(module: types.ModuleType) -> None:
    """Give ``module`` the real pytest: its ``pytest`` names, and the records it holds in
    its attributes, its classes' attributes and its functions' defaults and closures (with
    what they contain, ``_DEPTH`` levels deep), become the real objects."""
    space = vars(module)
    for key, old in list(space.items()):
        space[key] = value = _real(old)
        if type(value) is types.FunctionType:
            _upgrade_function(value)
        elif _own_class(value, module):
            for attr, member in list(vars(value).items()):
                if type(member) is types.FunctionType:
                    _upgrade_function(member)
                elif attr not in ("__dict__", "__weakref__", "__doc__", "__module__"):
                    real = _real(member)
                    if real is not member:
                        setattr(value, attr, real)
