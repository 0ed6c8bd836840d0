"""Hooks that pytest-pto offers to other plugins and conftest.py files.

Registered through ``pytest_addhooks``; implement them like any pytest hook (by name, in a
conftest.py or plugin). They run in the process that runs the round (an xdist worker under
``-n``), except where noted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the real classes, for type checkers and readers; no import at run time
    from libpto import World, WorldConfig
    from pytest_pto._adapter import Classified, RankFailure
    from pytest_pto.devices import DevicePool, Lease
    from pytest_pto.outcomes import RoundOutcome

hookspec = pytest.hookspec


@hookspec(firstresult=True)
def pytest_pto_select_devices(
    config: pytest.Config, pool: DevicePool, free: frozenset[int], count: int
) -> tuple[int, ...] | None:
    """Choose ``count`` devices out of ``free`` for a round; ``()`` waits for more devices,
    None leaves the choice to the next implementation (finally the built-in default).

    Called while the pool lock is held, so keep it quick. The default prefers aligned blocks
    (0-1, 2-3, ...), then any contiguous run, then the lowest free ids. Returning devices that
    are not free (or the wrong number) is an error. Fairness towards older waiting sessions is
    applied before this hook: ``free`` holds only what this round may take now.
    """


@hookspec
def pytest_pto_lease_acquired(item: pytest.Item, lease: Lease) -> None:
    """A round now holds ``lease.devices`` (exclusively, across processes); ``lease.wait_ms``
    is how long it waited. Called before the chip workers start."""


@hookspec
def pytest_pto_lease_released(item: pytest.Item, lease: Lease) -> None:
    """A round is about to give ``lease.devices`` back (its chip workers are already gone)."""


@hookspec(firstresult=True)
def pytest_pto_world_config(item: pytest.Item, config: WorldConfig) -> WorldConfig | None:
    """Return a replacement ``libpto.WorldConfig`` for this round (e.g. with extra ``rank_env``),
    or None to keep ``config``. Use ``dataclasses.replace``; ``devices`` must stay the leased
    ones. ``config`` already carries the round's runtime adapter (``runtime``, ``cache_dir``),
    ``round_dir``, ``devices_per_rank`` and the platform's ``device_env``.

    With ``--pto-launcher=mpirun`` it is the whole world, still called here once per round:
    ``devices`` in rank order (ids repeat across hosts), ``hosts`` each rank's host,
    ``MASTER_ADDR`` rank 0's host; ``hosts`` and ``devices_per_rank`` must stay too, and the
    replacement is cut into each host's slice (``rank_env`` and the other per-rank fields
    reach the rank on its host)."""


@hookspec
def pytest_pto_round_started(item: pytest.Item, world: World) -> None:
    """Every rank of the round passed the INIT_DONE barrier (or started, with the barrier off);
    ``world`` is the ``libpto.World``."""


@hookspec
def pytest_pto_round_finished(item: pytest.Item, outcome: RoundOutcome) -> None:
    """The round ended with ``outcome`` (one docs/design.md §4 class); its chip workers may still
    be up (they are closed at teardown). Called once per round."""


@hookspec
def pytest_pto_round_properties(item: pytest.Item, properties: Sequence[tuple[str, str]]) -> None:
    """The JUnit properties of the round, just before they are attached (read-only view).
    Append your own with ``item.user_properties.append((name, value))``."""


@hookspec(firstresult=True)
def pytest_pto_classify(failure: RankFailure) -> str | Classified | None:
    """Classify a failed rank before the round's runtime adapter does: return an outcome class
    (``name`` or ``name=value``, e.g. ``device_error_code=507018``), a
    ``pytest_pto.Classified(outcome, error_name, detail)``, or None to let the adapter and then
    the built-in classes decide. ``failure`` is a ``pytest_pto.RankFailure`` (rank, phase, kind,
    exc_type, message, code, exit_status, signal, log tail, device_ids, nodeid). Called in the
    process that ran the round."""
