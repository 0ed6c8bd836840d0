"""Which runtime adapter a name means: ``--pto-runtime NAME`` and ``@pytest.mark.pto(runtime=)``.

A NAME is, in this order: a built-in (``libpto``, the default; ``torch``), a name another
package registers in the entry-point group ``pytest_pto.runtimes`` (its value is a
``module:attribute``), or a ``module:attribute`` importable from the test session (``sys.path``,
then the rootdir). Every name resolves to a *spec*, the ``module:attribute`` string that the
chip workers import in their own process (libpto never imports pytest_pto by itself), and to
the adapter class, checked here once so a typo is one usage error at configure, not a failure
in every rank of every round.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pytest_pto._adapter import RuntimeAdapter

__all__ = [
    "BUILTIN_RUNTIMES",
    "DEFAULT_RUNTIME",
    "ENTRY_POINT_GROUP",
    "RuntimeRef",
    "RuntimeResolveError",
    "known_runtimes",
    "load_spec",
    "resolve_runtime",
    "use_rootdir",
]

DEFAULT_RUNTIME = "libpto"
ENTRY_POINT_GROUP = "pytest_pto.runtimes"
BUILTIN_RUNTIMES = {
    "libpto": "pytest_pto._libpto_adapter:LibptoAdapter",
    "torch": "pytest_pto._torch_adapter:TorchAdapter",
}
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_rootdir: Path | None = None


def use_rootdir(rootdir: Path | None) -> None:
    """The session's rootdir: where ``module:attribute`` names are also looked for (set at
    configure, so markers and variants files resolve like ``--pto-runtime``)."""
    global _rootdir
    _rootdir = rootdir


class RuntimeResolveError(ValueError):
    """A runtime name that does not resolve; the message says why and lists the known names."""


@dataclass(frozen=True)
class RuntimeRef:
    """A resolved runtime: the name the user gave, the ``module:attribute`` the workers import,
    and the adapter class."""

    name: str
    spec: str
    cls: type[RuntimeAdapter]


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    """Once per process: scanning the installed distributions takes tens of milliseconds, and
    every marker naming a runtime asks."""
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # a broken installed distribution must not break every session
        return {}
    return {ep.name: ep.value for ep in eps}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as absent
        return False


def known_runtimes() -> list[str]:
    """Every name ``--pto-runtime`` accepts besides ``module:attribute``."""
    return [*BUILTIN_RUNTIMES, *sorted(set(_entry_points()) - set(BUILTIN_RUNTIMES))]


def _known_text() -> str:
    return f"known runtimes: {', '.join(known_runtimes())}, or module:attribute of an adapter class"


def load_spec(spec: str) -> type[RuntimeAdapter]:
    """Import ``module:attribute`` and check that it is a :class:`RuntimeAdapter` subclass.

    Raises ImportError/AttributeError/TypeError with a message naming ``spec``. The chip
    workers use this too (on their side of the fork), so it must not need pytest state."""
    module, _, attr = spec.partition(":")
    target: object = importlib.import_module(module)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AttributeError(f"module {module!r} has no attribute {attr!r}") from None
    if not (isinstance(target, type) and issubclass(target, RuntimeAdapter)):
        raise TypeError(f"{spec} is {target!r}, not a subclass of pytest_pto.RuntimeAdapter")
    return target


def resolve_runtime(name: str, rootdir: Path | None = None) -> RuntimeRef:
    """The adapter that ``name`` means, or :class:`RuntimeResolveError` saying why not."""
    name = name.strip()
    if not name:
        raise RuntimeResolveError(f"empty runtime name; {_known_text()}")
    if name in BUILTIN_RUNTIMES:
        spec = BUILTIN_RUNTIMES[name]
        if name == "torch" and not _installed("torch"):
            raise RuntimeResolveError(
                "runtime 'torch' needs PyTorch, which is not installed here; install the extra: "
                "pip install 'pytest-pto[torch]'"
            )
    elif name in (eps := _entry_points()):
        spec = eps[name]
        if not _SPEC.match(spec):
            raise RuntimeResolveError(
                f"runtime {name!r}: entry point {ENTRY_POINT_GROUP} value {spec!r} is not "
                "module:attribute"
            )
    elif ":" in name:
        if not _SPEC.match(name):
            raise RuntimeResolveError(f"runtime {name!r}: not module:attribute; {_known_text()}")
        spec = name
    else:
        raise RuntimeResolveError(f"unknown runtime {name!r}; {_known_text()}")
    try:
        cls = _load(spec, rootdir if rootdir is not None else _rootdir)
    except Exception as exc:
        raise RuntimeResolveError(
            f"runtime {name!r} ({spec}): cannot load the adapter: {type(exc).__name__}: {exc}"
        ) from None
    return RuntimeRef(name, spec, cls)


def _load(spec: str, rootdir: Path | None) -> type[RuntimeAdapter]:
    """``load_spec``, retried with the rootdir on ``sys.path`` (kept there, so the zygote and
    the chip workers, which take the controller's ``sys.path``, import the same module)."""
    try:
        return load_spec(spec)
    except ModuleNotFoundError:
        root = str(rootdir) if rootdir is not None else None
        if root is None or root in sys.path:
            raise
    sys.path.insert(0, root)
    return load_spec(spec)
