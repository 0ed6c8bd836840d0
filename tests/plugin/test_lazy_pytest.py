"""A test module's ``import pytest`` in the zygote: a stand-in, so chip workers do not carry
pytest (libpto/_lazy_pytest.py). What must hold: the zygote and the workers forked from it have
no pytest; what the module does with pytest at import time (marks, fixtures, params,
importorskip) still works, and an op that uses pytest in a worker gets the real thing; a module
the stand-in cannot load is loaded with the real pytest, and its ops run as before."""

from __future__ import annotations

import textwrap

import pytest

LAZY = """
import sys

import pytest
from pytest import approx

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
json_mod = pytest.importorskip("json")
HALF = pytest.approx(0.5)


def pytest_loaded(chip):
    return "pytest" in sys.modules


def uses_pytest(chip):
    with pytest.raises(ZeroDivisionError):
        1 / 0
    return [0.5 == HALF, 0.1 + 0.2 == approx(0.3), json_mod.dumps([chip.rank])]


@pytest.fixture(scope="module")
def two():
    return 2


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.skipif(False, reason="-"))])
def test_lazy(pto_world, n, two):
    assert pto_world.run(pytest_loaded) == [False, False]  # not in the zygote: not in its forks
    assert pto_world.run(uses_pytest) == [[True, True, "[0]"], [True, True, "[1]"]]
    assert pto_world.run(pytest_loaded) == [True, True]  # what uses it imports it
"""

NEEDS_PYTEST = """
import sys

import pytest


class NotCollected(pytest.Item):  # module-level code that needs the real pytest
    pass


def pytest_loaded(chip):
    return "pytest" in sys.modules


def test_real(pto_world):
    assert pto_world.run(pytest_loaded) == [True, True]
"""


def test_ops_of_a_test_module_run_without_pytest_in_the_zygote(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_lazy=textwrap.dedent(LAZY))
    result = ptester.runpytest_subprocess(
        "--pto-ranks=2", "--pto-rounds=2", "-p", "no:cacheprovider", timeout=120
    )
    result.assert_outcomes(passed=4)


def test_a_module_that_needs_pytest_at_import_is_loaded_with_it(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_real=textwrap.dedent(NEEDS_PYTEST))
    result = ptester.runpytest_subprocess(
        "--pto-ranks=2", "-p", "no:cacheprovider", "-W", "ignore", timeout=120
    )
    result.assert_outcomes(passed=1)
