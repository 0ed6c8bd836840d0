"""The one integer rule and the one comparison table every Python API call checks with."""

from __future__ import annotations

import pytest

from libpto import InvalidArgument
from libpto._args import CMP_BY_NAME, CMP_GE, CMP_LT, U32, cmp_arg, int_arg


class _Index:
    """Any integer type (numpy's, say) offers __index__."""

    def __index__(self) -> int:
        return 7


def test_int_arg_takes_any_integer_and_names_the_argument() -> None:
    assert int_arg("ctx", "slot", 3, 0, U32) == 3
    assert int_arg("ctx", "slot", _Index(), 0, U32) == 7
    for bad, rule in ((True, "must be an integer in [0, 4294967295]"), (1.0, "must be an integer")):
        with pytest.raises(InvalidArgument, match=r"^ctx: slot=.* " + rule.replace("[", r"\[")):
            int_arg("ctx", "slot", bad, 0, U32)
    with pytest.raises(InvalidArgument, match=r"^ctx: slot=-1 out of range \[0, 4294967295\]$"):
        int_arg("ctx", "slot", -1, 0, U32)
    try:
        int_arg("ctx", "slot", -1, 0, U32)
    except InvalidArgument as exc:
        assert exc.name == "PTO_E_INVALID_ARG"


def test_one_comparison_table() -> None:
    assert cmp_arg("ctx", ">=") == cmp_arg("ctx", " GE ") == cmp_arg("ctx", CMP_GE) == CMP_GE
    assert cmp_arg("ctx", "<") == CMP_LT and sorted(set(CMP_BY_NAME.values())) == list(range(6))
    with pytest.raises(InvalidArgument, match=r"^ctx: cmp='=>' is not one of == != >= > <= <$"):
        cmp_arg("ctx", "=>")
    for bad in (6, True, 1.5):
        with pytest.raises(InvalidArgument, match="is not a comparison"):
            cmp_arg("ctx", bad)
