"""``--pto-rounds=auto``: one collected item per test runs its rounds until a decision.

Why not collect ``--pto-max-rounds`` items and skip the rest: JUnit would carry a wall of
skipped testcases and every dashboard would count them. Instead the test's one ``round-auto``
item runs, inside its own ``pytest_runtest_protocol``, one round item after the other, each a
real :class:`pytest.Function` with the id ``...round-K`` (the same ids as fixed rounds, so
tables, seeds and pairing do not care how the rounds were chosen), each reported through the
ordinary setup/call/teardown reports. Only rounds that ran appear anywhere.

The decision after each round (:func:`pytest_pto.report.sequential_decision`) is made where the
round is classified (``makereport``) from the rounds of this session only, so it works the same
under xdist (the item, with all its rounds, runs in one worker). Between rounds only the round's
function-scope fixtures are torn down; module and session fixtures stay for the next round, as
they would between fixed rounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from _pytest.runner import call_and_report, show_test_item

from pytest_pto._rounds import AUTO_ROUND, ROUND_PARAM
from pytest_pto._vocabulary import AUTO_ROUND_ID, PASSED, round_id

__all__ = ["counts_as_failure", "is_auto_item", "round_item", "run_auto_rounds"]


def is_auto_item(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", None) or {}
    return params.get(ROUND_PARAM) == AUTO_ROUND


def counts_as_failure(outcome: str, target_outcome: str) -> bool:
    """Whether a product round's class counts against the target rate: every failure, or
    only ``target_outcome`` (a whole family when it is a bare name: ``sched_error_code``)."""
    if outcome == PASSED:
        return False
    if target_outcome == "any":
        return True
    return outcome == target_outcome or outcome.split("=", 1)[0] == target_outcome


def round_item(item: pytest.Item, k: int) -> pytest.Function:
    """Round ``k`` of the auto item ``item``: the same function, fixtures and marks, with the
    round parameter ``k`` and the id ``round-k`` in place of ``round-auto``."""
    assert isinstance(item, pytest.Function)
    callspec = item.callspec
    params = dict(callspec.params)
    params[ROUND_PARAM] = k
    ids = [round_id(k) if i == AUTO_ROUND_ID else i for i in callspec._idlist]
    new_spec = dataclasses.replace(callspec, params=params, _idlist=ids)
    name = f"{item.originalname}[{'-'.join(ids)}]"
    sub = pytest.Function.from_parent(
        item.parent,
        name=name,
        callspec=new_spec,
        callobj=item.obj,
        fixtureinfo=item._fixtureinfo,
        keywords=dict(item.keywords),
        originalname=item.originalname,
    )
    sub.user_properties = []
    return sub


def _one_round(
    sub: pytest.Function,
    auto_item: pytest.Item,
    nextitem: pytest.Item | None,
    done: Callable[[pytest.Item], bool],
    last: bool,
) -> bool:
    """``runtestprotocol`` for one round, except that the teardown's ``nextitem`` is chosen
    after the call: the auto item itself while rounds go on (only function fixtures go), the
    real next item once decided. Returns whether the rounds are over."""
    sub._initrequest()
    finished = True
    try:
        rep = call_and_report(sub, "setup", True)
        if rep.passed:
            setup_only = sub.config.getoption("setuponly", False)
            if sub.config.getoption("setupshow", False):
                show_test_item(sub, add_space=not setup_only)
            if not setup_only:
                call_and_report(sub, "call", True)
        stop = bool(sub.session.shouldfail or sub.session.shouldstop)
        finished = last or stop or bool(done(sub))
        after: pytest.Item | None = nextitem if finished else auto_item
        if sub.session.shouldfail or sub.session.shouldstop:
            after = None
        call_and_report(sub, "teardown", True, nextitem=after)
    finally:
        sub._request = False  # type: ignore[assignment]
        sub.funcargs = None  # type: ignore[assignment]
    return finished


def run_auto_rounds(
    item: pytest.Item, nextitem: pytest.Item | None, done: Callable[[pytest.Item], bool], cap: int
) -> None:
    """Run rounds 1, 2, ... of ``item`` until ``done(round_item)`` or ``cap`` rounds.

    While a round runs it stands in ``session.items`` in the auto item's place: an xdist worker
    checks that every report it sends belongs to the item at the index it was told to run
    (the index is what the controller schedules by; it is marked complete as usual).
    """
    items = item.session.items
    slot = next((i for i, it in enumerate(items) if it is item), None)
    try:
        for k in range(1, cap + 1):
            sub = round_item(item, k)
            if slot is not None:
                items[slot] = sub
            if k > 1:  # the terminal's progress counts reports against the collected items
                item.session.testscollected += 1
            ihook = sub.ihook
            ihook.pytest_runtest_logstart(nodeid=sub.nodeid, location=sub.location)
            finished = _one_round(sub, item, nextitem, done, last=k == cap)
            ihook.pytest_runtest_logfinish(nodeid=sub.nodeid, location=sub.location)
            if finished:
                return
    finally:
        if slot is not None:
            items[slot] = item
