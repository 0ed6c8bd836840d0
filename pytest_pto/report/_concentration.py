"""Is a failure class concentrated on one device or one host beyond chance?

For one population (the rounds of one test, variant and rank count) and one failure class C
with K rounds of class C:

- a **device** is charged with a C round when the round's failing rank ran on it
  (``pto.devices`` lists the device of each rank, ``pto.failed_rank`` names the rank). With
  no device effect, a C round lands on device d with probability ``p_d``: the share of the
  population's rounds that d took part in, each round split evenly among its devices. So
  ``k_d ~ Binomial(K_dev, p_d)`` (K_dev: the C rounds whose device is known);
- a **host** is charged with the C rounds that ran on it (``pto.host``), against the share
  of the population's rounds it ran.

The p-value is the one-sided upper binomial tail ``P(X >= k)`` (exact, the same
:func:`~pytest_pto.report._stats.binom_cdf` the Clopper-Pearson intervals use). Every device and
host of the population is one test, so a population with 16 devices and 4 hosts makes 20
tests per class: the p-values are adjusted with Holm's step-down method over all of them
(family-wise error at most ``alpha``), and only an adjusted p below ``alpha`` is reported as
concentrated. A population on a single device set (every round on the same devices) can still
point at a device through the failing rank; with a fixed rank-to-device mapping a rank that
fails more (a code path of that rank) looks like a device that fails more: read the rank
column too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_pto._vocabulary import RoundRecord
from pytest_pto.report._stats import binom_cdf

__all__ = ["Concentration", "concentrations", "holm"]

PopKey = tuple[str, "str | None", "int | None"]


@dataclass(frozen=True)
class Concentration:
    """One (population, class, device or host) test. ``share`` is the expected share of
    the class's rounds under "no device/host effect", ``p_value`` the upper binomial tail,
    ``p_adjusted`` Holm's adjustment over ``tests`` tests."""

    test: str
    variant: str | None
    ranks: int | None
    outcome: str
    kind: str  # "device" or "host"
    unit: str
    failures: int
    total: int
    share: float
    p_value: float
    p_adjusted: float
    tests: int
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_adjusted < self.alpha

    def text(self) -> str:
        variant = f" [{self.variant}]" if self.variant else ""
        return (
            f"{self.outcome} concentrated on {self.kind} {self.unit}: {self.failures} of "
            f"{self.total} rounds of {self.test}{variant}, {100 * self.share:.1f} % expected "
            f"by its share of the rounds; p = {self.p_value:.2g}, Holm-adjusted over "
            f"{self.tests} devices and hosts: {self.p_adjusted:.2g}"
        )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def _upper_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``."""
    if k <= 0:
        return 1.0
    return max(0.0, 1.0 - binom_cdf(k - 1, n, p))


@dataclass
class _Pop:
    device_share: dict[int, float]
    host_rounds: dict[str, int]
    rounds_with_devices: int = 0
    rounds_with_host: int = 0


def concentrations(records: Iterable[RoundRecord], alpha: float = 0.05) -> list[Concentration]:
    """Every test made (significant or not), most significant first."""
    pops: dict[PopKey, _Pop] = {}
    # (population, class) -> device -> rounds, host -> rounds
    by_device: dict[tuple[PopKey, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    by_host: dict[tuple[PopKey, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rec in records:
        key: PopKey = (rec.test, rec.variant, rec.ranks)
        pop = pops.get(key)
        if pop is None:
            pop = pops[key] = _Pop(defaultdict(float), defaultdict(int))
        if rec.devices:
            pop.rounds_with_devices += 1
            each = 1.0 / len(rec.devices)
            for d in rec.devices:
                pop.device_share[d] += each
        if rec.host:
            pop.rounds_with_host += 1
            pop.host_rounds[rec.host] += 1
        if rec.passed:
            continue
        if rec.devices and rec.rank is not None and 0 <= rec.rank < len(rec.devices):
            by_device[(key, rec.outcome)][rec.devices[rec.rank]] += 1
        if rec.host:
            by_host[(key, rec.outcome)][rec.host] += 1
    out: list[Concentration] = []
    classes = sorted({c for _, c in by_device} | {c for _, c in by_host})
    for key, pop in pops.items():
        for outcome in classes:
            out += _tests(
                key,
                pop,
                outcome,
                devices=by_device.get((key, outcome)),
                hosts=by_host.get((key, outcome)),
                alpha=alpha,
            )
    out.sort(key=lambda c: (c.p_adjusted, c.p_value, c.test, c.outcome))
    return out


def _tests(
    key: PopKey,
    pop: _Pop,
    outcome: str,
    *,
    devices: dict[int, int] | None,
    hosts: dict[str, int] | None,
    alpha: float,
) -> list[Concentration]:
    raw: list[tuple[str, str, int, int, float, float]] = []
    if devices and len(pop.device_share) > 1:
        total = sum(devices.values())
        for d in sorted(pop.device_share):
            share = pop.device_share[d] / pop.rounds_with_devices
            k = devices.get(d, 0)
            raw.append(("device", str(d), k, total, share, _upper_tail(k, total, share)))
    if hosts and len(pop.host_rounds) > 1:
        total = sum(hosts.values())
        for h in sorted(pop.host_rounds):
            share = pop.host_rounds[h] / pop.rounds_with_host
            k = hosts.get(h, 0)
            raw.append(("host", h, k, total, share, _upper_tail(k, total, share)))
    adjusted = holm([r[5] for r in raw])
    test, variant, ranks = key
    return [
        Concentration(
            test=test,
            variant=variant,
            ranks=ranks,
            outcome=outcome,
            kind=kind,
            unit=unit,
            failures=k,
            total=total,
            share=share,
            p_value=p,
            p_adjusted=adj,
            tests=len(raw),
            alpha=alpha,
        )
        for (kind, unit, k, total, share, p), adj in zip(raw, adjusted, strict=True)
    ]
