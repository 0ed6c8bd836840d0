"""A failure class concentrated on a device or host beyond chance: exact binomial tail
against the device's/host's share of the rounds, Holm's correction over all of them."""

from __future__ import annotations

import pytest

from pytest_pto.report._concentration import concentrations, holm
from tests.report._history_input import Round

scipy_stats = pytest.importorskip("scipy.stats")


def _records(tmp_path, rs):  # type: ignore[no-untyped-def]
    from pytest_pto.report._junit_read import read_junit
    from tests.report._history_input import write_run

    return read_junit(write_run(tmp_path / "run.xml", rs)).records


def test_holm_matches_the_step_down_rule() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_a_bad_device_is_found_and_a_spread_is_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rs = []
    # 6 devices in pairs (0,1) (2,3) (4,5), 20 rounds each pair; hangs only on device 3
    # (the failing rank 1 of pair (2,3)), 8 of them; one hang elsewhere
    for k in range(60):
        pair = (2 * (k % 3), 2 * (k % 3) + 1)
        host = f"node{k % 3}"
        bad = pair == (2, 3) and k < 24
        other = k == 0
        failing = bad or other
        rs.append(
            Round(
                outcome="hang" if failing else "passed",
                round=k + 1,
                devices=pair,
                failed_rank=1 if failing else None,
                host=host,
            )
        )
    found = concentrations(_records(tmp_path, rs))
    sig = [c for c in found if c.significant]
    assert [(c.kind, c.unit) for c in sig] == [("device", "3"), ("host", "node1")]
    dev = sig[0]
    assert dev.failures == 8 and dev.total == 9
    assert dev.share == pytest.approx(1 / 6)
    assert dev.tests == 6 + 3  # every device and every host is one test
    expected = scipy_stats.binom.sf(7, 9, 1 / 6)
    assert dev.p_value == pytest.approx(expected, rel=1e-9)
    assert "hang concentrated on device 3: 8 of 9 rounds" in dev.text()

    # the same hangs spread over every device: nothing stands out
    spread = [
        Round(
            outcome="hang" if k % 5 == 0 else "passed",
            round=k + 1,
            devices=(2 * (k % 3), 2 * (k % 3) + 1),
            failed_rank=(k // 5) % 2 if k % 5 == 0 else None,
            host=f"node{k % 3}",
        )
        for k in range(60)
    ]
    assert not [c for c in concentrations(_records(tmp_path, spread)) if c.significant]
