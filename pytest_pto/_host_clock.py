"""Host clocks against the controller's: one time axis for the ranks of every host.

A rank stamps its timeline (spawn, init, barrier wait, op, teardown) with its host's
``CLOCK_REALTIME``. Hosts' clocks differ (NTP keeps them within milliseconds at best, and a
host without it can be off by seconds), so the timestamps of ranks on different hosts do not
share an axis: a cross-host init skew or a trace would mix clocks. Each host agent therefore
estimates its clock's offset to the controller's the way NTP does, over its own connection:

    agent: t0 = now; send ping -> controller: tc = now; send pong -> agent: t3 = now
    offset = (t0 + t3) / 2 - tc        (host clock minus controller clock)
    |true offset - offset| <= (t3 - t0) / 2

The second line holds whatever the two legs cost, as long as the controller read its clock
between the ping's send and the pong's receipt, so the half round trip is the estimate's
uncertainty. Of several pings the one with the smallest round trip wins (min-RTT filter: queueing
delays only ever widen the interval). The agent measures at its start and again every
:data:`REFRESH_S` seconds (clocks drift), and rebases its ranks' timestamps onto the
controller's clock (:func:`rebase_events`) before it sends them.

TEST KNOB ``PTO_TEST_CLOCK_SKEW_S`` (read by the agent): pretend this host's clock is ahead by
that many seconds, ``SECONDS`` for every host or ``host=SECONDS,host=SECONDS``. The agent's
clock readings and its ranks' stamps both get the skew, as on a host whose clock is off, so a
test can check the estimate and the rebasing on hosts that really share one kernel clock.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SKEW_ENV",
    "ClockEstimate",
    "ClockSync",
    "estimate",
    "injected_skew_ns",
    "rebase_events",
]

SKEW_ENV = "PTO_TEST_CLOCK_SKEW_S"
SAMPLES = 16  # pings of the first estimate
REFRESH_SAMPLES = 8  # pings of each later one
REFRESH_S = 30.0  # seconds between estimates
PONG_WAIT_S = 5.0  # a ping without a pong in this long is dropped
FIRST_WAIT_S = 10.0  # how long a timeline waits for the first estimate


@dataclass(frozen=True)
class ClockEstimate:
    """This host's clock minus the controller's, from the ping with the smallest round trip."""

    offset_ns: int
    uncertainty_ns: int  # half that ping's round trip: the true offset is within +-this
    rtt_ns: int
    samples: int


def estimate(samples: Iterable[tuple[int, int, int]]) -> ClockEstimate | None:
    """The min-RTT estimate of ``(t0, tc, t3)`` samples (host send, controller, host receive)."""
    best: tuple[int, int, int] | None = None
    n = 0
    for t0, tc, t3 in samples:
        n += 1
        if t3 < t0:  # the host's clock stepped back during the ping: no sample
            continue
        if best is None or t3 - t0 < best[2] - best[0]:
            best = (t0, tc, t3)
    if best is None:
        return None
    t0, tc, t3 = best
    rtt = t3 - t0
    return ClockEstimate(
        offset_ns=(t0 + t3) // 2 - tc, uncertainty_ns=(rtt + 1) // 2, rtt_ns=rtt, samples=n
    )


def injected_skew_ns(host: str, env: Mapping[str, str] | None = None) -> int:
    """The TEST KNOB's skew for ``host`` in ns (0 when unset or not naming it).

    Raises ValueError naming the knob and its rule for a malformed value."""
    raw = (os.environ if env is None else env).get(SKEW_ENV, "").strip()
    if not raw:
        return 0
    rule = f"{SKEW_ENV}={raw!r}: must be SECONDS or host=SECONDS[,host=SECONDS...]"
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) == 1 and "=" not in parts[0]:
        return _seconds_ns(parts[0], rule)
    skews = {}
    for part in parts:  # every part checked, not only this host's
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            raise ValueError(rule)
        skews[name.strip()] = _seconds_ns(value, rule)
    return skews.get(host, 0)


def _seconds_ns(text: str, rule: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(rule) from None
    if not math.isfinite(value):
        raise ValueError(rule)
    return round(value * 1e9)


def rebase_events(
    events: Iterable[Mapping[str, Any]],
    shift_ns: int,
    clock: ClockEstimate | None,
    host: str,
) -> list[dict[str, Any]]:
    """``events`` moved onto the controller's clock, ``ts_us`` less ``shift_ns``, each also
    naming its ``host`` and the estimate it was rebased with (``clock_offset_us``,
    ``clock_uncertainty_us``, µs; both None when there was none).

    ``shift_ns`` is what a raw stamp is ahead of the controller's clock: the estimated offset,
    less any injected test skew (the raw stamps are of the real clock, without it)."""
    out = []
    for event in events:
        moved = dict(event)
        moved["ts_us"] = (event["ts_us"] * 1000 - shift_ns) // 1000
        moved["host"] = host
        moved["clock_offset_us"] = clock.offset_ns / 1000 if clock else None
        moved["clock_uncertainty_us"] = clock.uncertainty_ns / 1000 if clock else None
        out.append(moved)
    return out


class ClockSync:
    """The agent's end: pings the controller over ``send`` and keeps the latest estimate.

    ``send(make)`` sends the message ``make()`` builds, calling it only once the connection is
    free (so the ping's send stamp is not delayed by another message); pongs come back through
    the agent's receive loop, which hands them to :meth:`on_pong`."""

    def __init__(
        self,
        send: Callable[[Callable[[], dict[str, Any]]], None],
        skew_ns: int = 0,
        label: str = "",
    ) -> None:
        self.send = send
        self.skew_ns = skew_ns
        self.label = label
        self._gave_up = False
        self._pongs: queue.Queue[dict[str, Any]] = queue.Queue()
        self._seq = 0
        self._current: ClockEstimate | None = None
        self._first = threading.Event()
        self.stop = threading.Event()

    def now(self) -> int:
        """This host's clock (with the injected test skew)."""
        return time.time_ns() + self.skew_ns

    def on_pong(self, msg: dict[str, Any]) -> None:
        msg["t3"] = self.now()
        self._pongs.put(msg)

    def measure(self, n: int) -> ClockEstimate | None:
        samples = []
        for _ in range(n):
            self._seq += 1
            seq = self._seq
            sent: list[int] = []

            def ping(seq: int = seq, sent: list[int] = sent) -> dict[str, Any]:
                sent.append(self.now())
                return {"op": "clock", "seq": seq}

            self.send(ping)
            deadline = time.monotonic() + PONG_WAIT_S
            while time.monotonic() < deadline and not self.stop.is_set():
                try:
                    pong = self._pongs.get(timeout=0.2)
                except queue.Empty:
                    continue
                if pong.get("seq") == seq:  # a late pong of an earlier ping is dropped
                    samples.append((sent[0], int(pong["t_ns"]), int(pong["t3"])))
                    break
        return estimate(samples)

    def run(self) -> None:
        """The agent's clock thread: the first estimate, then one every REFRESH_S."""
        n = SAMPLES
        while not self.stop.is_set():
            with contextlib.suppress(OSError):  # the controller is gone: the agent ends
                found = self.measure(n)
                if found is not None:
                    if not self._first.is_set():  # into mpirun's output (the session's log)
                        print(
                            f"{self.label}: clock offset to the controller "
                            f"{found.offset_ns / 1e6:+.3f} ms +- {found.uncertainty_ns / 1e6:.3f} "
                            f"ms (best round trip of {found.samples} pings)",
                            file=sys.stderr,
                            flush=True,
                        )
                    self._current = found
                    self._first.set()
            n = REFRESH_SAMPLES
            self.stop.wait(REFRESH_S)

    def current(self) -> ClockEstimate | None:
        """The latest estimate (waiting for the first one once, for up to FIRST_WAIT_S)."""
        if not self._gave_up and not self._first.wait(FIRST_WAIT_S):
            self._gave_up = True  # no estimate (the controller does not answer): none later
        return self._current

    def rebase(self, events: Iterable[Mapping[str, Any]], host: str) -> list[dict[str, Any]]:
        """This host's ranks' ``events`` on the controller's clock."""
        clock = self.current()
        offset = clock.offset_ns if clock is not None else 0
        return rebase_events(events, offset - self.skew_ns, clock, host)
