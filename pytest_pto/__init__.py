"""pytest-pto: ranked, round-based distributed system tests on locked device groups."""

from __future__ import annotations

__all__: list[str] = []
