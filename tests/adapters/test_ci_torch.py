"""CI runs the torch tests, never skips them: without torch a CI run is an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# torch hidden from this interpreter (find_spec("torch") is None), then one test of this
# repository that needs neither torch nor anything that looks torch up (scipy does)
HIDE_TORCH = (
    "import sys; sys.modules['torch'] = None; import pytest; "
    "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
    "'tests/adapters/test_platforms.py::test_binding_env_and_local_ids']))"
)


def _run(ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci}
    env.pop("PTO_TEST_INNER", None)
    return subprocess.run(
        [sys.executable, "-c", HIDE_TORCH],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ci_without_torch_is_a_usage_error() -> None:
    proc = _run("true")
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "CI is set but torch is not importable" in proc.stderr


def test_without_ci_a_missing_torch_only_skips() -> None:
    proc = _run("")
    assert proc.returncode == 0, proc.stdout + proc.stderr
