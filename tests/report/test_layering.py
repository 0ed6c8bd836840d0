"""The report wing and the vocabulary stay on their side of the layering.

``pytest_pto/report/`` reads rounds in the vocabulary and must never import the plugin (so
``pto-report`` works without a pytest session and a plugin change cannot break old reports);
``pytest_pto/_vocabulary.py`` is a leaf: it imports nothing of pytest-pto at all. Checked on
the source (every import statement, lazy ones inside functions included), not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_pto

PKG = Path(pytest_pto.__file__).parent
#: what the report wing may import of pytest_pto besides itself
REPORT_MAY_USE = {"pytest_pto._vocabulary", "pytest_pto._atomic"}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n == "pytest_pto" or n.startswith("pytest_pto.")}


@pytest.mark.parametrize("path", sorted((PKG / "report").glob("*.py")), ids=lambda p: p.name)
def test_the_report_wing_never_imports_the_plugin(path: Path) -> None:
    bad = {
        n
        for n in _ours(_imports(path))
        if not n.startswith("pytest_pto.report")
        and not any(n == m or n.startswith(m + ".") for m in REPORT_MAY_USE)
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_lazy_table_of_the_report_package_names_only_its_own_modules() -> None:
    from pytest_pto import report

    for name, (module, attr) in report._WHERE.items():
        assert module.startswith("pytest_pto.report.") or module in REPORT_MAY_USE, name
        assert getattr(report, name) is getattr(__import__(module, fromlist=[attr]), attr)
    assert set(report.__all__) == set(report._WHERE)


def test_the_vocabulary_is_a_leaf() -> None:
    assert not _ours(_imports(PKG / "_vocabulary.py"))
