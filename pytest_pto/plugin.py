"""pytest entry point of pytest-pto: options, marker, fixtures and the round life cycle.

One round (one item) goes: setup builds its :class:`~pytest_pto._rounds.RoundPlan` -> the call
phase leases its devices and starts the chip workers (``pto_world``), then runs the test body
-> makereport classifies the end into one outcome class, attaches the JUnit properties and
rewrites the failure text to start with the class -> teardown closes the World and releases
the devices. Session-wide state lives in one registered :class:`PtoSession` object.

Why most imports are inside the functions that use them: the plugin is a ``pytest11`` entry
point, loaded by every pytest session of an environment where pytest-pto is installed. A
session without a distributed test must not pay for the C extension, yaml, junitparser, the
device locks or the report modules (``tests/plugin/test_good_citizen.py`` checks it, and
``benchmarks/bench_overhead.py`` measures it against ``-p no:pto``).
"""

from __future__ import annotations

import itertools
import shlex
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

import libpto
from pytest_pto._rounds import ROUND_PARAM
from pytest_pto._settings import OPTIONS, add_options
from pytest_pto._vocabulary import DEVICE_UNAVAILABLE, HANG, round_label

if TYPE_CHECKING:  # the rest is imported where it is used (see the module docstring)
    from libpto._procs import Zygote
    from pytest_pto._adapter import RuntimeAdapter
    from pytest_pto._registry import RuntimeRef
    from pytest_pto._rounds import RoundPlan
    from pytest_pto._settings import Settings
    from pytest_pto._summary import SummaryCollector
    from pytest_pto._variants import Variant
    from pytest_pto._world_fixture import PtoWorld, RoundRuntime
    from pytest_pto.devices import DevicePool, Quarantine
    from pytest_pto.outcomes import RoundOutcome

__all__ = ["PtoSession"]

INFRA = "infra"
PRODUCT = "product"
SESSION_KEY = pytest.StashKey["PtoSession"]()
ROUND_KEY = pytest.StashKey["_RoundState"]()
MARKER_HELP = (
    "pto(ranks=N | [N, M], env={NAME: value}, rank_env={rank: {...}}, init_timeout=S, "
    "round_timeout=S, runtime=NAME, devices_per_rank=K): a distributed test run on N locked "
    "devices through the pto_world fixture"
)


# --- registration ---------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_pto import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    if config.getoption("help", False) or config.getoption("version", False):
        return
    session = PtoSession(config)
    if _explicit_options(config):
        # the user asked for rounds: the zygote boots while the settings resolve and pytest
        # collects, not in front of the first round (stopped after collection if none came)
        # (a usage error below leaves it to libpto's atexit handler, which stops and reaps it)
        session.prestart_early()
        session.load()  # an explicit --pto-* option is checked now: a usage error at once
        if session.settings.hosts:  # from ini or env: each host agent has its own zygote
            session.drop_early_zygote()
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "pto-session")


def _explicit_options(config: pytest.Config) -> bool:
    return any(config.getoption(f"pto_{opt.dest}") is not None for opt in OPTIONS)


def _load(config: pytest.Config) -> tuple[Settings, dict[str, Variant], list[Variant] | None]:
    """Resolve and validate the settings and the variants file (raises pytest.UsageError)."""
    from pytest_pto._settings import resolve

    settings = resolve(config)
    variants: dict[str, Variant] = {}
    selected: list[Variant] | None = None
    if settings.variants_file is not None:
        from pytest_pto._variants import VariantError, load_variants, select_variants

        try:
            variants = load_variants(settings.variants_file)
            selected = select_variants(settings.variants_file, variants, settings.variant)
        except VariantError as exc:
            raise pytest.UsageError(f"pytest-pto: {exc}") from None
        ndev = len(settings.devices)
        for v in selected:
            if v.ranks is not None and v.ranks > ndev:
                raise pytest.UsageError(
                    f"pytest-pto: {settings.variants_file}: variant {v.name!r}: key 'ranks': "
                    f"{v.ranks} is more ranks than devices ({ndev})"
                )
    elif settings.variant:
        raise pytest.UsageError(
            f"pytest-pto: {settings.source('variant')}: selecting a variant needs a variants "
            "file (--pto-variants FILE)"
        )
    return settings, variants, selected


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        try:
            session.shutdown()
        finally:
            launcher = sys.modules.get("pytest_pto._launcher")  # imported only by a launch
            if launcher is not None:
                launcher.close_launch()  # --pto-launcher=mpirun: agents leave, mpirun's group ends
        config.pluginmanager.unregister(session)
        del config.stash[SESSION_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """After pytest's junitxml wrote its file (controller only): outcome class as the failure
    ``type``, ``pto.seed``, and with --pto-junit-strict the schema-valid form."""
    result = yield
    pto = session.config.stash.get(SESSION_KEY, None)
    if pto is not None and not pto.is_worker and pto.has_records:
        _finish_junit(session.config, pto.settings)
    return result


def _finish_junit(config: pytest.Config, settings: Settings) -> None:
    from xml.etree.ElementTree import ParseError

    from _pytest.junitxml import xml_key

    from pytest_pto._junit_xml import finish_junit
    from pytest_pto.report._git import git_commit

    logxml = config.stash.get(xml_key, None)
    path = getattr(logxml, "logfile", None)
    if not path:
        return
    try:
        args = [str(a) for a in config.invocation_params.args]
        finish_junit(
            path,
            strict=settings.junit_strict,
            seed=settings.seed,
            command=shlex.join(["pytest", *args]),
            commit=git_commit(config.rootpath),
        )
    except (OSError, ParseError) as exc:  # the run is over and reported: say it, do not crash
        sys.stderr.write(f"pytest-pto: --junitxml {path}: pto attributes not added: {exc}\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A ``round-auto`` item (``--pto-rounds=auto``) runs its rounds here, one report set
    per round (:mod:`pytest_pto._auto_rounds`); every other item goes pytest's own way."""
    if not _is_round(item):  # cheap: a session without pto tests imports nothing more
        return None
    from pytest_pto._auto_rounds import is_auto_item, run_auto_rounds

    if not is_auto_item(item):
        return None
    session = item.config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    cap = session.settings.max_rounds

    def decided(sub: pytest.Item) -> bool:
        state = sub.stash.get(ROUND_KEY, None)
        return state is None or state.decision != "running"

    run_auto_rounds(item, nextitem, decided, cap)
    return True


@pytest.hookimpl(trylast=True)
def pytest_pto_select_devices(
    config: pytest.Config, pool: DevicePool, free: frozenset[int], count: int
) -> tuple[int, ...] | None:
    from pytest_pto.devices import choose_group

    return choose_group(pool.devices, free, count)


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def _pto_round(request: pytest.FixtureRequest) -> int:
    return int(getattr(request, "param", 1))


@pytest.fixture
def _pto_variant(request: pytest.FixtureRequest) -> str | None:
    return getattr(request, "param", None)


@pytest.fixture
def _pto_ranks(request: pytest.FixtureRequest) -> int | None:
    return getattr(request, "param", None)


@pytest.fixture
def pto_world(request: pytest.FixtureRequest) -> Iterator[PtoWorld]:
    """This round's ranks: ``size``, ``devices``, ``round``, ``variant``, ``run(op, ...)``.

    The devices are leased and the chip workers started on first use, at the latest when the
    test body starts; both are released at teardown whatever happened.
    """
    session = request.config.stash.get(SESSION_KEY, None)
    if session is None:
        pytest.fail("pytest-pto is not configured (was it disabled with -p no:pto?)")
    session.used = True
    session._install_sigterm()  # no-op when the item is known to be distributed already
    try:
        session.load()
    except pytest.UsageError as exc:  # a test that asked for pto_world at run time only
        pytest.fail(str(exc), pytrace=False)
    from pytest_pto._world_fixture import PtoWorld

    item = request.node
    state = item.stash.get(ROUND_KEY, None)
    if state is None:  # e.g. requested through getfixturevalue by a non-parametrized test
        state = _RoundState(_plan(item, session))
        item.stash[ROUND_KEY] = state
    handle = PtoWorld(
        item,
        state.plan,
        session.pool,
        session.settings.lock_timeout,
        session.round_runtime(state.plan, item),
        health_check=session.settings.health_check,
        quarantine_ttl=session.settings.quarantine_ttl,
        multihost=_multihost(session.settings),
    )
    state.handle = handle
    session.open_handles.add(handle)
    try:
        yield handle
    finally:
        session.open_handles.discard(handle)
        handle.close()


# --- per-round state ------------------------------------------------------------------------
@dataclass
class _RoundState:
    plan: RoundPlan
    handle: PtoWorld | None = None
    outcome: RoundOutcome | None = None
    decision: str | None = None  # --pto-rounds=auto: the state after this round


def _plan(item: pytest.Item, session: PtoSession) -> RoundPlan:
    """The item's plan; a bad marker is this test's error, said in one line.

    Collection already rejected bad markers of collected tests; one added later (a conftest's
    ``pytest_collection_modifyitems``) is found here and must not surface as a traceback.
    """
    from pytest_pto._rounds import MarkerError, plan_for

    try:
        return plan_for(item, session.settings, session.variants)
    except MarkerError as exc:
        pytest.fail(f"pytest-pto: {exc}", pytrace=False)


def _wants_pto(metafunc: pytest.Metafunc) -> bool:
    return (
        next(iter(metafunc.definition.iter_markers("pto")), None) is not None
        or "pto_world" in metafunc.fixturenames
    )


def _multihost(settings: Settings) -> Any:
    """--pto-launcher=mpirun's MultiHost, else None; the launcher (with concurrent.futures)
    is imported only for it, ~3 ms less in front of every session's first round."""
    if settings.launcher != "mpirun":
        return None
    from pytest_pto._launcher import multihost_of

    return multihost_of(settings)


def _is_libpto_sigterm(handler: Any) -> bool:
    """libpto's own handler (kill the workers, then die by SIGTERM): ours supersedes it."""
    return libpto.is_sigterm_cleanup(handler)


def _is_round(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", None) or {}
    return ROUND_PARAM in params


def _fmt_devices(ids: Sequence[int]) -> str:
    ids = sorted(ids)
    if ids and ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 2:
        return f"{ids[0]}-{ids[-1]}"
    return ",".join(map(str, ids))


def _detail_text(outcome: RoundOutcome, exc: BaseException | None) -> str:
    lines = [f"pto outcome: {outcome.outcome}"]
    if outcome.rank is not None:
        lines.append(f"failed rank: {outcome.rank}")
    if outcome.error_code is not None:
        lines.append(f"error code: {outcome.error_code} {outcome.error_name or ''}".rstrip())
    if outcome.message:
        lines.append(outcome.message)
    if outcome.detail:
        lines.append(outcome.detail)
    shown = outcome.detail
    details = getattr(exc, "details", None)
    tb = details.get("traceback") if isinstance(details, dict) else None
    if tb and str(tb).strip() not in shown:
        lines += ["", f"traceback in rank {outcome.rank}:", str(tb).rstrip()]
    for rank, text in sorted(outcome.stacks.items()):
        if str(text).strip() and str(text).strip() in shown:
            continue
        label = "parent / unknown" if rank < 0 else f"rank {rank}"
        lines += ["", f"---- stack of {label} ----", str(text).rstrip()]
    return "\n".join(lines)


class PtoSession:
    """Session-wide state and the hooks that need it (registered as plugin ``pto-session``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._settings: Settings | None = None
        self.variants: dict[str, Variant] = {}
        self.selected: list[Variant] | None = None
        self.used = False  # a distributed test was collected or run in this process
        self._zygote_prestarted = False  # _prestart_zygote started it
        self._early_zygote: Zygote | None = None  # started by prestart_early, not found
        self.load_error: pytest.UsageError | None = None
        self._header_shown = False  # an xdist controller collects nothing: said at the end
        self._summary: SummaryCollector | None = None  # made when a round is first reported
        self.open_handles: set[PtoWorld] = set()
        self._pool: DevicePool | None = None
        self._runtimes: dict[str, RuntimeRef] = {}
        self._adapters: dict[str, RuntimeAdapter] = {}  # by spec: one instance per session
        self._cache_dir: Path | None = None
        self._prepared: dict[tuple[str, str], BaseException | None] = {}
        self._old_sigterm: Any = None
        self.retried: list[str] = []  # rounds retried after an infra failure (terminal lines)
        self.quarantines: list[Quarantine] = []  # written by this process
        #: --pto-rounds=auto: (failures, product rounds) per (test, variant) in this session
        self._auto: dict[tuple[str, str | None], list[int]] = {}

    @property
    def summary(self) -> SummaryCollector:
        """The rounds reported in this process (made on first use)."""
        if self._summary is None:
            from pytest_pto._summary import SummaryCollector

            self._summary = SummaryCollector()
        return self._summary

    @property
    def has_records(self) -> bool:
        """A round was reported (asked without making the collector, whose modules a session
        without pto tests never imports)."""
        return self._summary is not None and bool(self._summary.records)

    def load(self) -> None:
        """Resolve the settings now (raises pytest.UsageError naming the bad source)."""
        if self._settings is None:
            self._settings, self.variants, self.selected = _load(self.config)

    @property
    def settings(self) -> Settings:
        """The session settings, resolved on first use (raises pytest.UsageError).

        Why lazily: the plugin is loaded in every pytest session of an environment; a session
        without a distributed test must not fail over a ``PTO_*`` variable it never uses.
        A bad setting found during collection still ends the session as a usage error (exit
        4), raised from ``pytest_collection_modifyitems`` where pytest reports it as such.
        """
        if self._settings is None:
            if self.load_error is not None:
                raise self.load_error
            try:
                self.load()
            except pytest.UsageError as exc:
                self.load_error = exc
                raise
        assert self._settings is not None
        return self._settings

    def _quiet_settings(self) -> Settings | None:
        """The settings, or None if they are bad: an xdist controller collects nothing and
        resolves them only at the end, after its workers reported the error."""
        try:
            return self.settings
        except pytest.UsageError:
            return None

    @property
    def pool(self) -> DevicePool:
        if self._pool is None:  # lazily: a collect-only run never touches the lock dir
            from pytest_pto.devices import DevicePool

            try:
                self._pool = DevicePool(
                    self.settings.devices,
                    self.settings.lock_dir,
                    chooser=self._choose,
                    honour_quarantine=self.settings.quarantine,
                )
            except ValueError as exc:
                raise pytest.UsageError(
                    f"pytest-pto: {self.settings.source('lock_dir')}: {exc}"
                ) from None
        return self._pool

    def _choose(
        self, devices: Sequence[int], free: frozenset[int], count: int
    ) -> tuple[int, ...] | None:
        assert self._pool is not None
        result = self.config.hook.pytest_pto_select_devices(
            config=self.config, pool=self._pool, free=free, count=count
        )
        return tuple(result) if result else None

    # -- runtime adapters ----------------------------------------------------------------------
    def round_runtime(self, plan: RoundPlan, item: pytest.Item) -> RoundRuntime:
        """The adapter of ``plan``'s runtime: resolved and instantiated once per session."""
        from pytest_pto._registry import RuntimeResolveError, resolve_runtime
        from pytest_pto._world_fixture import RoundRuntime

        ref = self._runtimes.get(plan.runtime)
        if ref is None:
            try:
                ref = resolve_runtime(plan.runtime, self.config.rootpath)
            except RuntimeResolveError as exc:  # checked at configure/collection already
                pytest.fail(f"pytest-pto: {plan.nodeid}: {exc}", pytrace=False)
            self._runtimes[plan.runtime] = ref
        adapter = self._adapters.get(ref.spec)
        if adapter is None:
            adapter = ref.cls()
            adapter.cache_dir = self.cache_dir
            # a TorchAdapter's module is imported if it is one (not otherwise: ~2 ms)
            torch_adapter = sys.modules.get("pytest_pto._torch_adapter")
            if torch_adapter is not None and isinstance(adapter, torch_adapter.TorchAdapter):
                # --pto-torch-backend, passed via worker_env
                adapter.backend = self.settings.torch_backend
            self._adapters[ref.spec] = adapter
        runtime = RoundRuntime(ref.name, ref.spec, adapter, self.cache_dir, lambda: None)
        runtime.prepare = lambda: self._prepare(plan, item, runtime)
        return runtime

    @property
    def cache_dir(self) -> Path:
        """The session's adapter cache (``RuntimeAdapter.cache_dir``), removed at its end."""
        if self._cache_dir is None:
            from pytest_pto._world_fixture import session_temp_dir

            self._cache_dir = session_temp_dir("cache")
        return self._cache_dir

    def _prepare(self, plan: RoundPlan, item: pytest.Item, runtime: RoundRuntime) -> None:
        """The adapter's ``prepare`` once per test (all rounds and variants share it); a
        failure is re-raised by every later round of the test instead of being retried."""
        key = (runtime.spec, plan.base_id)
        if key in self._prepared:
            error = self._prepared[key]
            if error is not None:
                raise error
            return
        from pytest_pto._adapter import TestInfo

        kwargs: dict[str, Any] = {}
        for mark in reversed(list(item.iter_markers("pto"))):  # closest wins
            kwargs.update(mark.kwargs)
        info = TestInfo(
            nodeid=plan.base_id, marker_kwargs=kwargs, ranks=plan.ranks, platform=plan.platform
        )
        try:
            runtime.adapter.prepare(info)
        except Exception as exc:
            error = RuntimeError(f"{runtime.label}: prepare({plan.base_id}) raised {exc!r}")
            self._prepared[key] = error
            raise error from exc
        self._prepared[key] = None

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # -- SIGTERM during a round: KeyboardInterrupt, so fixtures tear down (workers, locks) ----
    def _install_sigterm(self) -> None:
        """Only while a distributed item runs; restored after it (:meth:`_restore_sigterm`).

        Outside rounds SIGTERM keeps whatever meaning the session gave it (default: the
        process dies), so sessions without distributed tests behave as without the plugin.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if current == self._on_sigterm:
            return  # already ours (this item)
        if current is not signal.SIG_DFL and not _is_libpto_sigterm(current):
            return  # someone else owns it
        self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        self._old_sigterm = None  # ... also after this round: the session is going down
        raise KeyboardInterrupt("SIGTERM: pytest-pto is tearing down chip workers and locks")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if _is_round(item) or "pto_world" in getattr(item, "fixturenames", ()):
            self._install_sigterm()
        try:
            return (yield)
        finally:  # also when pto_world was requested at run time (getfixturevalue)
            self._restore_sigterm()

    def shutdown(self) -> None:
        for handle in list(self.open_handles):
            try:
                handle.close()
            except Exception as exc:  # the report is over; say it, do not raise
                sys.stderr.write(f"pytest-pto: closing {handle!r} failed: {exc!r}\n")
        self.open_handles.clear()
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None
        if "pytest_pto._world_fixture" in sys.modules:  # a round ran: its kept folders go
            from pytest_pto._world_fixture import drop_round_dirs

            drop_round_dirs()
        self._restore_sigterm()

    # -- collection ----------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if not _wants_pto(metafunc):
            return
        self.used = True
        try:
            settings = self.settings  # first distributed test: the settings are resolved here
        except pytest.UsageError as exc:
            if self.is_worker:  # an xdist worker cannot end the session: a collection error
                raise pytest.Collector.CollectError(str(exc)) from None
            return  # raised as the session's usage error once collection is over
        from pytest_pto._rounds import parametrize

        parametrize(metafunc, settings, self.selected)
        self._prestart_zygote(settings)
        if self._zygote_prestarted:  # the ops beside the test: loaded while pytest collects
            from libpto._procs import preload_soon

            preload_soon([metafunc.module.__name__], spares=settings.ranks)

    def _prestart_zygote(self, settings: Settings) -> None:
        """At the first distributed test collected, start the zygote the rounds fork from, so
        its interpreter boots (~60 ms) while pytest collects and sets up, not in front of the
        first round (an explicit --pto-* option started it at configure already:
        :meth:`prestart_early`)."""
        if not settings.hosts and self._may_prestart():
            self._start_zygote()

    def prestart_early(self) -> None:
        """At configure, for a session with an explicit ``--pto-*`` option: the user asked for
        rounds, so the zygote boots while the settings resolve and pytest collects (~50 ms in
        front of the first round otherwise, most of a 1-round command's start-up). A session
        that then collects no distributed test stops it at the end of collection
        (``pytest_collection_modifyitems``): none is left running (section 4.1)."""
        launcher = self.config.getoption("pto_launcher")
        hosts = self.config.getoption("pto_hosts") or launcher not in (None, "local")
        if not hosts and self._may_prestart():
            self._early_zygote = self._start_zygote()

    def _may_prestart(self) -> bool:
        """Not twice, not for --collect-only (nothing runs) and not for an xdist controller
        (its workers run the tests); --pto-launcher=mpirun: each host agent has its own."""
        controller = getattr(self.config.option, "dist", "no") != "no" and not self.is_worker
        return not (self._zygote_prestarted or controller or self.config.option.collectonly)

    def _start_zygote(self) -> Zygote | None:
        self._zygote_prestarted = True
        from libpto._procs import prestart_zygote

        return prestart_zygote()

    def drop_early_zygote(self) -> None:
        """Stop the zygote :meth:`prestart_early` started, now that no round will use it."""
        self._zygote_prestarted = False
        if self._early_zygote is not None:
            from libpto._procs import stop_zygote

            stop_zygote(self._early_zygote)
            self._early_zygote = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self) -> None:
        if not self.used:  # an explicit option started it, but no distributed test came
            self.drop_early_zygote()
        if self.load_error is not None and not self.is_worker:  # pytest exits 4 with it
            raise self.load_error

    def pytest_report_collectionfinish(self, config: pytest.Config) -> list[str]:
        """The session facts, once a distributed test was collected (silent otherwise)."""
        if not self.used or self._settings is None:
            return []
        self._header_shown = True
        return self._header_lines(self._settings)

    def _header_lines(self, s: Settings) -> list[str]:
        rt = "off" if s.round_timeout is None else f"{s.round_timeout:g} s"
        rounds = str(s.rounds)
        if s.auto_rounds:
            what = "" if s.target_outcome == "any" else f" of {s.target_outcome}"
            rounds = (
                f"auto (at most {s.max_rounds}, target failure rate{what} "
                f"{100 * s.target_fail_rate:g}%)"
            )
        lines = [
            f"pto: platform {s.platform}, devices {_fmt_devices(s.devices)} "
            f"({len(s.devices)}), lock dir {s.lock_dir} (lock timeout {s.lock_timeout:g} s)",
            f"pto: ranks {s.ranks}, rounds {rounds}, latch policy {s.latch_policy}, "
            f"init barrier {'on' if s.init_barrier else 'off'}, init timeout "
            f"{s.init_timeout:g} s, round timeout {rt}, seed {s.seed}",
        ]
        if s.hosts:
            hosts = " ".join(f"{h.name}:{_fmt_devices(h.devices)}" for h in s.hosts)
            args = f" {' '.join(s.mpi_args)}" if s.mpi_args else ""
            lines.append(
                f"pto: launcher mpirun ({s.mpi_flavor}), hosts {hosts} (each host's own lock "
                f"dir {s.lock_dir}; "
                f"{s.mpirun}{args})"
            )
        if s.env:
            lines.append("pto: env " + " ".join(f"{k}={v}" for k, v in s.env.items()))
        if s.variants_file is not None and self.selected is not None:
            names = ", ".join(v.name for v in self.selected)
            lines.append(f"pto: variants {s.variants_file}: {names}")
        if s.log_dir is not None:
            lines.append(f"pto: logs kept in {s.log_dir}")
        lines += self._ladder_lines(s)
        if s.trace is not None:
            lines.append(f"pto: trace written to {s.trace}")
        return lines

    def _ladder_lines(self, s: Settings) -> list[str]:
        """The timeout ladder of the session's runtime: device-side budgets must sit below
        host-side ones (scheduler < stream sync < init timeout < round timeout), or a device
        error can never surface because a host timeout fires first. Said once, here."""
        import os

        try:
            from pytest_pto._registry import resolve_runtime

            ref = resolve_runtime(s.runtime, self.config.rootpath)
            adapter = self._adapters.get(ref.spec) or ref.cls()
            budgets = adapter.budgets({**os.environ, **s.env}) or {}
        except Exception as exc:  # the ladder is advice: never the reason a session fails
            return [f"pto: timeout ladder not checked: runtime {s.runtime!r}: {exc!r}"]
        rungs: list[tuple[str, float]] = []
        for key, label in (("scheduler", "scheduler budget"), ("stream_sync", "stream-sync")):
            value = budgets.get(key)
            if isinstance(value, (int, float)) and value > 0:
                rungs.append((f"{label} {value:g} s ({s.runtime})", float(value)))
        rungs.append((f"init timeout {s.init_timeout:g} s", s.init_timeout))
        if s.round_timeout is not None:
            rungs.append((f"round timeout {s.round_timeout:g} s", s.round_timeout))
        bad = [f"{lo} >= {hi}" for (lo, a), (hi, b) in itertools.pairwise(rungs) if a >= b]
        if not bad:
            return []
        return [
            "pto: WARNING timeout ladder: "
            + "; ".join(bad)
            + " (device-side budgets must sit below host-side ones: scheduler < stream sync "
            "< init timeout < round timeout; otherwise a host timeout fires before the device "
            "error can surface)"
        ]

    # -- the round -----------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if _is_round(item) and ROUND_KEY not in item.stash:
            item.stash[ROUND_KEY] = _RoundState(_plan(item, self))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        state = item.stash.get(ROUND_KEY, None)
        handle = state.handle if state is not None else None
        if handle is None:
            return (yield)
        __tracebackhide__ = True  # a start failure is shown as the round's, not this hook's
        try:
            handle.start()  # lease + chip workers: a failure here is the round's outcome
        except Exception as exc:
            if not self._retry(item, handle, exc):
                raise
            handle.start()  # the second attempt's start failure is the round's outcome
        handle.arm_watchdog()
        try:
            result = yield
            handle.finish()  # the ranks close their runtimes: a failure there is this round's
            return result
        except Exception as exc:
            if not self._retry(item, handle, exc):
                raise
        finally:
            handle.disarm_watchdog()
        # an infrastructure failure: once more, in fresh workers on other devices
        handle.start()
        handle.arm_watchdog()
        try:
            item.runtest()
            handle.finish()
        finally:
            handle.disarm_watchdog()
        return None

    def _retry(self, item: pytest.Item, handle: PtoWorld, exc: BaseException) -> bool:
        """After a failed first attempt: quarantine a poisoned device; True when the failure
        is the infrastructure's (then the handle is ready for the second attempt)."""
        if handle.attempt != 1:
            return False
        outcome = self._classify(item, exc, handle)
        self._quarantine(item, handle, outcome)
        if self._verdict(handle, outcome) != INFRA:
            return False
        try:
            handle.retry(outcome.outcome)
        except RuntimeError as error:  # the first attempt did not end cleanly: no retry
            sys.stderr.write(f"pytest-pto: {item.nodeid}: no retry: {error}\n")
            return False
        return True

    @staticmethod
    def _poison(handle: PtoWorld | None) -> frozenset[int]:
        runtime = handle.runtime if handle is not None else None
        if runtime is None:
            from pytest_pto._libpto_adapter import LibptoAdapter

            return LibptoAdapter.poison_codes
        return frozenset(runtime.adapter.poison_codes or ())

    def _verdict(self, handle: PtoWorld | None, outcome: RoundOutcome) -> str:
        """``infra`` for what the machine did (poisoning device codes, no devices, probe
        failures, workers that could not be launched), ``product`` for everything else."""
        if outcome.passed:
            return PRODUCT
        if outcome.outcome == DEVICE_UNAVAILABLE:
            return INFRA
        if outcome.error_code is not None and outcome.error_code in self._poison(handle):
            return INFRA
        if handle is not None and handle.launch_failed:
            return INFRA
        return PRODUCT

    def _quarantine(
        self, item: pytest.Item, handle: PtoWorld | None, outcome: RoundOutcome
    ) -> None:
        """A poisoning code quarantines the failing rank's device(s) for every session."""
        if (
            handle is None
            or outcome.rank is None
            or outcome.error_code is None
            or outcome.error_code not in self._poison(handle)
            or not self.settings.quarantine
        ):
            return
        for device in handle.rank_devices.get(outcome.rank, ()):
            try:  # where the device is: with --pto-launcher=mpirun, the rank's host
                q = handle.quarantine(
                    outcome.rank,
                    device,
                    reason=outcome.outcome,
                    outcome=outcome.outcome,
                    code=outcome.error_code,
                    test=item.nodeid,
                    round=handle.plan.round,
                    ttl=self.settings.quarantine_ttl,
                )
                self.quarantines.append(q)
            except OSError as exc:  # the lock dir went away: say it, the round is reported
                sys.stderr.write(f"pytest-pto: quarantine of device {device} failed: {exc}\n")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        state = item.stash.get(ROUND_KEY, None)
        final = (
            state is not None
            and state.outcome is None
            and (call.when == "call" or (call.when == "setup" and call.excinfo is not None))
            and not (call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception))
        )
        if not final or state is None:
            return (yield)
        from pytest_pto._junit_props import round_properties
        from pytest_pto.outcomes import RoundOutcome

        exc = call.excinfo.value if call.excinfo is not None else None
        handle = state.handle
        outcome = self._classify(item, exc, handle)
        if outcome.outcome == HANG and not outcome.stacks and handle is not None:
            outcome = RoundOutcome(
                HANG, outcome.rank, message=outcome.message, stacks=handle.stacks()
            )
        state.outcome = outcome
        verdict = self._verdict(handle, outcome)
        if handle is not None:
            handle.outcome = outcome.outcome
            self._quarantine(item, handle, outcome)
        if state.plan.auto:
            state.decision = self._auto_decision(state.plan, outcome.outcome, verdict)
        props = round_properties(
            state.plan,
            outcome,
            devices=handle.lease.devices if handle is not None and handle.lease else None,
            init_skew_ms=handle.init_skew_ms if handle is not None else None,
            init_skew_partial=handle.init_skew_partial if handle is not None else False,
            lock_wait_ms=handle.lock_wait_ms if handle is not None else None,
            host=self.pool.host if self._pool is not None else socket.gethostname(),
            rank_hosts=handle.rank_hosts if handle is not None else (),
            verdict=verdict,
            attempt=handle.attempt if handle is not None else 1,
            first_outcome=handle.first_outcome if handle is not None else None,
            first_devices=handle.first_devices if handle is not None else (),
            decision=state.decision,
        )
        item.config.hook.pytest_pto_round_properties(item=item, properties=tuple(props))
        item.user_properties.extend(props)
        if not outcome.passed and handle is not None:
            for name, text in handle.log_texts().items():
                item.add_report_section(call.when, f"log pto {name}", text)
        report = yield
        if not outcome.passed and report.failed:
            self._rewrite_failure(report, outcome, exc)
        if self.settings.trace is not None and handle is not None:
            report.pto_events = handle.events()  # type: ignore[attr-defined]
        item.config.hook.pytest_pto_round_finished(item=item, outcome=outcome)
        return report

    def _auto_decision(self, plan: RoundPlan, outcome: str, verdict: str) -> str:
        """The sequential decision after this round: infrastructure rounds (the round's
        ``pto.verdict``, the same rule as the tables' pass rate) do not count."""
        from pytest_pto.report import sequential_decision

        tally = self._auto.setdefault((plan.base_id, plan.variant), [0, 0])
        if verdict != INFRA:
            from pytest_pto._auto_rounds import counts_as_failure

            tally[0] += counts_as_failure(outcome, plan.target_outcome)
            tally[1] += 1
        decision = sequential_decision(tally[0], tally[1], plan.target_fail_rate, plan.rounds)
        if decision == "running" and plan.round >= plan.rounds:
            decision = "undecided"  # the cap counts rounds run, infrastructure ones too
        return decision

    def _classify(
        self, item: pytest.Item, exc: BaseException | None, handle: PtoWorld | None
    ) -> RoundOutcome:
        from pytest_pto.outcomes import classify

        if exc is None:
            return classify(None)
        runtime = handle.runtime if handle is not None else None
        return classify(
            exc,
            runtime.adapter if runtime is not None else None,
            hook=item.config.hook.pytest_pto_classify,
            runtime=runtime.name if runtime is not None else "libpto",
            nodeid=item.nodeid,
            rank_devices=handle.rank_devices if handle is not None else None,
            logs=handle.logs if handle is not None else None,
        )

    @staticmethod
    def _rewrite_failure(
        report: pytest.TestReport, outcome: RoundOutcome, exc: BaseException | None
    ) -> None:
        """Make the failure message start with the outcome class (and name the rank)."""
        longrepr = report.longrepr
        crash = getattr(longrepr, "reprcrash", None)
        headline = outcome.headline()
        if outcome.outcome == "failed" and outcome.rank is None and crash is not None:
            headline = f"failed: {crash.message}"  # keep pytest's assertion text as it is
        detail = _detail_text(outcome, exc)
        if crash is not None and hasattr(longrepr, "addsection"):
            crash.message = headline
            longrepr.addsection("pto round", detail)  # type: ignore[union-attr]
        else:
            report.longrepr = f"{headline}\n\n{detail}\n\n{longrepr}"

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        if report.when not in ("setup", "call") or not report.failed:
            return None
        outcome = dict(report.user_properties).get("pto.outcome")
        if outcome is None or outcome == "failed":
            return None
        if report.when == "setup":
            return "error", "E", (f"ERROR {outcome}", {"red": True})
        return "failed", "F", (f"FAILED {outcome}", {"red": True})

    # -- reporting (controller side) -----------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker or not isinstance(report, pytest.TestReport):
            return  # e.g. a CollectReport another plugin passes through this hook (#2971)
        if not any(prop[0] == "pto.outcome" for prop in report.user_properties or ()):
            return  # not a round: nothing to count, and nothing more to import
        from pytest_pto._summary import tally_text

        added = self.summary.add(report)
        if added is None:
            return
        props = dict(report.user_properties)
        if props.get("pto.first_outcome"):
            first, second = props.get("pto.first_devices"), props.get("pto.devices")
            self.retried.append(
                f"{report.nodeid}: first attempt {props['pto.first_outcome']}"
                + (f" on devices {first}" if first else "")
                + f", retry {props.get('pto.outcome')}"
                + (f" on devices {second}" if second else "")
            )
        record, tally, rounds = added
        total = sum(tally.values())
        decision = dict(report.user_properties).get("pto.decision")
        if decision is not None:  # --pto-rounds=auto: said once decided
            if decision != "running":
                tr = self.config.pluginmanager.get_plugin("terminalreporter")
                if tr is not None:
                    label = round_label(record.test, record.variant)
                    tr.ensure_newline()
                    if tr._tw.width_of_current_line:
                        tr._tw.line()
                    tr.write_line(
                        f"pto: {label}: auto: {decision} after {record.round} "
                        f"rounds: {tally_text(tally)}"
                    )
        elif rounds > 1 and total == rounds:
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                label = round_label(record.test, record.variant)
                tr.ensure_newline()
                if tr._tw.width_of_current_line:  # -q, xdist: after the dots, not glued to them
                    tr._tw.line()
                tr.write_line(f"pto: {label}: {total} rounds: {tally_text(tally)}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.has_records:
            return
        terminalreporter.write_sep("=", "pto rounds")
        settings = self._quiet_settings()
        if not self._header_shown and settings is not None:
            for line in self._header_lines(settings):
                terminalreporter.write_line(line)
        for line in self.summary.render().rstrip("\n").splitlines():
            terminalreporter.write_line(line)
        for line in self.retried:
            terminalreporter.write_line(f"pto: retried (infra): {line}")
        for q in self.quarantines:
            terminalreporter.write_line(f"pto: {q.describe()}")
        self._github(terminalreporter)

    def _github(self, terminalreporter: Any) -> None:
        from pytest_pto.report import (
            append_step_summary,
            failure_annotations,
            in_github_actions,
            render_markdown,
            summarize,
        )

        if not in_github_actions():
            return
        for line in failure_annotations(self.summary.records)[:50]:
            terminalreporter.write_line(line)
        try:
            append_step_summary(render_markdown(summarize(self.summary.records), title="pto"))
        except OSError as exc:  # the runs are over and reported: say it, do not crash
            terminalreporter.write_line(
                f"pytest-pto: GITHUB_STEP_SUMMARY: cannot append the table: {exc}"
            )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not (self.used or self.has_records):
            return  # no distributed test: no trace file either
        settings = self._quiet_settings()
        if settings is None or settings.trace is None:
            return
        from pytest_pto.report import TraceWriter

        path: Path = settings.trace
        try:
            with TraceWriter(path) as writer:
                for record, events in self.summary.events:
                    writer.add_record(record, events)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"pytest-pto: --pto-trace {path}: not written: {exc}\n")
