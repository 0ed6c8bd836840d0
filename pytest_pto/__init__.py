"""pytest-pto: ranked, round-based distributed system tests on locked device groups.

The plugin itself is :mod:`pytest_pto.plugin` (entry point ``pto``); this package re-exports
what tests, conftest files and other tools use directly. The names are imported from their
modules on first use (PEP 562): importing ``pytest_pto.plugin``, which every pytest session of
the environment does, imports this package first and must stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypy and readers see; at run time names load on first use
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

_WHERE: dict[str, str] = {
    "Classified": "pytest_pto._adapter",
    "RankFailure": "pytest_pto._adapter",
    "RoundInfo": "pytest_pto._adapter",
    "RuntimeAdapter": "pytest_pto._adapter",
    "TestInfo": "pytest_pto._adapter",
    "RoundPlan": "pytest_pto._rounds",
    "derive_seed": "pytest_pto._rounds",
    "LATCH_POLICIES": "pytest_pto._settings",
    "Settings": "pytest_pto._settings",
    "Variant": "pytest_pto._variants",
    "VariantError": "pytest_pto._variants",
    "load_variants": "pytest_pto._variants",
    "PROPERTY_NAMES": "pytest_pto._vocabulary",
    "PtoWorld": "pytest_pto._world_fixture",
    "DevicePool": "pytest_pto.devices",
    "DeviceUnavailable": "pytest_pto.devices",
    "Holder": "pytest_pto.devices",
    "Lease": "pytest_pto.devices",
    "choose_group": "pytest_pto.devices",
    "FIXED_OUTCOMES": "pytest_pto.outcomes",
    "RoundHang": "pytest_pto.outcomes",
    "RoundOutcome": "pytest_pto.outcomes",
    "classify": "pytest_pto.outcomes",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_pto' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
