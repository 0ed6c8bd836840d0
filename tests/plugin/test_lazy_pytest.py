"""A test module's ``import pytest`` in the zygote: a stand-in, so chip workers do not carry
pytest, unless something a worker may run needs it (libpto/_lazy_pytest.py). What must hold:
ops of a module that uses pytest only for its tests (marks, fixtures, params, importorskip,
version and feature checks) run in workers without pytest, from the first round on; a module
whose ops use pytest gets the real one, already in the zygote from the first round on (the
plugin has the zygote load each distributed test's module while pytest collects), with
module-level pytest objects that behave as the real ones (state kept, exception classes);
import-time code that needs the real pytest (a class deriving from a pytest class) works, and
the module runs once in each process: in pytest and in the zygote, never in a worker."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# appended to every module below: whether this rank has pytest, and had it when forked
PROBE = """

def pytest_here(chip):
    import sys
    from libpto import _worker

    return ["pytest" in sys.modules, "pytest" in _worker.MODULES_AT_FORK]
"""

LAZY = """
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
json_mod = pytest.importorskip("json")
NEW_ENOUGH = pytest.version_tuple >= (7,)
HAS_NOTHING = hasattr(pytest, "NoSuchThingInPytest")
try:
    from pytest import NoSuchThingInPytestEither
except ImportError:
    FROM_IMPORT_FAILED = True
else:
    FROM_IMPORT_FAILED = False


def facts(chip):
    return [json_mod.dumps([chip.rank]), NEW_ENOUGH, HAS_NOTHING, FROM_IMPORT_FAILED]


@pytest.fixture(scope="module")
def two():
    return 2


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.skipif(False, reason="-"))])
def test_lazy(pto_world, n, two):
    with pytest.raises(ZeroDivisionError):  # a test's own use of pytest: not the workers'
        1 / 0
    assert pto_world.run(pytest_here) == [[False, False]] * 2
    assert pto_world.run(facts) == [["[0]", True, False, True], ["[1]", True, False, True]]
"""

NEEDS = """
import os

import pytest
from pytest import approx

MP = pytest.MonkeyPatch()
HALF = pytest.approx(0.5)
Skipped = pytest.skip.Exception


def uses_pytest(chip):
    with pytest.raises(ZeroDivisionError):
        1 / 0
    MP.setenv("PTO_LAZY_PROBE", "set")
    MP.undo()  # the same MonkeyPatch that set it: the variable is gone again
    try:
        pytest.skip("in a rank")
    except Skipped:  # an exception class, as only the real one can be
        caught = True
    return [0.5 == HALF, 0.1 + 0.2 == approx(0.3), "PTO_LAZY_PROBE" in os.environ, caught]


def test_needs(pto_world):
    first = pto_world.run(pytest_here)
    assert pto_world.run(uses_pytest) == [[True, True, False, True]] * 2
    assert first == [[True, True]] * 2  # the zygote had pytest: no import per rank
"""

IN_CODE = """
import pytest


def close_enough(chip):
    return 0.1 + 0.2 == pytest.approx(0.3)  # pytest only in the op's code


def test_in_code(pto_world):
    first = pto_world.run(pytest_here)
    assert pto_world.run(close_enough) == [True, True]
    assert first == [[True, True]] * 2
"""

DERIVES = """
import os

import pytest

with open(os.environ["PTO_LAZY_RUNS"], "a") as f:
    f.write(f"{os.getpid()}\\n")


class NotCollected(pytest.Item):  # import-time code that needs the real pytest
    pass


def real_base(chip):
    return issubclass(NotCollected, pytest.Item)


def test_derives(pto_world):
    here = pto_world.run(pytest_here)
    assert here == [[True, True]] * 2  # loaded by the zygote during collection, with pytest
    assert pto_world.run(real_base) == [True, True]
"""


def _run(ptester: pytest.Pytester, name: str, source: str, rounds: int) -> pytest.RunResult:
    ptester.makepyfile(**{name: textwrap.dedent(source) + PROBE})
    return ptester.runpytest_subprocess(
        "--pto-ranks=2", f"--pto-rounds={rounds}", "-p", "no:cacheprovider", timeout=120
    )


def test_ops_of_a_module_that_uses_pytest_for_its_tests_run_without_it(
    ptester: pytest.Pytester,
) -> None:
    _run(ptester, "test_lazy", LAZY, 2).assert_outcomes(passed=4)


def test_ops_that_use_pytest_get_the_real_one_preloaded(ptester: pytest.Pytester) -> None:
    _run(ptester, "test_needs", NEEDS, 3).assert_outcomes(passed=3)


def test_an_op_that_names_pytest_in_its_code_gets_it_preloaded(ptester: pytest.Pytester) -> None:
    _run(ptester, "test_in_code", IN_CODE, 3).assert_outcomes(passed=3)


def test_import_time_code_that_needs_pytest_runs_once_per_process(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    monkeypatch.setenv("PTO_LAZY_RUNS", str(runs))
    _run(ptester, "test_derives", DERIVES, 3).assert_outcomes(passed=3)
    pids = runs.read_text().split()
    assert len(pids) == len(set(pids)), f"a process ran the module twice: {pids}"
    assert len(pids) == 2  # pytest and the zygote (while pytest collected); no worker
