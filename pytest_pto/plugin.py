"""pytest entry point of pytest-pto (being built: see pytest_pto issue)."""

from __future__ import annotations
