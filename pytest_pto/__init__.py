"""pytest-pto: ranked, round-based distributed system tests on locked device groups.

The plugin itself is :mod:`pytest_pto.plugin` (entry point ``pto``); this package re-exports
what tests, conftest files and other tools use directly.
"""

from __future__ import annotations

from pytest_pto._adapter import Classified, RankFailure, RoundInfo, RuntimeAdapter, TestInfo
from pytest_pto._rounds import RoundPlan, derive_seed
from pytest_pto._settings import LATCH_POLICIES, Settings
from pytest_pto._variants import Variant, VariantError, load_variants
from pytest_pto._vocabulary import PROPERTY_NAMES
from pytest_pto._world_fixture import PtoWorld
from pytest_pto.devices import DevicePool, DeviceUnavailable, Holder, Lease, choose_group
from pytest_pto.outcomes import FIXED_OUTCOMES, RoundHang, RoundOutcome, classify

__all__ = [
    "FIXED_OUTCOMES",
    "LATCH_POLICIES",
    "PROPERTY_NAMES",
    "Classified",
    "DevicePool",
    "DeviceUnavailable",
    "Holder",
    "Lease",
    "PtoWorld",
    "RankFailure",
    "RoundHang",
    "RoundInfo",
    "RoundOutcome",
    "RoundPlan",
    "RuntimeAdapter",
    "Settings",
    "TestInfo",
    "Variant",
    "VariantError",
    "choose_group",
    "classify",
    "derive_seed",
    "load_variants",
]
