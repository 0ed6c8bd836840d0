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
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ENV_MAPPING_RULE",
    "ENV_NAME_RULE",
    "MAX_SECONDS",
    "SECONDS_RULE",
    "EnvError",
    "env_mapping",
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
ENV_MAPPING_RULE = "must be a mapping NAME -> value"
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


class EnvError(ValueError):
    """A bad environment mapping: ``kind`` is ``mapping`` (not a mapping at all), ``name``
    (a bad key), ``value`` (a value of the wrong type) or ``text`` (a value no environment can
    carry); ``key`` the entry, ``got`` the offending object, ``rule`` the broken rule.
    :meth:`text` words it for one source."""

    def __init__(self, kind: str, key: Any, got: Any, rule: str) -> None:
        super().__init__(rule)
        self.kind, self.key, self.got, self.rule = kind, key, got, rule

    def text(
        self,
        where: str,
        *,
        mapping: str = "{where} {rule}, got {got!r}",
        value: str = "{where}[{key!r}] {rule}, got {got!r}",
    ) -> str:
        """The message naming ``where`` (a marker, a variants file entry, an option); the
        ``mapping`` and ``value`` templates (fields ``where``, ``key``, ``got``, ``rule``)
        keep each source's own notation for those two cases."""
        template = {"mapping": mapping, "value": value}.get(self.kind, "{where}: {rule}")
        return template.format(where=where, key=self.key, got=self.got, rule=self.rule)


def env_mapping(value: Any, *, numbers: bool = False) -> dict[str, str]:
    """THE validator of an environment mapping, whichever door it came through (marker
    ``env``/``rank_env``, a variant's ``env``, ini ``pto_env``, ``--pto-env``,
    ``WorldConfig.env``): a copy with string values, or :class:`EnvError` for the first bad
    entry. With ``numbers``, int and float values are accepted and written as text (YAML and
    marker keyword arguments give numbers); bool never is (``True`` is not ``"1"``)."""
    if not isinstance(value, Mapping):
        raise EnvError("mapping", None, value, ENV_MAPPING_RULE)
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise EnvError(
                "name",
                key,
                key,
                f"{key!r} is not a valid environment variable name ({ENV_NAME_RULE})",
            )
        if numbers and not isinstance(val, bool) and isinstance(val, (int, float)):
            text = str(val)
        elif isinstance(val, str):
            text = val
        else:
            rule = "must be a string or number" if numbers else "must be a string"
            raise EnvError("value", key, val, rule)
        problem = text_problem(text)
        if problem is not None:
            raise EnvError("text", key, text, f"{key}={text!r}: the value {problem}")
        out[key] = text
    return out


def name_problem(name: Any) -> str | None:
    """A name that becomes a C string or a file name: non-empty text, no NUL, encodable."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    return text_problem(name)
