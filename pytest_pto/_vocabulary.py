"""The one vocabulary of rounds: outcome classes, JUnit property names, test ids, round records.

Every part of pytest-pto that writes or reads a round speaks it: classification
(:mod:`pytest_pto.outcomes`), the JUnit writer (:mod:`pytest_pto._junit_props`,
:mod:`pytest_pto._junit_xml`), the terminal summary (:mod:`pytest_pto._summary`) and the report
wing (:mod:`pytest_pto.report`: ``pto-report``, the JUnit reader, the trace, GitHub output). It
lives in one leaf module, importing nothing of the plugin or the renderer, so a new outcome
family, property or id part is added in one place and cannot be read one way and written
another (docs/design.md sections 3, 4.3 and 4.4).

- **Outcome classes**: ``name`` or ``name=value``; ``name`` is ``[a-z][a-z0-9_]*`` and
  ``value`` is ``[A-Za-z0-9_.-]+``, so a negative code (``device_error_code=-1``) is a class
  too. The fixed classes (``passed``, ``hang``, ``sched_error_code=100``, ...) are instances of
  it, and so are those a runtime adapter invents (``device_error_code=507018``,
  ``hccl_error=EI0006``). :func:`outcome_sort_key` is the one column order.
- **JUnit properties**: :data:`PROPERTY_NAMES` in the order the plugin writes them, and
  :func:`round_record`, the one function that turns a round's properties back into a
  :class:`RoundRecord` (live reports and JUnit files alike).
- **Test ids**: ``<name>[<params>-ranks-<N>-<variant>-round-<K>]``, each part only where it
  applies: :func:`parse_test_id` and :func:`format_test_id`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "AUTO_ROUND_ID",
    "FIXED_OUTCOMES",
    "INFRA_OUTCOMES",
    "OUTCOMES",
    "OUTCOME_RULE",
    "PROPERTY_NAMES",
    "PROPS_HEADER",
    "PROP_PREFIX",
    "PropertyError",
    "RoundRecord",
    "TestId",
    "format_test_id",
    "int_value",
    "is_infra",
    "outcome_parts",
    "outcome_sort_key",
    "parse_outcome",
    "parse_props_block",
    "parse_test_id",
    "properties_dict",
    "ranks_id",
    "round_id",
    "round_label",
    "round_record",
    "strip_round_id",
    "strip_variant_id",
]

# --- outcome classes -------------------------------------------------------------------------

_OUTCOME = re.compile(r"(?P<name>[a-z][a-z0-9_]*)(?:=(?P<value>[A-Za-z0-9_.-]+))?")
_INT = re.compile(r"-?[0-9]+")
OUTCOME_RULE = "name or name=value, name [a-z][a-z0-9_]*, value [A-Za-z0-9_.-]+"

PASSED = "passed"
FAILED = "failed"
STREAM_SYNC_TIMEOUT = "stream_sync_timeout"
INIT_FAILED = "init_failed"
INIT_TIMEOUT = "init_timeout"
RANK_CRASHED = "rank_crashed"
HANG = "hang"
DEVICE_UNAVAILABLE = "device_unavailable"
#: The fixed classes of docs/design.md section 4.3 (the plugin's own; no code families).
FIXED_OUTCOMES = (
    PASSED,
    FAILED,
    STREAM_SYNC_TIMEOUT,
    INIT_FAILED,
    INIT_TIMEOUT,
    RANK_CRASHED,
    HANG,
    DEVICE_UNAVAILABLE,
)
#: Table-column order: the fixed classes with the two error-code families (one class per
#: code N) where they belong; every other class (an adapter's) sorts after these.
OUTCOMES = (PASSED, FAILED, "sched_error_code=N", "orch_error_code=N", *FIXED_OUTCOMES[2:])
#: Outcomes of the test infrastructure, not of the product: outside the pass rate (files
#: without ``pto.verdict``; with it, the verdict decides).
INFRA_OUTCOMES = frozenset({DEVICE_UNAVAILABLE})


def outcome_parts(text: str) -> tuple[str, str | None] | None:
    """``(name, value or None)``, or None when ``text`` is not an outcome class."""
    m = _OUTCOME.fullmatch(text) if isinstance(text, str) else None
    return (m.group("name"), m.group("value")) if m else None


def int_value(text: str) -> int | None:
    """The integer value of a ``name=N`` class (``device_error_code=-1`` -> -1)."""
    parsed = outcome_parts(text)
    if parsed is None or parsed[1] is None or not _INT.fullmatch(parsed[1]):
        return None
    return int(parsed[1])


def parse_outcome(raw: str) -> str:
    """A ``pto.outcome`` value as read back (JUnit file or live report) -> its outcome class.

    Classes are kept verbatim, so a new family needs no reader change. Raises ValueError for
    an empty value or one outside the grammar.
    """
    outcome = raw.strip()
    if not outcome:
        raise ValueError("is empty")
    if outcome_parts(outcome) is None:
        raise ValueError(f"{outcome!r} is not an outcome class ({OUTCOME_RULE})")
    return outcome


def is_infra(outcome: str) -> bool:
    """An infrastructure outcome (no verdict on the product), e.g. ``device_unavailable``."""
    return outcome in INFRA_OUTCOMES


def outcome_sort_key(outcome: str) -> tuple[int, str, int, str]:
    """Column order: :data:`OUTCOMES` (error-code families by code, negative codes first),
    then the classes of runtime adapters (by name, then value), anything else last."""
    parsed = outcome_parts(outcome)
    name, value = parsed if parsed is not None else ("~", None)
    number = int_value(outcome) or 0
    if value is not None and f"{name}=N" in OUTCOMES:
        return (OUTCOMES.index(f"{name}=N"), "", number, outcome)
    if outcome in OUTCOMES:
        return (OUTCOMES.index(outcome), "", 0, outcome)
    return (len(OUTCOMES), name, number, outcome)


# --- JUnit properties ------------------------------------------------------------------------

PROP_PREFIX = "pto."
#: The per-round properties of docs/design.md section 4.4, in the order the plugin writes them.
PROPERTY_NAMES = (
    "pto.outcome",
    "pto.round",
    "pto.rounds",
    "pto.ranks",
    "pto.devices",
    "pto.variant",
    "pto.failed_rank",
    "pto.error_code",
    "pto.error_name",
    "pto.latched_by",
    "pto.also_latched",
    "pto.init_skew_ms",
    "pto.init_skew_partial",
    "pto.lock_wait_ms",
    "pto.host",
    "pto.hosts",  # --pto-launcher=mpirun: the host of each rank, in rank order
    "pto.verdict",
    "pto.attempt",
    "pto.first_outcome",
    "pto.first_devices",
    "pto.seed",
    "pto.decision",
    "pto.decision_rounds",
    "pto.target_fail_rate",
)
#: Read, never written by the plugin: the test id without variant and round parts, for tools
#: that write their own files (it wins over the testcase's name).
TEST_PROPERTY = "pto.test"
VERDICTS = ("product", "infra")
#: First line of a ``--pto-junit-strict`` testcase ``<system-out>`` carrying its properties.
PROPS_HEADER = "[pytest-pto properties]"


def properties_dict(user_properties: Sequence[tuple[str, object]]) -> dict[str, str]:
    """The ``pto.*`` entries of a report's ``user_properties`` (last one wins)."""
    return {str(k): str(v) for k, v in user_properties if str(k).startswith(PROP_PREFIX)}


def parse_props_block(text: str | None) -> dict[str, str] | None:
    """``name=value`` lines of a strict-mode properties block; None if ``text`` is not one."""
    if not text:
        return None
    lines = text.strip("\n").splitlines()
    if not lines or lines[0].strip() != PROPS_HEADER:
        return None
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition("=")
        if sep and name.strip():
            out[name.strip()] = value
    return out


# --- test ids --------------------------------------------------------------------------------

AUTO_ROUND_ID = "round-auto"  # the one item of a test under --pto-rounds=auto
_ROUND_TOKEN = re.compile(r"(?:^|-)round-(\d+)(?=-|$)")


def round_id(k: int) -> str:
    """The id part of round ``k``: ``round-3``."""
    return f"round-{k}"


def ranks_id(n: int) -> str:
    """The id part of a ``ranks=[...]`` marker's rank count: ``ranks-4``."""
    return f"ranks-{n}"


@dataclass(frozen=True)
class TestId:
    """A distributed test's node id taken apart: ``base`` (without variant and round parts:
    the row key of every table), the variant (as given to the parser) and the round."""

    __test__ = False  # not a pytest test class

    base: str
    variant: str | None
    round: int | None

    def format(self) -> str:
        return format_test_id(self.base, self.variant, self.round)


def _split_params(name: str) -> tuple[str, str] | None:
    """``'f::t[a-b]'`` -> ``('f::t', 'a-b')``; None when ``name`` has no ``[...]`` suffix."""
    idx = name.find("[")
    if idx < 0 or not name.endswith("]"):
        return None
    return name[:idx], name[idx + 1 : -1]


def _join_params(head: str, params: str) -> str:
    return f"{head}[{params}]" if params else head


def _cut(params: str, m: re.Match[str]) -> str:
    rest = params[: m.start()] + params[m.end() :]
    return rest[1:] if m.start() == 0 and rest.startswith("-") else rest


def strip_round_id(name: str) -> tuple[str, int | None]:
    """Remove the ``round-K`` token from a test id's ``[...]`` part.

    ``test_allreduce[2-before-fixes-round-3]`` -> ``('test_allreduce[2-before-fixes]', 3)``;
    ``test_x[round-1]`` -> ``('test_x', 1)``; an id without the token comes back unchanged
    with round None. The last ``round-K`` token wins if a parameter happens to contain one.
    """
    parts = _split_params(name)
    if parts is None:
        return name, None
    head, params = parts
    matches = list(_ROUND_TOKEN.finditer(params))
    if not matches:
        return name, None
    return _join_params(head, _cut(params, matches[-1])), int(matches[-1].group(1))


def strip_variant_id(name: str, variant: str | None) -> str:
    """Remove a known variant token (``-``-delimited, may itself contain ``-``) from ``[...]``.

    ``test_allreduce[2-before-fixes]`` with ``before-fixes`` -> ``test_allreduce[2]``. The
    last whole-token occurrence is removed; an id without it is returned unchanged.
    """
    if not variant:
        return name
    parts = _split_params(name)
    if parts is None:
        return name
    head, params = parts
    token = re.compile(r"(?:^|-)" + re.escape(variant) + r"(?=-|$)")
    matches = list(token.finditer(params))
    if not matches:
        return name
    return _join_params(head, _cut(params, matches[-1]))


@functools.lru_cache(maxsize=65536)
def parse_test_id(nodeid: str, variant: str | None = None) -> TestId:
    """Take ``nodeid`` apart; ``variant`` is the round's ``pto.variant`` (a variant name may
    contain ``-``, so it cannot be found without being named). Cached: the ids of a history
    of runs repeat in every file."""
    base, rnd = strip_round_id(nodeid)
    return TestId(strip_variant_id(base, variant), variant or None, rnd)


def format_test_id(base: str, variant: str | None = None, round: int | None = None) -> str:
    """The inverse of :func:`parse_test_id`: the variant and round parts appended to
    ``base``'s ``[...]`` in the order pytest-pto parametrizes them."""
    head, params = _split_params(base) or (base, "")
    parts = [p for p in (params, variant or "", round_id(round) if round is not None else "") if p]
    return _join_params(head, "-".join(parts))


def round_label(test: str, variant: str | None, round: int | None = None) -> str:
    """How reports name a row or a round: ``test [variant] round K``."""
    label = test + (f" [{variant}]" if variant else "")
    return label + (f" round {round}" if round is not None else "")


# --- round records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundRecord:
    """One executed round of one test: the unit every table counts.

    ``test`` is the test id without the variant and ``round-K`` id parts (e.g.
    ``tests/test_x.py::test_allreduce[2]``); ``file``/``line`` (1-based) locate the test for
    CI annotations when known.
    """

    test: str
    variant: str | None
    round: int
    outcome: str
    ranks: int | None = None
    rank: int | None = None  # the failed rank, when one is named
    error_code: int | None = None
    init_skew_ms: float | None = None
    duration_s: float | None = None
    message: str = ""
    file: str | None = None
    line: int | None = None
    init_skew_partial: bool = False  # init_skew_ms is a lower bound
    verdict: str | None = None  # pto.verdict: "product" or "infra" (None: not recorded)
    seed: str | None = None  # pto.seed: the round's PTO_SIM_MALLOC_SEED (pairs variants)
    decision: str | None = None  # pto.decision (--pto-rounds=auto): state after this round
    target_fail_rate: float | None = None  # pto.target_fail_rate of an auto round
    rounds: int | None = None  # pto.rounds: the rounds the session ran per test
    devices: tuple[int, ...] = ()  # pto.devices: the device of each rank (index = rank)
    host: str | None = None  # pto.host
    text: str = ""  # a failing round's failure text (bounded by the JUnit reader)
    log: str = ""  # a failing round's captured-output tail (bounded by the JUnit reader)

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    @property
    def infra(self) -> bool:
        """The round failed because of the infrastructure: its ``pto.verdict`` says so, or
        (files without the property) its outcome is an infrastructure class."""
        if self.verdict is not None:
            return self.verdict == "infra" and not self.passed
        return is_infra(self.outcome)


class PropertyError(ValueError):
    """A ``pto.*`` property whose value breaks its rule; the message names it and the rule."""


class _Props:
    """Typed reads of one round's properties; ``strict`` raises, otherwise a bad value is
    taken as absent (the live summary, where a conftest may add a ``pto.*`` property)."""

    def __init__(self, props: Mapping[str, str], strict: bool) -> None:
        self.props, self.strict = props, strict

    def text(self, name: str) -> str | None:
        return (self.props.get(name) or "").strip() or None

    def _typed(self, name: str, convert: Callable[[str], object], rule: str) -> object | None:
        raw = self.props.get(name)
        if raw is None or raw.strip() in ("", "None"):
            return None
        try:
            return convert(raw)
        except ValueError:
            if self.strict:
                raise PropertyError(f"property {name}={raw!r}: must be {rule}") from None
            return None

    def integer(self, name: str) -> int | None:
        value = self._typed(name, int, "an integer")
        return value if isinstance(value, int) else None

    def number(self, name: str) -> float | None:
        value = self._typed(name, float, "a number")
        return None if not isinstance(value, float) or math.isnan(value) else value

    def devices(self) -> tuple[int, ...]:
        """``pto.devices`` (``0,1``): the device of each rank; a bad list reads as unknown
        (the devices only place failures on the HTML report's device charts)."""
        raw = self.text("pto.devices")
        if raw is None:
            return ()
        try:
            return tuple(int(d) for d in raw.split(",") if d.strip())
        except ValueError:
            return ()

    def flag(self, name: str) -> bool:
        return (self.text(name) or "").lower() in ("true", "1", "yes")

    def verdict(self) -> str | None:
        raw = self.text("pto.verdict")
        if raw is not None and raw not in VERDICTS:
            if self.strict:
                raise PropertyError(f"property pto.verdict={raw!r}: must be product or infra")
            return None
        return raw


def round_record(
    props: Mapping[str, str],
    name: str,
    *,
    strict: bool = True,
    locate: Callable[[str], tuple[str, str | None]] | None = None,
    duration_s: float | None = None,
    message: str = "",
    file: str | None = None,
    line: int | None = None,
    text: str = "",
    log: str = "",
) -> RoundRecord:
    """The one reader of a round's ``pto.*`` properties: ``props`` (of the testcase or report
    named ``name``, its node id or JUnit name) -> a :class:`RoundRecord`.

    The row key ``test`` is ``pto.test`` when present, else ``name`` without its variant and
    round parts, passed through ``locate`` (the JUnit reader qualifies a bare name with its
    module file there; it returns ``(test, file)``). The round is ``pto.round``, else the id's
    ``round-K``, else 1. Raises :class:`PropertyError` for a missing or invalid
    ``pto.outcome``, and with ``strict`` for any other property that breaks its rule.
    """
    raw = props.get("pto.outcome")
    try:
        outcome = parse_outcome(raw if raw is not None else "")
    except ValueError as exc:
        raise PropertyError(f"property pto.outcome {exc}") from None
    p = _Props(props, strict)
    variant = props.get("pto.variant") or None
    tid = parse_test_id(name, variant)
    if TEST_PROPERTY in props:
        test = props[TEST_PROPERTY]
        where = test.split("::", 1)[0] if "::" in test else None
    elif locate is not None:
        test, where = locate(tid.base)
    else:
        test, where = tid.base, None
    rnd = p.integer("pto.round")
    return RoundRecord(
        test=test,
        variant=variant,
        round=rnd if rnd is not None else (tid.round if tid.round is not None else 1),
        outcome=outcome,
        ranks=p.integer("pto.ranks"),
        rank=p.integer("pto.failed_rank"),
        error_code=p.integer("pto.error_code"),
        init_skew_ms=p.number("pto.init_skew_ms"),
        init_skew_partial=p.flag("pto.init_skew_partial"),
        duration_s=duration_s,
        message=message,
        file=file if file is not None else where,
        line=line,
        verdict=p.verdict(),
        seed=p.text("pto.seed"),
        decision=p.text("pto.decision"),
        target_fail_rate=p.number("pto.target_fail_rate"),
        rounds=p.integer("pto.rounds"),
        devices=p.devices(),
        host=p.text("pto.host"),
        text=text,
        log=log,
    )
