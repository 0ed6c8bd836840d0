"""Rounds, variants and the pto marker: which items a distributed test becomes, and the plan
(ranks, env, barrier, timeouts) of each.

A test is *distributed* when it carries ``@pytest.mark.pto`` or uses the ``pto_world`` fixture.
It is parametrized, after its own parametrization, by variant (when a variants file is used)
and then by round, so ids end in ``...-<variant>-round-K`` and stay stable across runs. With
``--pto-rounds=auto`` the round parameter is the single ``round-auto`` item, which runs its
rounds ``round-1``, ``round-2``, ... itself (:mod:`pytest_pto._auto_rounds`).
``ranks=[2, 4]`` in the marker adds a ``ranks-N`` parameter before those.

Per-item precedence: session settings < variant < marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libpto._checks import EnvError, env_mapping, seconds_problem
from pytest_pto._settings import Settings
from pytest_pto._variants import Variant
from pytest_pto._vocabulary import AUTO_ROUND_ID, parse_test_id, ranks_id, round_id

__all__ = [
    "AUTO_ROUND",
    "MARKER_KEYS",
    "RANKS_PARAM",
    "ROUND_PARAM",
    "VARIANT_PARAM",
    "MarkerSpec",
    "RoundPlan",
    "derive_seed",
    "is_distributed",
    "marker_spec",
    "parametrize",
    "plan_for",
]

ROUND_PARAM = "_pto_round"
AUTO_ROUND = "auto"  # the round parameter of the one --pto-rounds=auto item of a test
VARIANT_PARAM = "_pto_variant"
RANKS_PARAM = "_pto_ranks"
MARKER_KEYS = {
    "ranks": "int >= 1, or a list of them (parametrizes the test as ranks-N)",
    "env": "mapping NAME -> value for every chip worker",
    "rank_env": "mapping rank -> {NAME: value}",
    "init_timeout": "seconds > 0 (at most 1e6)",
    "round_timeout": "seconds > 0 (at most 1e6)",
    "runtime": "runtime name, as --pto-runtime (libpto, torch, an entry point, module:attribute)",
    "devices_per_rank": "int >= 1: devices each rank drives (chip.device_ids)",
    "ranks_per_host": "int >= 1: with --pto-launcher=mpirun, ranks [iK, (i+1)K) run on host i",
}


class MarkerError(ValueError):
    """Bad ``@pytest.mark.pto`` arguments; the message names the test and the rule."""


@dataclass(frozen=True)
class MarkerSpec:
    ranks: tuple[int, ...] | None = None
    ranks_list: bool = False  # ranks given as a list: parametrize
    env: Mapping[str, str] = field(default_factory=dict)
    rank_env: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    init_timeout: float | None = None
    round_timeout: float | None = None
    runtime: str | None = None
    devices_per_rank: int | None = None
    ranks_per_host: int | None = None


def _env(where: str, value: Any) -> dict[str, str]:
    try:
        return env_mapping(value, numbers=True)  # the rules every env source shares
    except EnvError as exc:
        raise MarkerError(exc.text(where)) from None


def _seconds(where: str, value: Any) -> float:
    problem = seconds_problem(value)  # inf or 1e308 would overflow the watchdog's timer
    if problem is not None:
        raise MarkerError(f"{where} {problem}, got {value!r}")
    return float(value)


def marker_spec(node: pytest.Item | Any) -> MarkerSpec | None:
    """Merge every ``pto`` marker of ``node`` (closest wins per key, env merged per key)."""
    markers = list(node.iter_markers("pto"))
    if not markers:
        return None
    name = getattr(node, "nodeid", "") or getattr(node, "name", "?")
    merged: dict[str, Any] = {}
    env: dict[str, str] = {}
    rank_env: dict[int, dict[str, str]] = {}
    for mark in reversed(markers):  # farthest first, so closer markers override
        where = f"{name}: @pytest.mark.pto"
        if mark.args:
            raise MarkerError(f"{where} takes keyword arguments only ({', '.join(MARKER_KEYS)})")
        unknown = [k for k in mark.kwargs if k not in MARKER_KEYS]
        if unknown:
            raise MarkerError(
                f"{where}: unknown argument {unknown[0]!r}; allowed: {', '.join(MARKER_KEYS)}"
            )
        for key, value in mark.kwargs.items():
            if key == "env":
                env.update(_env(f"{where}(env=...)", value))
            elif key == "rank_env":
                if not isinstance(value, Mapping):
                    raise MarkerError(f"{where}(rank_env=...) must be a mapping rank -> env")
                for rank, renv in value.items():
                    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
                        raise MarkerError(f"{where}(rank_env=...): {rank!r} is not a rank")
                    rank_env.setdefault(rank, {}).update(
                        _env(f"{where}(rank_env={{{rank}: ...}})", renv)
                    )
            elif key == "ranks":
                merged["ranks"] = _ranks(f"{where}(ranks={value!r})", value)
                merged["ranks_list"] = not isinstance(value, int)
            elif key == "runtime":
                merged["runtime"] = _runtime(f"{where}(runtime={value!r})", value)
            elif key in ("devices_per_rank", "ranks_per_host"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise MarkerError(f"{where}({key}={value!r}): must be an integer >= 1")
                merged[key] = value
            else:
                merged[key] = _seconds(f"{where}({key}=...)", value)
    return MarkerSpec(env=env, rank_env=rank_env, **merged)


def _runtime(where: str, value: Any) -> str:
    """The runtime name, checked now: an unknown one is this test's collection error."""
    from pytest_pto._registry import RuntimeResolveError, resolve_runtime

    if not isinstance(value, str):
        raise MarkerError(f"{where}: runtime must be a name (str)")
    try:
        return resolve_runtime(value).name
    except RuntimeResolveError as exc:
        raise MarkerError(f"{where}: {exc}") from None


def _ranks(where: str, value: Any) -> tuple[int, ...]:
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or not values:
        raise MarkerError(f"{where}: ranks must be an integer >= 1 or a non-empty list of them")
    for n in values:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise MarkerError(f"{where}: ranks must be integers >= 1")
    if len(set(values)) != len(values):
        raise MarkerError(f"{where}: a rank count appears twice")
    return tuple(values)


def _device_count(settings: Settings) -> int:
    """Devices a round may lease: this machine's, or every host's with --pto-launcher=mpirun."""
    if settings.hosts:
        return sum(len(h.devices) for h in settings.hosts)
    return len(settings.devices)


def is_distributed(fixturenames: Iterable[str], spec: MarkerSpec | None) -> bool:
    return spec is not None or "pto_world" in fixturenames


def parametrize(
    metafunc: pytest.Metafunc, settings: Settings, variants: list[Variant] | None
) -> None:
    """Turn a distributed test into (ranks x) variants x rounds items."""
    try:
        spec = marker_spec(metafunc.definition)
    except MarkerError as exc:
        raise pytest.Collector.CollectError(f"pytest-pto: {exc}") from None
    if not is_distributed(metafunc.fixturenames, spec):
        return
    where = f"{metafunc.definition.nodeid}: @pytest.mark.pto"
    ndev = _device_count(settings)
    counts: list[int] = list(spec.ranks) if spec and spec.ranks else []
    for v in variants or []:
        if v.ranks is not None:
            counts.append(v.ranks)
    if not counts:
        counts.append(settings.ranks)
    per_rank = spec.devices_per_rank if spec is not None and spec.devices_per_rank else 1
    for n in counts:
        if n * per_rank > ndev:
            need = f"ranks={n}" if per_rank == 1 else f"ranks={n} x devices_per_rank={per_rank}"
            raise pytest.Collector.CollectError(
                f"pytest-pto: {where}: {need}: more "
                f"{'ranks' if per_rank == 1 else 'devices'} than devices ({ndev}: "
                f"{','.join(map(str, settings.devices))})"
            )
    if settings.hosts:
        from libpto._hosts import HostsError, place

        per_host = spec.ranks_per_host if spec is not None else None
        for n in counts:
            try:
                place(n, settings.hosts, per_rank, per_host)
            except HostsError as exc:
                raise pytest.Collector.CollectError(
                    f"pytest-pto: {where}: ranks={n} on --pto-hosts: {exc}"
                ) from None
    _check_rank_env(where, spec, settings, variants)
    if spec is not None and spec.ranks_list and spec.ranks:
        metafunc.fixturenames.append(RANKS_PARAM)
        metafunc.parametrize(
            RANKS_PARAM, list(spec.ranks), ids=[ranks_id(n) for n in spec.ranks], indirect=True
        )
    if variants:
        metafunc.fixturenames.append(VARIANT_PARAM)
        metafunc.parametrize(
            VARIANT_PARAM, [v.name for v in variants], ids=[v.name for v in variants], indirect=True
        )
    metafunc.fixturenames.append(ROUND_PARAM)
    if settings.auto_rounds:  # one item; it runs (and reports) its rounds one by one
        metafunc.parametrize(ROUND_PARAM, [AUTO_ROUND], ids=[AUTO_ROUND_ID], indirect=True)
        return
    rounds = range(1, settings.rounds + 1)
    metafunc.parametrize(
        ROUND_PARAM, list(rounds), ids=[round_id(k) for k in rounds], indirect=True
    )


def _round_ranks(spec: MarkerSpec | None, settings: Settings, variant: Variant | None) -> list[int]:
    """The rank counts of a test's rounds under one variant (``plan_for``'s precedence)."""
    if spec is not None and spec.ranks:
        return list(spec.ranks)
    if variant is not None and variant.ranks is not None:
        return [variant.ranks]
    return [settings.ranks]


def _check_rank_env(
    where: str, spec: MarkerSpec | None, settings: Settings, variants: list[Variant] | None
) -> None:
    """A marker's ``rank_env`` must name a rank that exists in some round of the test.

    Otherwise the chip-worker layer would reject it in every round with a message about
    ``WorldConfig`` instead of the marker. (With ``ranks=[2, 4]``, ``rank_env={3: ...}`` is
    fine: it applies to the 4-rank rounds.)
    """
    if spec is None or not spec.rank_env:
        return
    options: list[Variant | None] = list(variants) if variants else [None]
    most = max(n for v in options for n in _round_ranks(spec, settings, v))
    beyond = sorted(r for r in spec.rank_env if r >= most)
    if beyond:
        raise pytest.Collector.CollectError(
            f"pytest-pto: {where}(rank_env=...): rank {beyond[0]} does not exist: this test "
            f"runs at most {most} ranks (ranks are 0..{most - 1})"
        )


def derive_seed(base: int, round_no: int) -> int:
    """PTO_SIM_MALLOC_SEED of round K: deterministic, different per round, and the same for
    every variant and test (it depends on the round index only, never on the variant), so
    variants are compared on the same init-latency draws: their rounds are *paired*, and
    ``pto-report`` compares them with McNemar's test (``pto.seed`` per round)."""
    return (base * 1_000_003 + round_no * 7919) % (2**31 - 1)


@dataclass(frozen=True)
class RoundPlan:
    """Everything one round needs to know before it leases devices."""

    nodeid: str
    base_id: str  # the node id without variant and round parts (the vocabulary's test id)
    round: int
    rounds: int
    variant: str | None
    ranks: int
    env: Mapping[str, str]
    rank_env: Mapping[int, Mapping[str, str]]
    init_barrier: bool
    latch_policy: str
    init_timeout: float
    round_timeout: float | None
    seed: int
    log_dir: Path | None
    platform: str
    runtime: str = "libpto"
    devices_per_rank: int = 1
    ranks_per_host: int | None = None  # marker: --pto-launcher=mpirun placement
    auto: bool = False  # --pto-rounds=auto: rounds until a sequential decision
    target_fail_rate: float = 0.05
    target_outcome: str = "any"


def plan_for(item: pytest.Item, settings: Settings, variants: Mapping[str, Variant]) -> RoundPlan:
    params: dict[str, Any] = dict(getattr(getattr(item, "callspec", None), "params", {}) or {})
    raw_round = params.get(ROUND_PARAM, 1)
    round_no = 1 if raw_round == AUTO_ROUND else int(raw_round)
    variant = variants.get(params[VARIANT_PARAM]) if VARIANT_PARAM in params else None
    spec = marker_spec(item)
    ranks = settings.ranks
    if variant is not None and variant.ranks is not None:
        ranks = variant.ranks
    if spec is not None and spec.ranks:
        ranks = spec.ranks[0]
    if RANKS_PARAM in params:
        ranks = int(params[RANKS_PARAM])
    per_rank = spec.devices_per_rank if spec is not None and spec.devices_per_rank else 1
    if ranks * per_rank > _device_count(settings):  # only a marker added after collection
        raise MarkerError(
            f"{item.nodeid}: @pytest.mark.pto: ranks={ranks}"
            + (f" x devices_per_rank={per_rank}" if per_rank > 1 else "")
            + f": more {'ranks' if per_rank == 1 else 'devices'} than devices "
            f"({_device_count(settings)})"
        )
    env: dict[str, str] = dict(settings.env)
    rank_env: dict[int, dict[str, str]] = {}
    init_barrier = settings.init_barrier
    latch = settings.latch_policy
    if variant is not None:
        env.update(variant.env)
        for r, e in variant.rank_env.items():
            rank_env.setdefault(r, {}).update(e)
        if variant.init_barrier is not None:
            init_barrier = variant.init_barrier
        if variant.latch_policy is not None:
            latch = variant.latch_policy
    init_timeout = settings.init_timeout
    round_timeout = settings.round_timeout
    if spec is not None:
        env.update(spec.env)
        for r, e in spec.rank_env.items():
            rank_env.setdefault(r, {}).update(e)
        init_timeout = spec.init_timeout or init_timeout
        round_timeout = spec.round_timeout or round_timeout
    # rank_env entries for ranks this round does not have belong to the test's (or a shared
    # variant's) larger rank counts; collection rejected those that fit no round at all
    rank_env = {r: e for r, e in rank_env.items() if r < ranks}
    seed = derive_seed(settings.seed, round_no)
    # explicit env wins; these two are filled in only when nobody set them
    env.setdefault("PTO_LATCH_POLICY", latch)
    env.setdefault("PTO_SIM_MALLOC_SEED", str(seed))
    vname = variant.name if variant is not None else None
    return RoundPlan(
        nodeid=item.nodeid,
        base_id=parse_test_id(item.nodeid, vname).base,
        round=round_no,
        rounds=settings.rounds,
        variant=vname,
        ranks=ranks,
        env=env,
        rank_env=rank_env,
        init_barrier=init_barrier,
        latch_policy=env["PTO_LATCH_POLICY"],
        init_timeout=init_timeout,
        round_timeout=round_timeout,
        seed=seed,
        log_dir=settings.log_dir,
        platform=settings.platform,
        runtime=(
            spec.runtime
            if spec is not None and spec.runtime
            else (variant.runtime if variant is not None and variant.runtime else settings.runtime)
        ),
        devices_per_rank=per_rank,
        ranks_per_host=spec.ranks_per_host if spec is not None else None,
        auto=settings.auto_rounds,
        target_fail_rate=settings.target_fail_rate,
        target_outcome=settings.target_outcome,
    )
