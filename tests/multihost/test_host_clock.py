"""The clock arithmetic of pytest_pto._host_clock (no hosts needed): the min-RTT estimate and
its bound, the rebasing of a host's stamps, and the test knob's grammar. The estimate over a
real agent connection is tested in test_logs_and_clocks.py."""

from __future__ import annotations

import pytest

from pytest_pto._host_clock import SKEW_ENV, estimate, injected_skew_ns, rebase_events

S = 1_000_000_000  # ns


def test_the_smallest_round_trip_wins_and_bounds_the_offset() -> None:
    # a host 5 s ahead; pings of 40 ms, 2 ms (legs 0.5 and 1.5 ms) and 30 ms round trip
    true = 5 * S
    ctl = 100 * S
    samples = [
        (ctl - 20_000_000 + true, ctl, ctl + 20_000_000 + true),
        (ctl - 500_000 + true, ctl, ctl + 1_500_000 + true),
        (ctl - 1_000_000 + true, ctl, ctl + 29_000_000 + true),
    ]
    got = estimate(samples)
    assert got is not None
    assert got.rtt_ns == 2_000_000 and got.uncertainty_ns == 1_000_000 and got.samples == 3
    assert got.offset_ns == true + 500_000  # the asymmetric legs: off by half their difference
    assert abs(got.offset_ns - true) <= got.uncertainty_ns


def test_a_clock_step_backwards_is_no_sample() -> None:
    assert estimate([(10, 5, 9)]) is None
    assert estimate([]) is None


def test_rebasing_moves_stamps_onto_the_controllers_clock_and_names_the_estimate() -> None:
    est = estimate([(3 * S, 1 * S, 3 * S + 2000)])  # host 2 s + 1 µs ahead, +-1 µs
    assert est is not None and est.offset_ns == 2 * S + 1000
    events = [{"rank": 2, "name": "init", "ts_us": 7_000_000, "dur_us": 10}]
    # stamps of a real clock, on a host whose clock the test knob put 2 s ahead
    (moved,) = rebase_events(events, est.offset_ns - 2 * S, est, "b")
    assert moved["ts_us"] == 7_000_000 - 1  # the estimate's leftover microsecond
    assert moved["dur_us"] == 10 and moved["rank"] == 2 and moved["host"] == "b"
    assert moved["clock_offset_us"] == 2_000_001.0 and moved["clock_uncertainty_us"] == 1.0
    assert events[0]["ts_us"] == 7_000_000  # the input is not changed
    (none,) = rebase_events(events, 0, None, "b")
    assert none["ts_us"] == 7_000_000 and none["clock_offset_us"] is None


@pytest.mark.parametrize(
    ("raw", "host", "ns"),
    [
        ("", "a", 0),
        ("2.5", "a", 2_500_000_000),
        ("-1", "b", -S),
        ("a=3600, b=-0.5", "a", 3600 * S),
        ("a=3600, b=-0.5", "b", -S // 2),
        ("a=3600", "c", 0),
    ],
)
def test_the_skew_knob(raw: str, host: str, ns: int) -> None:
    assert injected_skew_ns(host, {SKEW_ENV: raw}) == ns


@pytest.mark.parametrize("raw", ["soon", "a=", "=3", "a=3,b", "nan", "a=inf"])
def test_a_bad_skew_knob_names_itself_and_the_rule(raw: str) -> None:
    with pytest.raises(ValueError, match=rf"^{SKEW_ENV}=.*: must be SECONDS or host=SECONDS"):
        injected_skew_ns("a", {SKEW_ENV: raw})
