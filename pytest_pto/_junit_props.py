"""The JUnit properties of one round: the writer (the names and the reader are
:mod:`pytest_pto._vocabulary`'s, docs/design.md section 4.4).

They are attached as ``item.user_properties`` (what ``record_property`` does), so pytest's own
``--junitxml`` writes them, and under xdist they travel with the reports to the controller,
which alone writes the file.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_pto._rounds import RoundPlan
from pytest_pto._vocabulary import PROPERTY_NAMES
from pytest_pto.outcomes import RoundOutcome

__all__ = ["round_properties"]


def _ms(value: float) -> str:
    return f"{value:.3f}"


def round_properties(
    plan: RoundPlan,
    outcome: RoundOutcome,
    *,
    devices: Sequence[int] | None = None,
    init_skew_ms: float | None = None,
    init_skew_partial: bool = False,
    lock_wait_ms: float | None = None,
    host: str | None = None,
    rank_hosts: Sequence[str] = (),
    verdict: str | None = None,
    attempt: int | None = None,
    first_outcome: str | None = None,
    first_devices: Sequence[int] = (),
    decision: str | None = None,
) -> list[tuple[str, str]]:
    """Properties in :data:`PROPERTY_NAMES` order; optional ones only where they apply."""
    props = [
        ("pto.outcome", outcome.outcome),
        ("pto.round", str(plan.round)),
        ("pto.rounds", str(plan.rounds)),
        ("pto.ranks", str(plan.ranks)),
    ]
    if devices:
        props.append(("pto.devices", ",".join(str(d) for d in devices)))
    if plan.variant is not None:
        props.append(("pto.variant", plan.variant))
    if outcome.rank is not None:
        props.append(("pto.failed_rank", str(outcome.rank)))
    if outcome.error_code is not None:
        props.append(("pto.error_code", str(outcome.error_code)))
    if outcome.error_name:
        props.append(("pto.error_name", outcome.error_name))
    if outcome.latched_by:
        props.append(("pto.latched_by", outcome.latched_by))
    if outcome.also_latched:
        props.append(("pto.also_latched", outcome.also_latched))
    if init_skew_ms is not None:
        props.append(("pto.init_skew_ms", _ms(init_skew_ms)))
        if init_skew_partial:  # a lower bound: some rank had not ended init at teardown
            props.append(("pto.init_skew_partial", "true"))
    if lock_wait_ms is not None:
        props.append(("pto.lock_wait_ms", _ms(lock_wait_ms)))
    if host:
        props.append(("pto.host", host))
    if rank_hosts:  # --pto-launcher=mpirun: the host of each rank, in rank order
        props.append(("pto.hosts", ",".join(rank_hosts)))
    if verdict:
        props.append(("pto.verdict", verdict))
    if attempt is not None:  # the plugin always says which attempt (1, or 2 for a retry)
        props.append(("pto.attempt", str(attempt)))
    if first_outcome is not None:  # a retried round: what its first attempt was
        props.append(("pto.first_outcome", first_outcome))
        if first_devices:
            props.append(("pto.first_devices", ",".join(str(d) for d in first_devices)))
    # the seed the round really ran with (a variant's or marker's env may pin its own): rounds
    # of two variants with the same round index and seed are paired
    props.append(("pto.seed", str(plan.env.get("PTO_SIM_MALLOC_SEED", plan.seed))))
    if decision is not None:  # --pto-rounds=auto: the running state after this round
        props.append(("pto.decision", decision))
        if decision != "running":
            props.append(("pto.decision_rounds", str(plan.round)))
        props.append(("pto.target_fail_rate", f"{plan.target_fail_rate:g}"))
    # the order is the vocabulary's; a name missing there fails here, in every test
    return sorted(props, key=lambda kv: PROPERTY_NAMES.index(kv[0]))
