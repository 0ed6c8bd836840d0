"""Fixtures of the adapter and platform tests: the plugin tests' isolated inner session."""

from __future__ import annotations

from tests.plugin.conftest import junit_cases, ptester

__all__ = ["junit_cases", "ptester"]
