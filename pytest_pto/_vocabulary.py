"""The one grammar of outcome class strings, shared by classification, tables and reports.

An outcome class is ``name`` or ``name=value``: ``name`` is ``[a-z][a-z0-9_]*`` and ``value``
is ``[A-Za-z0-9_.-]+``. The fixed classes of docs/design.md section 4 (``passed``, ``hang``,
``sched_error_code=100``, ...) are instances of it, and so are the classes a runtime adapter
invents (``device_error_code=507018``, ``hccl_error=EI0006``, ``collective_timeout``): one rule,
so that a class reaches the terminal table, JUnit, GitHub annotations and ``pto-report``
unchanged whoever made it.
"""

from __future__ import annotations

import re

__all__ = ["OUTCOME_RULE", "int_value", "outcome_parts"]

_OUTCOME = re.compile(r"(?P<name>[a-z][a-z0-9_]*)(?:=(?P<value>[A-Za-z0-9_.-]+))?")
_INT = re.compile(r"-?[0-9]+")
OUTCOME_RULE = "name or name=value, name [a-z][a-z0-9_]*, value [A-Za-z0-9_.-]+"


def outcome_parts(text: str) -> tuple[str, str | None] | None:
    """``(name, value or None)``, or None when ``text`` is not an outcome class."""
    m = _OUTCOME.fullmatch(text) if isinstance(text, str) else None
    return (m.group("name"), m.group("value")) if m else None


def int_value(text: str) -> int | None:
    """The integer value of a ``name=N`` class (``device_error_code=507018`` -> 507018)."""
    parsed = outcome_parts(text)
    if parsed is None or parsed[1] is None or not _INT.fullmatch(parsed[1]):
        return None
    return int(parsed[1])
