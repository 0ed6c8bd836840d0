"""libpto._lazy_pytest case by case, each in a fresh interpreter without pytest (as the zygote
is): a module keeps the stand-in for ``import pytest`` only when nothing a worker may run can
reach pytest, and a module that can gets the real objects wherever it holds them, exactly as
an import with pytest would give them. The plugin-level behaviour (workers, rounds, the zygote
preloading pytest) is tests/plugin/test_lazy_pytest.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from libpto._lazy_pytest import pytest_api

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import json, sys
sys.path[:0] = [{root!r}, {here!r}]
from libpto import _lazy_pytest
_lazy_pytest.configure(json.loads({api!r}))
try:
    module = _lazy_pytest.import_op_module("case_mod")
except Exception as exc:
    print(json.dumps({{"raised": type(exc).__name__, "runs": getattr(sys, "_pto_runs", 0)}}))
    raise SystemExit(0)
kept = "pytest" not in sys.modules
print(json.dumps({{"kept": kept, "result": module.op(), "runs": getattr(sys, "_pto_runs", 0)}}))
"""

RUN_ONCE = "import sys\nsys._pto_runs = getattr(sys, '_pto_runs', 0) + 1\n"

# (id, module source, what op() returns, whether the stand-in is kept)
CASES: list[tuple[str, str, Any, bool]] = [
    (
        "tests-only",
        """
        import pytest
        pytestmark = pytest.mark.filterwarnings("ignore")
        json_mod = pytest.importorskip("json")
        NEW = pytest.version_tuple >= (7,)
        HAS = hasattr(pytest, "NoSuchThing")
        DEFAULT = getattr(pytest, "NoSuchThing", None)
        try:
            from pytest import NoSuchThingEither
        except ImportError:
            FAILED = True
        @pytest.fixture(scope="module")
        def fx():
            return pytest.approx(1)
        @pytest.mark.parametrize("a", [pytest.param(1, id="one")])
        def test_x(a):
            assert pytest.approx(1) == a
        class TestK:
            pytestmark = pytest.mark.slow
            def test_m(self):
                pytest.fail("x")
        def op():
            return [json_mod.dumps(1), NEW, HAS, DEFAULT, FAILED]
        """,
        ["1", True, False, None, True],
        True,
    ),
    (
        "star-import",
        """
        from pytest import *
        def op():
            with raises(ZeroDivisionError):
                1 / 0
            return "ok"
        """,
        "ok",
        False,
    ),
    (
        "module-level-objects",
        """
        import pytest
        R = pytest.raises(ZeroDivisionError)
        P = pytest.param(int)
        Skipped = pytest.skip.Exception
        MP = pytest.MonkeyPatch()
        def op():
            with R:
                1 / 0
            try:
                pytest.skip("x")
            except Skipped:
                caught = True
            MP.setattr("os.sep", "#")
            MP.undo()
            import os
            return [type(P).__name__, caught, os.sep]
        """,
        ["ParameterSet", True, "/"],
        False,
    ),
    (
        "nested-data",
        """
        import collections
        import pytest
        Case = collections.namedtuple("Case", "x tol")
        CASES = {"small": [pytest.param(1, 2, id="a")]}
        C = Case(1.0, pytest.approx(1.0))
        def op():
            p = CASES["small"][0]
            return [type(p).__name__, isinstance(p, tuple), type(C.tol).__name__]
        """,
        ["ParameterSet", True, "ApproxScalar"],
        False,
    ),
    (
        "defaults-and-closures",
        """
        import pytest
        def make(tol):
            def inner():
                return tol
            return inner
        get = make(pytest.approx(1.0))
        class Helper:
            def run(self, tol=pytest.approx(2.0)):
                return tol
        def op(*, tol=pytest.approx(3.0)):
            return [type(x).__name__ for x in (get(), Helper().run(), tol)]
        """,
        ["ApproxScalar"] * 3,
        False,
    ),
    (
        "import-time-real-use",
        RUN_ONCE
        + textwrap.dedent("""
        import pytest
        NAME = repr(pytest.approx(1.0))
        IS_TUPLE = isinstance(pytest.param(1), tuple)
        class Item(pytest.Item):
            pass
        def op():
            return [NAME, IS_TUPLE, issubclass(Item, pytest.Item)]
        """),
        ["1.0 ± 1.0e-06", True, True],
        False,
    ),
    (
        "op-names-pytest",
        """
        import pytest
        def op():
            return 0.1 + 0.2 == pytest.approx(0.3)
        """,
        True,
        False,
    ),
]


def _load(tmp_path: Path, source: str) -> dict[str, Any]:
    here = tmp_path / "mods"
    here.mkdir()
    (here / "case_mod.py").write_text(textwrap.dedent(source))
    api = json.dumps(pytest_api())
    code = DRIVER.format(root=str(ROOT), here=str(here), api=api)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("source", "expected", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_module_gets_pytest_exactly_when_a_worker_can_reach_it(
    tmp_path: Path, source: str, expected: Any, kept: bool
) -> None:
    got = _load(tmp_path, source)
    assert got["kept"] is kept
    assert got["result"] == expected
    assert got["runs"] in (0, 1)  # never run twice


def test_a_module_that_fails_with_pytest_fails_the_same_and_runs_once(tmp_path: Path) -> None:
    got = _load(tmp_path, RUN_ONCE + "import pytest\nX = pytest.approx(1.0) ** 2\n")
    assert got == {"raised": "TypeError", "runs": 1}
