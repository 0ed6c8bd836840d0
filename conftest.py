"""Project-wide test setup: every test of ours is checked for leaked processes and segments.

The check is a fixture (not a plugin) so it applies to this repository's tests only, never to
users of pytest_pto.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
from collections.abc import Iterator

import pytest

from tests import leaks


def pytest_configure(config: pytest.Config) -> None:
    leaks.become_subreaper()
    # A CI runner, or a background job of a non-interactive shell (`cmd &`), may start us with
    # SIGINT *ignored*; an ignored signal stays ignored across exec, so every process our tests
    # interrupt with SIGINT (Ctrl-C semantics of waits, of pytest sessions, of world owners)
    # would ignore it and those tests would fail. A caught signal is reset to the default at
    # exec, so catching it here gives our children a normal Ctrl-C.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _require_torch_in_ci()


def _require_torch_in_ci() -> None:
    """In CI the torch adapter's tests must run, never skip: a missing torch is an error.

    ci/install.sh installs the CPU build; a CI run without it would otherwise go green with
    the torch tests silently skipped.
    """
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    if importlib.util.find_spec("torch") is None:
        raise pytest.UsageError(
            "CI is set but torch is not importable: the torch adapter tests must run in CI "
            "(ci/install.sh installs the CPU build torch==2.13.0; PTO_SKIP_TORCH must not be "
            "set there)"
        )


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a child process, a ``/dev/shm/pto*`` segment or a held device
    lock behind."""
    if os.environ.get("PTO_TEST_INNER"):  # a pytester inner session: the outer test checks
        yield
        return
    before_procs = leaks.descendants()
    before_shm = leaks.shm_segments()
    before_locks = leaks.held_device_locks()
    with leaks.TreeWatch() as watch:
        yield
    # only our own tree and segments named after its pids: other sessions on this machine
    # (other CI jobs, other copies of this suite) are never judged, nor cleaned up
    procs, shm = leaks.wait_for_no_leaks(before_procs, before_shm, seen=watch.seen)
    locks = leaks.held_device_locks() - before_locks  # before the kills below release them
    for pid in procs:  # clean up so one leak does not cascade into every later test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    leaks.reap_zombies()
    for name in shm:
        leaks.remove_segment(name)
    problems = [f"leaked process {pid}: {leaks.describe(pid)}" for pid in sorted(procs)]
    problems += [f"leaked shared-memory segment /dev/shm/{name}" for name in sorted(shm)]
    problems += [f"leaked device lock {path} (still held)" for path in sorted(locks)]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
