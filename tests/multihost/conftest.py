"""Fixtures of the multi-host tests: two namespace hosts (see nshosts.py) for the session.

Skipped without root/``ip``/``unshare``/``nsenter``/mpirun, except in CI (``CI=true``), where a
skip would hide the feature, so it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from tests.multihost.nshosts import NsCluster, create, destroy, missing

__all__ = ["NsCluster", "wait_for"]


@pytest.fixture(scope="session")
def ns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsCluster]:
    """Two namespace hosts, ``nsa`` and ``nsb``, each with devices 0-1 (sim)."""
    why = missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"multi-host tests cannot run in CI: {why}")
        pytest.skip(why)
    cluster = create(tmp_path_factory.mktemp("netns"))
    try:
        yield cluster
    finally:
        destroy(cluster)


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
