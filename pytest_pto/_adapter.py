"""The runtime adapter contract: how a team's own runtime plugs into pytest-pto's rounds.

pytest-pto's value (locked device groups, ranked workers on an INIT_DONE barrier, rounds,
classified outcomes, JUnit, ``pto-report``) does not depend on which runtime the ranks drive.
An adapter tells the plugin the few things that do: how a rank initialises and closes its
runtime, what extra environment a rank needs, what a runtime leaves behind after a killed
round, and how its errors map to outcome classes. Every method has a do-nothing default, so an
adapter implements only what its runtime needs.

Where each method runs matters, because the chip workers are forked from a session process
(the zygote), not from pytest:

- controller (the pytest process, an xdist worker under ``-n``): ``prepare``, ``worker_env``,
  ``after_round``, ``classify``, ``probe`` (with ``--pto-launcher=mpirun``, ``probe`` runs in
  the host agent of the device's host, where the device is);
- the forking process, once per session, before any fork: ``preload``;
- each rank's worker, on one thread: ``init``, the test's ops, ``close``.

An adapter class is named by ``--pto-runtime NAME`` (``libpto``, ``torch``, an entry point of
the group ``pytest_pto.runtimes``, or ``module:attribute``) and instantiated without arguments
in each process that needs it; ``cache_dir`` is set on every instance, so what ``prepare``
writes there reaches every rank of every round of the test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["Classified", "RankFailure", "RoundInfo", "RuntimeAdapter", "TestInfo"]


@dataclass(frozen=True)
class Classified:
    """An adapter's verdict on a failed rank: the outcome class (``name`` or ``name=value``,
    e.g. ``device_error_code=507018``) and what a reader needs next to it. ``error_name``
    reaches JUnit as ``pto.error_name``; ``detail`` (a stuck task and core, a hint) reaches the
    failure headline."""

    outcome: str
    error_name: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class RankFailure:
    """What the controller knows about one failed rank, for ``classify``.

    ``kind`` is ``exception`` (init, an op or close raised), ``exit`` (the worker exited),
    ``signal`` (it was killed by a signal) or ``timeout`` (the watchdog killed it; its log may
    still hold the runtime's own diagnosis). ``code`` is the exception's integer ``code``
    attribute when it had one; real bindings often raise a plain ``RuntimeError`` with the code
    in the message, which is why ``message`` and ``log`` (the tail of the rank's fd 1 and fd 2)
    are here too."""

    rank: int
    phase: str  # "init", "op" or "close"
    kind: str  # "exception", "exit", "signal" or "timeout"
    exc_type: str | None = None  # qualified name, e.g. "builtins.RuntimeError"
    message: str = ""
    code: int | None = None
    exit_status: int | None = None
    signal: int | None = None
    log: str = ""
    device_ids: tuple[int, ...] = ()
    nodeid: str = ""  # the round's test id
    #: the exception object itself when it crossed the process boundary intact (it may not:
    #: an exception that does not pickle arrives as ``exc_type`` and ``message`` only)
    error: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TestInfo:
    """The test whose rounds are about to run, for ``prepare``."""

    #: not a test class, though its name starts with "Test" and test modules may import it
    __test__: ClassVar[bool] = False

    nodeid: str
    marker_kwargs: dict[str, Any] = field(default_factory=dict)
    ranks: int = 0
    platform: str = "sim"


@dataclass(frozen=True)
class RoundInfo:
    """One finished (or killed) round, for ``after_round``."""

    nodeid: str
    round: int
    devices: tuple[int, ...]
    pids: tuple[int, ...]
    round_dir: Path | None
    outcome: str
    platform: str = "sim"


class RuntimeAdapter:
    """Base class of runtime adapters; every method's default does nothing."""

    #: Device error codes after which a device must not be trusted (device health work).
    poison_codes: ClassVar[frozenset[int]] = frozenset()

    #: Set by pytest-pto on every instance: a per-session directory shared by the controller,
    #: the forking process and every rank, for what ``prepare`` builds.
    cache_dir: Path | None = None

    def preload(self) -> None:
        """Once per session in the forking process, before any fork: heavy imports. Must not
        start threads (a fork of a threaded process can hang); pytest-pto checks."""

    def prepare(self, test: TestInfo) -> None:
        """Once per test in the controller, before its first round (e.g. compile kernels into
        ``self.cache_dir``)."""

    def worker_env(self, rank: int, size: int, device_id: int) -> dict[str, str]:
        """Extra environment of that rank's worker, set before ``init``."""
        return {}

    def init(self, chip: Any) -> object:
        """In the rank's worker, before INIT_DONE: initialise the runtime. Its duration is the
        rank's init time; an exception is ``init_failed``. The return value is
        ``chip.runtime``."""
        return None

    def close(self, chip: Any, runtime: object) -> None:
        """In the rank's worker after the round's ops, on the thread that ran ``init``."""

    def after_round(self, round: RoundInfo) -> None:
        """In the controller after every round, a killed one too: remove what the runtime
        leaves behind."""

    def classify(self, failure: RankFailure) -> str | Classified | None:
        """In the controller, for a failed rank: an outcome string, a :class:`Classified`, or
        None to fall back to the built-in classes."""
        return None

    def probe(self, device_id: int) -> str | None:
        """Preflight health check of a device: None when healthy, else the reason. Runs in
        the controller before a lease is used, with ``--pto-health-check on`` (with
        ``--pto-launcher=mpirun`` in the host agent on the device's host, on an instance of
        its own); a reason quarantines the device. (The platform's own probe, e.g.
        ``npu-smi`` health on ``ascend``, runs after this one.)"""
        return None

    def budgets(self, env: Mapping[str, str]) -> dict[str, float]:
        """The runtime's device-side budgets in seconds, for the session's timeout ladder
        check: ``scheduler`` (the device scheduler's own stall budget) and ``stream_sync``
        (the host's wait for device work), either may be left out. ``env`` is what the
        workers will see (the session environment with ``--pto-env`` over it)."""
        return {}
