"""Platforms ``ascend`` and ``cuda``: device discovery, worker binding, no-device usage error.

No card is reachable here, so ``npu-smi`` and ``nvidia-smi`` are TEST DOUBLES: small shell
scripts placed first on PATH that print what the real tools print (and record that they ran).
Everything else is real: the plugin, the device locks, the chip workers and their environment.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pytest_pto._platforms import (
    AscendPlatform,
    CudaPlatform,
    NoDevices,
    SimPlatform,
    get_platform,
)
from tests.plugin.conftest import junit_cases

NPU_SMI_LISTING = """\
        Total Count                    : {count}
{entries}"""
NPU_ENTRY = """
        NPU ID                         : {id}
        Product Name                   : Ascend910B
        Serial Number                  : TESTDOUBLE{id:04d}
        Chip Count                     : 1
"""


def _stand_in(bindir: Path, name: str, body: str) -> Path:
    """A test double of a vendor tool: ``body`` is its shell script after the shebang."""
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text(
        "#!/bin/sh\n"
        f"# TEST DOUBLE of {name}: no card is reachable on this machine.\n"
        f'echo "$@" >> "{bindir}/{name}.calls"\n' + body
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def nvidia_smi(bindir: Path, indices: list[int] | None, status: int = 0, err: str = "") -> None:
    """Stand-in for ``nvidia-smi --query-gpu=index --format=csv,noheader``."""
    lines = "".join(f"echo {i}\n" for i in indices or [])
    tail = f"cat >&2 <<'EOF'\n{err}\nEOF\n" if err else ""
    _stand_in(bindir, "nvidia-smi", lines + tail + f"exit {status}\n")


def npu_smi(bindir: Path, ids: list[int]) -> None:
    """Stand-in for ``npu-smi info -l``."""
    listing = NPU_SMI_LISTING.format(
        count=len(ids), entries="".join(NPU_ENTRY.format(id=i) for i in ids)
    )
    _stand_in(bindir, "npu-smi", f"cat <<'EOF'\n{listing}EOF\n")


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory first on PATH; the vendor tools are found only if a test puts a
    stand-in there (the rest of PATH has none on this machine, which the fixture checks)."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    import shutil

    for tool in ("nvidia-smi", "npu-smi"):
        assert shutil.which(tool) is None, f"a real {tool} is on PATH: these tests assume none"
    return path


def calls(bindir: Path, tool: str) -> list[str]:
    log = bindir / f"{tool}.calls"
    return log.read_text().splitlines() if log.exists() else []


def test_cuda_devices_from_nvidia_smi_and_from_the_variable(
    bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvidia_smi(bindir, [0, 1, 2, 3])
    assert CudaPlatform().devices() == (0, 1, 2, 3)
    assert calls(bindir, "nvidia-smi") == ["--query-gpu=index --format=csv,noheader"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert CudaPlatform().devices() == (1, 3)
    assert len(calls(bindir, "nvidia-smi")) == 1, "the variable wins: the tool is not asked"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8c1d2e3f")
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=GPU-8c1d2e3f: must be comma"):
        CudaPlatform().devices()


def test_ascend_devices_from_npu_smi(bindir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    npu_smi(bindir, [0, 1, 4, 5])
    assert AscendPlatform().devices() == (0, 1, 4, 5)
    assert calls(bindir, "npu-smi") == ["info -l"]
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "6,2")
    assert AscendPlatform().devices() == (2, 6)


def test_binding_env_and_local_ids() -> None:
    assert CudaPlatform().binding_env((2, 3)) == {
        "CUDA_VISIBLE_DEVICES": "2,3",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # nvidia-smi's order, so index 2 is the same card
    }
    assert CudaPlatform().local_device_id((2, 3)) == 0
    assert AscendPlatform().binding_env((5,)) == {"ASCEND_RT_VISIBLE_DEVICES": "5"}
    assert AscendPlatform().local_device_id((5,)) == 0
    assert SimPlatform().binding_env((5,)) == {}
    assert SimPlatform().local_device_id((5, 6)) == 5
    assert get_platform("cuda").name == "cuda"


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        (None, "`nvidia-smi --query-gpu=index --format=csv,noheader` is not on PATH"),
        (
            "driver-down",
            "exited with status 9: printed \"NVIDIA-SMI has failed because it couldn't "
            'communicate with the NVIDIA driver."',
        ),
        ("empty", "listed no device: printed nothing"),
    ],
)
def test_no_cuda_device_says_where_it_looked(bindir: Path, setup: str | None, said: str) -> None:
    if setup == "driver-down":
        err = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        nvidia_smi(bindir, None, status=9, err=err)
    elif setup == "empty":
        nvidia_smi(bindir, [])
    with pytest.raises(NoDevices) as info:
        CudaPlatform().devices()
    text = str(info.value)
    assert text.startswith("no device found: CUDA_VISIBLE_DEVICES is not set, and "), text
    assert said in text, text


def test_no_device_is_a_usage_error_at_configure(ptester: pytest.Pytester, bindir: Path) -> None:
    ptester.makepyfile("def test_nothing():\n    pass\n")
    result = ptester.runpytest("--pto-platform=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "pytest-pto: platform 'cuda': no device found: CUDA_VISIBLE_DEVICES is not set" in err
    assert "is not on PATH" in err
    npu_smi(bindir, [])
    result = ptester.runpytest("--pto-platform=ascend")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "`npu-smi info -l`" in result.stderr.str()
    assert "listed no device" in result.stderr.str()


BINDING_TEST = """
import json, os
import pytest


def binding(chip):
    return {
        "rank": chip.rank,
        "device_id": chip.device_id,
        "device_ids": list(chip.device_ids),
        "local": chip.local_device_id,
        "visible": os.environ.get("{var}"),
        "order": os.environ.get("CUDA_DEVICE_ORDER"),
        "env_local": os.environ.get("PTO_LOCAL_DEVICE_ID"),
    }


@pytest.mark.pto(ranks=2, devices_per_rank={per_rank})
def test_binding(pto_world):
    with open("binding.json", "w") as f:
        json.dump(pto_world.run(binding), f)
"""


@pytest.mark.parametrize(("platform", "per_rank"), [("cuda", 1), ("ascend", 2)])
def test_each_rank_is_bound_to_its_own_devices(
    ptester: pytest.Pytester, bindir: Path, platform: str, per_rank: int
) -> None:
    var = "CUDA_VISIBLE_DEVICES" if platform == "cuda" else "ASCEND_RT_VISIBLE_DEVICES"
    if platform == "cuda":
        nvidia_smi(bindir, [0, 1, 2, 3])
    else:
        npu_smi(bindir, [0, 1, 2, 3])
    ptester.makepyfile(
        test_binding=BINDING_TEST.replace("{var}", var).replace("{per_rank}", str(per_rank))
    )
    result = ptester.runpytest_subprocess(
        f"--pto-platform={platform}", "--pto-devices=0-3", "--junitxml=junit.xml", "-q"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    ranks = json.loads((ptester.path / "binding.json").read_text())
    leased: list[int] = []
    for info in ranks:
        ids = info["device_ids"]
        assert len(ids) == per_rank and ids[0] == info["device_id"]
        assert info["visible"] == ",".join(map(str, ids))  # bound to its own devices only
        assert info["local"] == 0 and info["env_local"] == "0"  # renumbered from 0
        assert info["order"] == ("PCI_BUS_ID" if platform == "cuda" else None)
        leased.extend(ids)
    assert len(set(leased)) == len(leased) == 2 * per_rank, "no device is shared by two ranks"
    case = next(iter(junit_cases(ptester.path / "junit.xml").values()))
    assert case["props"]["pto.outcome"] == "passed"
