"""Health and placement hooks across hosts (``--pto-launcher=mpirun``, namespace hosts, real
mpirun): the preflight probes run on the host that owns the device and quarantine it in that
host's lock dir, a retry avoids the first attempt's devices of each host (not their ids on
every host), the ``pytest_pto_world_config`` hook sees and shapes the whole world, and
``pto-devices`` reads every host's own lock dir on that host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.multihost.conftest import wait_for
from tests.multihost.nshosts import MPIRUN, RSH, NsCluster, NsHost, missing_mpich
from tests.multihost.test_multihost import _run

DEVICE_WORK = """
def work(chip):
    g = chip.runtime.graph()
    g.noop()
    chip.runtime.run(g)
    return [os.environ["PTO_HOST"], chip.device_id]
"""


def _props(junit: Path) -> dict[str, dict[str | None, str | None]]:
    import xml.etree.ElementTree as ET

    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        out[case.get("name", "")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    return out


def _quarantined(host: NsHost, lock_dir: Path) -> dict[str, dict[str, object]]:
    """The quarantine files in ``host``'s own lock dir (read inside its mount namespace)."""
    qdir = lock_dir / "quarantine"
    out = {}
    for name in host.run("ls", str(qdir)).stdout.split():
        out[name] = json.loads(host.run("cat", str(qdir / name)).stdout)
    return out


def _clear_quarantine(cluster: NsCluster) -> None:
    for host in cluster.hosts:
        host.run("rm", "-rf", str(cluster.lock_dir / "quarantine"))


def test_health_probe_runs_on_the_devices_host_and_the_lease_moves_on(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host nsb's own environment says its device 1 is faulty (``PTO_SIM_DEVICE_FAULTS``, the
    knob of the local health tests; pytest's environment has no fault): the sim platform's
    probe, run by nsb's agent, finds it before any rank starts, quarantines it in nsb's lock
    dir, and nsb's lease moves on to device 2; the round passes on its first attempt. nsa's
    device 1 is another card and stays in use."""
    pytester.makepyfile(
        test_mh="import os\nimport pytest\n"
        + DEVICE_WORK
        + textwrap.dedent(
            """
            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_probe(pto_world):
                assert pto_world.run(work) == [["nsa", 0], ["nsa", 1], ["nsb", 0], ["nsb", 2]]
            """
        )
    )
    a, b = ns_cluster.hosts
    try:
        with ns_cluster.host_env("nsb", {"PTO_SIM_DEVICE_FAULTS": "1=507899"}):
            res = _run(
                pytester,
                ns_cluster,
                monkeypatch,
                "--pto-health-check=on",
                "--junitxml=j.xml",
                hosts="nsa:0-2 nsb:0-2",
            )
        res.assert_outcomes(passed=1)
        props = _props(pytester.path / "j.xml")["test_probe[round-1]"]
        assert props["pto.attempt"] == "1" and props["pto.outcome"] == "passed"
        assert props["pto.devices"] == "0,1,0,2"
        assert props["pto.hosts"] == "nsa,nsa,nsb,nsb"
        on_b = _quarantined(b, ns_cluster.lock_dir)
        assert list(on_b) == ["device-1.json"]
        q = on_b["device-1.json"]
        assert str(q["reason"]).startswith("probe: sim device 1 is faulty")
        assert q["outcome"] == "probe_failed" and q["host"] == "nsb"
        assert q["test"] == "test_mh.py::test_probe[round-1]" and q["round"] == 1
        assert _quarantined(a, ns_cluster.lock_dir) == {}
        assert not (ns_cluster.lock_dir / "quarantine").exists()  # not the controller's
    finally:
        _clear_quarantine(ns_cluster)


PROBE_ADAPTER = """
import os

from pytest_pto._libpto_adapter import LibptoAdapter


class HostFileProbe(LibptoAdapter):
    '''A runtime adapter whose probe reads the host it runs on: a device is unhealthy when
    /dev/shm/probe-bad-<id> exists there (every namespace host has its own /dev/shm).'''

    def probe(self, device_id):
        mark = f"/dev/shm/probe-bad-{device_id}"
        return f"{mark} exists on this host" if os.path.exists(mark) else None
"""


def test_adapter_probe_failing_on_one_host_is_all_or_none_and_names_host_and_device(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime adapter's probe runs in nsb's agent and fails nsb's device 1; nsb then has
    too few healthy devices, so the round is device_unavailable (infra, retried once) with a
    message naming host nsb and device 1, and nsa's devices, leased first, were given back:
    the next test, on nsa alone, leases them within a 3 s lock timeout."""
    pytester.makepyfile(probe_adapter=PROBE_ADAPTER)
    pytester.makepyfile(
        test_mh=textwrap.dedent(
            """
            import pytest

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_probe(pto_world):
                pto_world.run(print)

            @pytest.mark.pto(ranks=2, ranks_per_host=2)
            def test_nsa_only(pto_world):
                assert pto_world.devices == (0, 1)
            """
        )
    )
    a, b = ns_cluster.hosts
    mark = "/dev/shm/probe-bad-1"
    assert b.run("touch", mark).returncode == 0
    try:
        res = _run(
            pytester,
            ns_cluster,
            monkeypatch,
            "--pto-health-check=on",
            "--pto-runtime=probe_adapter:HostFileProbe",
            "--pto-lock-timeout=3",
            "--junitxml=j.xml",
            hosts="nsa:0-1 nsb:0-1",
        )
        res.assert_outcomes(passed=1, failed=1)
        props = _props(pytester.path / "j.xml")
        first = props["test_probe[round-1]"]
        assert first["pto.outcome"] == "device_unavailable" and first["pto.verdict"] == "infra"
        assert first["pto.attempt"] == "2"
        text = res.stdout.str()
        assert "host nsb: device_unavailable: 2 devices needed, only 1 healthy" in text
        assert f"device 1 quarantined: probe: {mark} exists on this host" in text
        assert props["test_nsa_only[round-1]"]["pto.outcome"] == "passed"
        on_b = _quarantined(b, ns_cluster.lock_dir)
        assert list(on_b) == ["device-1.json"] and on_b["device-1.json"]["host"] == "nsb"
        assert _quarantined(a, ns_cluster.lock_dir) == {}
    finally:
        b.run("rm", "-f", mark)
        _clear_quarantine(ns_cluster)


def test_adapter_probe_with_quarantine_off_names_host_and_device(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--pto-quarantine off: nsb's failing device cannot be set aside, so the round is
    device_unavailable at once, naming host nsb and device 1; nothing is quarantined."""
    pytester.makepyfile(probe_adapter=PROBE_ADAPTER)
    pytester.makepyfile(
        test_mh=textwrap.dedent(
            """
            import pytest

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_probe(pto_world):
                pto_world.run(print)
            """
        )
    )
    b = ns_cluster.hosts[1]
    mark = "/dev/shm/probe-bad-1"
    assert b.run("touch", mark).returncode == 0
    try:
        res = _run(
            pytester,
            ns_cluster,
            monkeypatch,
            "--pto-health-check=on",
            "--pto-quarantine=off",
            "--pto-runtime=probe_adapter:HostFileProbe",
            "--junitxml=j.xml",
            hosts="nsa:0-2 nsb:0-2",
        )
        res.assert_outcomes(failed=1)
        props = _props(pytester.path / "j.xml")["test_probe[round-1]"]
        assert props["pto.outcome"] == "device_unavailable"
        res.stdout.fnmatch_lines(
            [
                "*host nsb: device_unavailable: health probe failed (device 1: "
                f"{mark} exists on this host); --pto-quarantine is off*"
            ]
        )
        assert all(_quarantined(h, ns_cluster.lock_dir) == {} for h in ns_cluster.hosts)
    finally:
        b.run("rm", "-f", mark)
        _clear_quarantine(ns_cluster)


def test_retry_avoids_each_hosts_own_first_devices(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranks 0-1 on nsa (devices 0, 1), rank 2 on nsb (device 0), which fails its op with a
    poisoning code (quarantine off, so only the retry's avoid list moves it): the second
    attempt avoids nsa's 0 and 1 and nsb's 0 -- nsb takes its device 1, which a retry that
    avoided the ids 0 and 1 on every host would have left out."""
    pytester.makepyfile(
        test_mh="import os\nimport pytest\n"
        + DEVICE_WORK
        + textwrap.dedent(
            """
            @pytest.mark.pto(ranks=3, ranks_per_host=2,
                             rank_env={2: {"PTO_SIM_DEVICE_FAULTS": "0=507015@op"}})
            def test_retry(pto_world):
                pto_world.run(work)
            """
        )
    )
    res = _run(
        pytester,
        ns_cluster,
        monkeypatch,
        "--pto-quarantine=off",
        "--junitxml=j.xml",
        hosts="nsa:0-3 nsb:0-3",
    )
    res.assert_outcomes(passed=1)
    props = _props(pytester.path / "j.xml")["test_retry[round-1]"]
    assert props["pto.first_outcome"] == "device_error_code=507015"
    assert props["pto.first_devices"] == "0,1,0"
    assert props["pto.attempt"] == "2" and props["pto.outcome"] == "passed"
    assert props["pto.hosts"] == "nsa,nsa,nsb"
    assert props["pto.devices"] == "2,3,1"


WORLD_CONFIG_HOOK = """
import dataclasses
import json


def pytest_pto_world_config(item, config):
    with open({log!r}, "a") as f:
        f.write(json.dumps({{
            "test": item.name,
            "devices": list(config.devices),
            "hosts": list(config.hosts),
            "size": config.size,
            "master": config.env["MASTER_ADDR"],
        }}) + "\\n")
    if item.name.startswith("test_moves_devices"):
        return dataclasses.replace(config, devices=tuple(reversed(config.devices)))
    rank_env = {{r: dict(e) for r, e in config.rank_env.items()}}
    rank_env.setdefault(3, {{}})["HOOKED"] = f"rank 3 on {{config.hosts[3]}}"
    return dataclasses.replace(config, env={{**config.env, "HOOK_ALL": "yes"}}, rank_env=rank_env)
"""


def test_world_config_hook_sees_the_whole_world_and_shapes_each_hosts_slice(
    pytester: pytest.Pytester, ns_cluster: NsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook runs in pytest, once per round, with every rank's device and host; what it
    adds to the environment (all ranks, and rank 3 alone) reaches the ranks on their hosts;
    a hook that moves the devices is refused as on one machine."""
    log = pytester.path / "hook.jsonl"
    pytester.makeconftest(WORLD_CONFIG_HOOK.format(log=str(log)))
    pytester.makepyfile(
        test_mh=textwrap.dedent(
            """
            import os
            import pytest

            def env(chip):
                return [os.environ["PTO_HOST"], os.environ.get("HOOK_ALL"),
                        os.environ.get("HOOKED")]

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_shaped(pto_world):
                assert pto_world.run(env) == [
                    ["nsa", "yes", None], ["nsa", "yes", None],
                    ["nsb", "yes", None], ["nsb", "yes", "rank 3 on nsb"],
                ]

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_moves_devices(pto_world):
                pto_world.run(env)
            """
        )
    )
    res = _run(pytester, ns_cluster, monkeypatch, "--pto-rounds=2", hosts="nsa:0-1 nsb:0-1")
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines(
        ["*pytest_pto_world_config: devices must stay the leased (0, 1, 0, 1), got (1, 0, 1, 0)*"]
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    shaped = [c for c in calls if c["test"].startswith("test_shaped")]
    assert len(shaped) == 2  # once per round
    for call in shaped:
        assert call["devices"] == [0, 1, 0, 1] and call["size"] == 4
        assert call["hosts"] == ["nsa", "nsa", "nsb", "nsb"]
        assert call["master"] == ns_cluster.hosts[0].addr


def _hold(host: NsHost, lock_dir: Path, device: int) -> subprocess.Popen[str]:
    """A process inside ``host`` that holds ``device`` of the host's lock dir until killed."""
    code = (
        "import sys, time; from pathlib import Path; from pytest_pto.devices import DevicePool; "
        f"lease = DevicePool(({device},), Path({str(lock_dir)!r})).lease(1, 'holder::t', 10); "
        "print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        ["nsenter", "-t", str(host.pid), "-m", "-n", "--", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_pto_devices_shows_every_hosts_own_lock_dir(ns_cluster: NsCluster) -> None:
    """``pto-devices --launcher mpirun --hosts ...`` reads each host's lock dir on that host
    (through mpirun and the host agents): nsa's held device 1 and nsb's quarantined device 0,
    neither of which the controller's own lock dir path has; ``--release nsb:0`` releases
    it on nsb only."""
    a, b = ns_cluster.hosts
    quarantine = (
        "from pathlib import Path; from pytest_pto.devices import DevicePool; "
        f"DevicePool((0, 1), Path({str(ns_cluster.lock_dir)!r}), host='nsb')"
        ".quarantine(0, reason='device_error_code=507899', code=507899, test='t::x', round=3)"
    )
    assert b.run(sys.executable, "-c", quarantine).returncode == 0
    holder = _hold(a, ns_cluster.lock_dir, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
    env.update(ns_cluster.env())
    env["PTO_MPI_ARGS"] = (
        f"--mca plm_rsh_agent {RSH} --prtemca oob_tcp_if_include {ns_cluster.subnet}"
    )
    cli = [
        sys.executable,
        "-c",
        "from pytest_pto.cli import devices_main; exit(devices_main())",
        "--launcher=mpirun",
        "--hosts=nsa:0-1 nsb:0-1",
        f"--mpirun={MPIRUN}",
        f"--lock-dir={ns_cluster.lock_dir}",
    ]
    try:
        shown = subprocess.run(
            [*cli, "--json"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        by_host = {h["host"]: {d["device"]: d for d in h["devices"]} for h in data["hosts"]}
        assert list(by_host) == ["nsa", "nsb"]
        assert by_host["nsa"][0]["state"] == "free" and "quarantine" not in by_host["nsa"][0]
        assert by_host["nsa"][1]["state"] == "held" and by_host["nsa"][1]["test"] == "holder::t"
        assert by_host["nsb"][1]["state"] == "free"
        assert by_host["nsb"][0]["quarantine"]["code"] == 507899
        assert by_host["nsb"][0]["quarantine"]["host"] == "nsb"
        table = subprocess.run(
            cli, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert table.returncode == 0, table.stderr
        assert "host nsa: lock dir" in table.stdout and "host nsb: lock dir" in table.stdout
        assert "holder::t" in table.stdout and "device_error_code=507899" in table.stdout
        assert not (ns_cluster.lock_dir / "quarantine").exists()  # the controller's: untouched
        done = subprocess.run(
            [*cli, "--release=nsb:0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "host nsb: released device 0 (device_error_code=507899)" in done.stdout
        assert _quarantined(b, ns_cluster.lock_dir) == {}
        bad = subprocess.run(
            [*cli, "--release=nsc:0"], env=env, capture_output=True, text=True, check=False
        )
        assert bad.returncode == 2 and "no host 'nsc'" in bad.stderr
    finally:
        holder.kill()
        holder.wait()
        _clear_quarantine(ns_cluster)
    for host in ns_cluster.hosts:  # the agents of pto-devices are gone
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()}"


def test_pto_devices_tells_the_mpi_flavor_and_reads_every_host_under_mpich(
    ns_cluster: NsCluster,
) -> None:
    """``pto-devices --launcher mpirun`` with MPICH's hydra ``mpiexec``: the flavor is told
    from its ``--version`` as in pytest (an Open MPI command line would not start the agents),
    and both hosts' pools are read on their hosts."""
    why = missing_mpich()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"MPICH multi-host tests cannot run in CI: {why}")
        pytest.skip(why)
    opts = dict(o.split("=", 1) for o in ns_cluster.options(flavor="mpich"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
    env.update(ns_cluster.env())
    env["PTO_MPI_ARGS"] = opts["--pto-mpi-args"]
    cli = [
        sys.executable,
        "-c",
        "from pytest_pto.cli import devices_main; exit(devices_main())",
        "--launcher=mpirun",
        "--hosts=nsa:0-1 nsb:0-1",
        f"--mpirun={opts['--pto-mpirun']}",
        f"--lock-dir={ns_cluster.lock_dir}",
        "--json",
    ]
    shown = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [h["host"] for h in data["hosts"]] == ["nsa", "nsb"]
    for host in data["hosts"]:
        assert [d["device"] for d in host["devices"]] == [0, 1]
    for host in ns_cluster.hosts:
        assert wait_for(lambda h=host: not h.pids(), 30), f"{host.name}: {host.pids()}"
