"""The whole-world ``WorldConfig`` of a multi-host round (``hosts``) and ``pto-devices``'s
multi-host options: their rules, without namespace hosts (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libpto.errors import InvalidArgument
from libpto.world import World, WorldConfig
from pytest_pto.cli import devices_main


def test_device_ids_repeat_across_hosts_but_not_on_one() -> None:
    config = WorldConfig(devices=(0, 1, 0, 1), hosts=("a", "a", "b", "b"))
    assert config.hosts == ("a", "a", "b", "b") and config.size == 4
    with pytest.raises(InvalidArgument, match="names device 0 twice on host a"):
        WorldConfig(devices=(0, 1, 0, 1), hosts=("a", "a", "a", "b"))
    with pytest.raises(InvalidArgument, match="names a device twice"):
        WorldConfig(devices=(0, 0))  # without hosts: one machine, as before
    with pytest.raises(InvalidArgument, match=r"hosts=\('a',\): must name the host of each"):
        WorldConfig(devices=(0, 1), hosts=("a",))
    with pytest.raises(InvalidArgument, match="must name the host of each"):
        WorldConfig(devices=(0, 1), hosts=("a", ""))


def test_world_start_refuses_ranks_on_several_hosts() -> None:
    with pytest.raises(InvalidArgument, match=r"World\.start runs the ranks of one host"):
        World.start(WorldConfig(devices=(0, 0), hosts=("a", "b")))


def test_pto_devices_multi_host_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("PTO_LAUNCHER", "PTO_HOSTS", "PTO_MPIRUN", "PTO_MPI_ARGS"):
        monkeypatch.delenv(key, raising=False)
    lock = f"--lock-dir={tmp_path / 'locks'}"
    assert devices_main([lock, "--launcher=ssh"]) == 2
    assert "--launcher=ssh: must be 'local' or 'mpirun'" in capsys.readouterr().err
    monkeypatch.setenv("PTO_LAUNCHER", "mpirun")
    assert devices_main([lock]) == 2
    assert "needs --hosts (or PTO_HOSTS)" in capsys.readouterr().err
    assert devices_main([lock, "--hosts=a:0-1 a:2-3"]) == 2
    assert "--hosts=a:0-1 a:2-3: a host is named twice" in capsys.readouterr().err
    monkeypatch.setenv("PTO_HOSTS", "a:0-1 b:0-1")
    assert devices_main([lock, "--release=c:1"]) == 2
    assert "--release=c:1: no host 'c'" in capsys.readouterr().err
    assert devices_main([lock, "--release=a:x"]) == 2
    assert "--release=a:x: not a device id, HOST:ID or all" in capsys.readouterr().err
    assert not (tmp_path / "locks").exists()  # nothing read or made on this machine
