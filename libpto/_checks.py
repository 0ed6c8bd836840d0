"""Rules for values that every layer receives from users: seconds, environment entries, names.

Why one module: the same bad value arrives through many doors (a pytest option, an ini key, a
marker, a variants file, ``WorldConfig``, ``World.run``) and must get the same verdict
everywhere, at the door, naming that door -- not a failure deep inside every round naming an
internal layer. Each function returns the broken rule as text (``None`` when the value is
fine); the caller adds its source and raises its own error type.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "ENV_NAME_RULE",
    "MAX_SECONDS",
    "SECONDS_RULE",
    "env_problems",
    "name_problem",
    "seconds_problem",
    "text_problem",
]

#: The longest timeout anything accepts: about 11.6 days. Far beyond any sane round, and far
#: below where deadlines overflow (``time.monotonic() + 1e308`` is inf, and C's int64
#: nanoseconds end at 292 years).
MAX_SECONDS = 1_000_000.0
SECONDS_RULE = f"must be a number of seconds > 0 and <= {int(MAX_SECONDS)}"
ENV_NAME_RULE = "letters, digits and _, not starting with a digit"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def seconds_problem(value: Any) -> str | None:
    """A timeout in seconds: a real number in (0, MAX_SECONDS] (not bool, NaN or inf).

    Returns the rule (the caller names the argument and its value), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{SECONDS_RULE} (not {type(value).__name__})"
    if not 0 < value <= MAX_SECONDS:  # NaN and inf fail this too
        return SECONDS_RULE
    return None


def text_problem(text: str) -> str | None:
    """Text that must reach the OS or C: no NUL (C strings end there), encodable bytes."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        os.fsencode(text)
    except UnicodeEncodeError as exc:
        return f"cannot be encoded ({exc.reason} at position {exc.start})"
    return None


def env_problems(env: Mapping[Any, Any]) -> Iterator[tuple[Any, str]]:
    """``(key, rule)`` for each bad entry of an environment mapping of strings."""
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            yield key, f"{key!r} is not a valid environment variable name ({ENV_NAME_RULE})"
            continue
        if not isinstance(value, str):
            yield key, f"{key}={value!r}: the value must be a string"
            continue
        problem = text_problem(value)
        if problem is not None:
            yield key, f"{key}={value!r}: the value {problem}"


def name_problem(name: Any) -> str | None:
    """A name that becomes a C string or a file name: non-empty text, no NUL, encodable."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    return text_problem(name)
