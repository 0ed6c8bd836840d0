"""What travels through a mailbox's task channel: the op reference with its arguments, and the
rank's answer (return value or failure record).

The op goes by reference (module, qualified name, and the module's file as a fallback), never by
value: the chip worker imports it, which needs the parent's ``sys.path`` (pytest puts rootdirs
and conftest directories there) — so the task frame carries that too.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libpto._lazy_pytest import import_op_module
from libpto.errors import InvalidArgument, PtoError

__all__ = [
    "Failure",
    "OpRef",
    "Task",
    "decode_result",
    "decode_task",
    "encode_failure",
    "encode_result",
    "encode_task",
]

PROTOCOL = pickle.HIGHEST_PROTOCOL


@dataclass(frozen=True)
class OpRef:
    """A module-level function named so another process can import it."""

    module: str
    qualname: str
    file: str | None

    @classmethod
    def of(cls, op: Callable[..., Any]) -> OpRef:
        module = getattr(op, "__module__", None)
        qualname = getattr(op, "__qualname__", None)
        if not callable(op) or not module or not qualname or "<locals>" in qualname:
            raise InvalidArgument(
                f"World.run: op {op!r} must be a module-level function (it is sent to every "
                "chip worker by reference: module and name)"
            )
        mod = sys.modules.get(module)
        target: Any = mod
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if target is not op:
            raise InvalidArgument(
                f"World.run: op {module}.{qualname} is not reachable by that name in its module "
                "(define it at module level, not inside a function or under another name)"
            )
        file = getattr(mod, "__file__", None)
        return cls(module, qualname, str(Path(file).resolve()) if file else None)

    @property
    def label(self) -> str:
        return f"{self.module}.{self.qualname}"

    def resolve(self) -> Callable[..., Any]:
        """Import the op in this process (a chip worker).

        By name first; but if the module of that name comes from another file than the
        parent's (pytester sessions reuse names like ``test_foo`` for different files, and the
        zygote may hold an earlier one), the parent's file is loaded under a private name."""
        mod: Any = None
        if self.module != "__main__":
            try:
                mod = import_op_module(self.module)  # preloaded by the zygote, unless new
            except ImportError:
                mod = None
            if mod is not None and self.file and _file_of(mod) not in (None, self.file):
                mod = None
        if mod is None and self.file:
            mod = _load_file(self.file, self.module)
        if mod is None:
            raise ImportError(f"cannot import module {self.module!r} of op {self.qualname}")
        target: Any = mod
        for part in self.qualname.split("."):
            target = getattr(target, part)
        op: Callable[..., Any] = target
        return op


def _file_of(mod: Any) -> str | None:
    file = getattr(mod, "__file__", None)
    return str(Path(file).resolve()) if file else None


def _load_file(path: str, module: str) -> Any:
    # a script run as __main__, or a module whose name now means another file, is loaded from
    # the parent's file under a private name (a script's `if __name__ == "__main__"` stays asleep)
    import hashlib  # only here, the rare case: loading it costs every zygote (libcrypto)

    name = f"__pto_op_{module.replace('.', '_')}_{hashlib.sha1(path.encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load op module from {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Task:
    op: OpRef
    sys_path: list[str]
    args_blob: bytes  # pickled (args, kwargs): unpickled only once sys.path is the parent's

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = pickle.loads(self.args_blob)
        return args, kwargs


def encode_task(op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    ref = OpRef.of(op)
    try:
        blob = pickle.dumps((args, kwargs), PROTOCOL)
    except Exception as exc:
        raise InvalidArgument(
            f"World.run: arguments of op {ref.label} cannot be pickled for the chip workers: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    frame = (ref.module, ref.qualname, ref.file, list(sys.path), blob)
    return pickle.dumps(frame, PROTOCOL)


def decode_task(data: bytes) -> Task:
    """The outer frame holds only builtin types, so it unpickles before sys.path is set."""
    module, qualname, file, sys_path, blob = pickle.loads(data)
    return Task(OpRef(module, qualname, file), sys_path, blob)


@dataclass
class Failure:
    """A rank's failure record: the exception (when it pickles) and its text and traceback."""

    type_name: str
    text: str
    traceback: str
    error: BaseException | None = None
    qualname: str = ""  # module-qualified type name, e.g. "builtins.RuntimeError"
    code: int | None = None  # the exception's integer ``code`` attribute, if it had one

    @property
    def pto(self) -> PtoError | None:
        return self.error if isinstance(self.error, PtoError) else None


def encode_failure(exc: BaseException, limit: int) -> bytes:
    """Never raises: whatever the exception does, the rank reports it (as text at worst)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        text = str(exc)
    except Exception as err:  # a broken __str__ must not turn the op's failure into a crash
        text = f"<str() of the exception failed: {type(err).__name__}: {err}>"
    failure = Failure(type(exc).__name__, text, tb, exc, _qualname(type(exc)), _int_code(exc))
    try:
        data = pickle.dumps(("err", failure), PROTOCOL)
        pickle.loads(data)  # an exception that pickles but does not rebuild is sent as text
    except BaseException:  # user code runs in its __reduce__ and rebuild: it may raise anything
        failure.error = None
        data = pickle.dumps(("err", failure), PROTOCOL)
    if len(data) > limit:
        failure = Failure(
            failure.type_name,
            failure.text[:2000],
            tb[-(limit // 4) :],
            None,
            failure.qualname,
            failure.code,
        )
        data = pickle.dumps(("err", failure), PROTOCOL)
    return data


def _qualname(cls: type) -> str:
    module = getattr(cls, "__module__", None) or "builtins"
    return f"{module}.{getattr(cls, '__qualname__', cls.__name__)}"


def _int_code(exc: BaseException) -> int | None:
    """The exception's ``code`` attribute when it is an int (runtimes' bindings often carry
    one; it survives even when the exception itself does not pickle)."""
    try:
        code = getattr(exc, "code", None)
    except Exception:  # a property of user code may raise anything
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def encode_result(value: Any, op_label: str, limit: int) -> bytes:
    try:
        data = pickle.dumps(("ok", value), PROTOCOL)
    except Exception as exc:
        return encode_failure(
            TypeError(f"return value of op {op_label} cannot be pickled: {exc}"), limit
        )
    if len(data) > limit:
        err = ValueError(
            f"return value of op {op_label} is {len(data)} bytes pickled, more than the mailbox "
            f"limit of {limit} bytes per rank (PTO_MBOX_PAYLOAD_BYTES)"
        )
        return encode_failure(err, limit)
    return data


def decode_result(data: bytes) -> tuple[bool, Any]:
    """(True, value) or (False, Failure)."""
    try:
        kind, payload = pickle.loads(data)
    except Exception as exc:
        return False, Failure(
            type(exc).__name__, f"cannot unpickle the rank's answer: {exc}", "", None
        )
    return kind == "ok", payload
