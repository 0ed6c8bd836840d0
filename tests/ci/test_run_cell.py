"""``ci/run-cell.sh`` itself: the real script, run in a subprocess on a small matrix.

Each test copies the script into a throwaway project (``ci/run-cell.sh`` + ``ci/matrix.yaml``
+ tiny pto tests), so what is tested is exactly what CI runs, on inputs we control.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_pto._settings import OPTIONS

ROOT = Path(__file__).resolve().parents[2]

TEST_A = """
import pytest


@pytest.mark.pto(ranks=[2, 3])
def test_a(pto_world):
    assert pto_world.size in (2, 3)
"""
TEST_B = """
def test_b(pto_world):
    assert pto_world.size == 2
"""
VARIANTS = """
v1:
  description: the only variant
  env: {}
"""


def _project(tmp_path: Path, matrix: str) -> Path:
    proj = tmp_path / "proj"
    (proj / "ci").mkdir(parents=True)
    shutil.copy(ROOT / "ci" / "run-cell.sh", proj / "ci" / "run-cell.sh")
    (proj / "ci" / "matrix.yaml").write_text(textwrap.dedent(matrix))
    (proj / "test_a.py").write_text(TEST_A)
    (proj / "test_b.py").write_text(TEST_B)
    (proj / "variants.yaml").write_text(VARIANTS)
    return proj


def _run(proj: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for opt in OPTIONS:  # none of the caller's PTO_* settings leak in
        if opt.env:
            env.pop(opt.env, None)
    env.update(
        PYTHON=sys.executable,
        PTO_LOCK_DIR=str(proj.parent / "locks"),
        PTO_ARTIFACTS=str(proj.parent / "art"),
        **env_extra,
    )
    return subprocess.run(
        ["bash", str(proj / "ci" / "run-cell.sh"), *args],
        cwd=proj.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


MATRIX = """
tests: test_a.py
variants_file: variants.yaml
rounds: 2
"""


@pytest.mark.parametrize("extra", [[], ["-q"], ["-v"], ["-qq", "-rA"]])
def test_extra_pytest_args_do_not_change_what_the_cell_selects(
    tmp_path: Path, extra: list[str]
) -> None:
    proj = _project(tmp_path, MATRIX)
    res = _run(proj, "sim", "v1", "2", "1/1", *extra)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "running 2 items (shard 1/1)" in res.stdout
    selected = (tmp_path / "art" / "selected-items.txt").read_text().split()
    assert selected == [
        "test_a.py::test_a[ranks-2-v1-round-1]",
        "test_a.py::test_a[ranks-2-v1-round-2]",
    ]


def test_a_cell_that_selects_nothing_fails(tmp_path: Path) -> None:
    proj = _project(tmp_path, MATRIX)
    res = _run(proj, "sim", "v1", "2", "1/1", "-k", "no_such_test")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "selects nothing" in res.stderr
    # a shard beyond the items: 2 ranks-2 rounds over 3 shards leave shard 3 empty
    res = _run(proj, "sim", "v1", "2", "3/3")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "selects nothing: 4 items collected" in res.stderr


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ("tests: [unclosed\n", "ci/matrix.yaml: not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("tests: test_a.py\nrounds: 2\n", "missing key(s): variants_file"),
        ("tests: test_a.py\nvariants_file: variants.yaml\nrounds: zero\n", "rounds: 'zero'"),
    ],
)
def test_a_broken_matrix_gets_the_scripts_message_and_exit_2(
    tmp_path: Path, matrix: str, message: str
) -> None:
    proj = _project(tmp_path, matrix)
    res = _run(proj, "sim", "v1", "2", "1/1")
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"run-cell.sh: {message}" in res.stderr or message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("tests", ["tests: test_a.py test_b.py", "tests: [test_a.py, test_b.py]"])
def test_several_test_paths(tmp_path: Path, tests: str) -> None:
    proj = _project(tmp_path, f"{tests}\nvariants_file: variants.yaml\nrounds: 1\n")
    res = _run(proj, "sim", "v1", "2", "1/1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--pto-rounds=1 " not in res.stdout  # the rounds value is not shifted by a path
    assert "running 2 items" in res.stdout
    selected = (tmp_path / "art" / "selected-items.txt").read_text().split()
    assert selected == ["test_a.py::test_a[ranks-2-v1-round-1]", "test_b.py::test_b[v1-round-1]"]


def test_the_default_lock_dir_is_the_plugins(tmp_path: Path) -> None:
    """Without PTO_LOCK_DIR the cell uses the plugin's default, so a cell and a plain pytest
    session on one machine share one set of device locks."""
    from pytest_pto._settings import default_lock_dir

    proj = _project(tmp_path, MATRIX)
    env = {k: v for k, v in os.environ.items() if k != "PTO_LOCK_DIR"}
    env.update(PYTHON=sys.executable, PTO_ARTIFACTS=str(tmp_path / "art"))
    res = subprocess.run(
        ["bash", str(proj / "ci" / "run-cell.sh"), "sim", "v1", "2", "1/1", "--co"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert f"lock dir {default_lock_dir()}," in res.stdout, res.stdout + res.stderr
