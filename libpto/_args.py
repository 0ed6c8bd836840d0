"""Arguments of libpto's Python API checked before they reach C: one integer rule, one
comparison-operator table.

Why: cffi turns a wrong Python value into ``OverflowError`` or ``TypeError`` naming no
argument, or silently truncates it; every C parameter therefore passes through one of these
first and a bad value becomes one :class:`~libpto.errors.InvalidArgument` naming the call,
the argument and its rule. The runtime (``runtime.py``), the comm window (``_comm.py``) and
the mailboxes (``_mailbox.py``) used to carry a copy each, with rules that had drifted apart.
"""

from __future__ import annotations

from typing import Any

from libpto.errors import InvalidArgument

__all__ = [
    "CMP_BY_NAME",
    "CMP_EQ",
    "CMP_GE",
    "CMP_GT",
    "CMP_LE",
    "CMP_LT",
    "CMP_NE",
    "I32",
    "I64",
    "U32",
    "U64",
    "cmp_arg",
    "int_arg",
    "invalid",
]

I32 = (1 << 31) - 1
U32 = (1 << 32) - 1
I64 = (1 << 63) - 1
U64 = (1 << 64) - 1

#: The C ``pto_cmp`` values (``csrc``: comm waits and the ``wait`` kernel), and every spelling
#: the API accepts for them.
CMP_EQ, CMP_NE, CMP_GE, CMP_GT, CMP_LE, CMP_LT = 0, 1, 2, 3, 4, 5
CMP_BY_NAME = {
    "==": CMP_EQ,
    "eq": CMP_EQ,
    "!=": CMP_NE,
    "ne": CMP_NE,
    ">=": CMP_GE,
    "ge": CMP_GE,
    ">": CMP_GT,
    "gt": CMP_GT,
    "<=": CMP_LE,
    "le": CMP_LE,
    "<": CMP_LT,
    "lt": CMP_LT,
}
CMP_SYMBOLS = "== != >= > <= <"


def invalid(context: str, message: str) -> InvalidArgument:
    """The error of a bad argument: ``<call>: <argument and rule>``, status name as C's."""
    return InvalidArgument(f"{context}: {message}", name="PTO_E_INVALID_ARG")


def int_arg(context: str, arg: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]`` (the C type's range), else InvalidArgument naming it.

    Any integer type counts (``__index__``: numpy integers too), bool does not."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise invalid(context, f"{arg}={value!r} must be an integer in [{lo}, {hi}]")
    v = int(value.__index__())
    if not lo <= v <= hi:
        raise invalid(context, f"{arg}={v} out of range [{lo}, {hi}]")
    return v


def cmp_arg(context: str, cmp: Any) -> int:
    """A comparison (``'>='``, ``'ge'``, ... or its C value 0..5) as its C value."""
    if isinstance(cmp, str):
        code = CMP_BY_NAME.get(cmp.strip().lower())
        if code is None:
            raise invalid(context, f"cmp={cmp!r} is not one of {CMP_SYMBOLS}")
        return code
    if isinstance(cmp, bool) or not hasattr(cmp, "__index__") or not 0 <= int(cmp) <= 5:
        raise invalid(context, f"cmp={cmp!r} is not a comparison ({CMP_SYMBOLS} or 0..5)")
    return int(cmp)
