"""Host lists, rank placement and the launcher options (no namespaces needed)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from libpto._hosts import Host, HostsError, parse_hosts, place
from pytest_pto._settings import OPTIONS, parse_devices

SIM = tuple(range(8))


def test_host_list_with_devices_and_defaults() -> None:
    hosts = parse_hosts("a:0-3 b:4,6;c", SIM, parse_devices)
    assert hosts == (Host("a", (0, 1, 2, 3)), Host("b", (4, 6)), Host("c", SIM))


def test_mpi_hostfile(tmp_path: Path) -> None:
    path = tmp_path / "hostfile"
    path.write_text("# cluster\nnode1 slots=2\nnode2 slots=3 max_slots=3\n")
    assert parse_hosts(str(path), SIM, parse_devices) == (
        Host("node1", (0, 1)),
        Host("node2", (0, 1, 2)),
    )


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("a:0-3 a:0-1", "named twice"),
        ("a:x", "host a: devices 'x'"),
        ("bad/name", "not a host name"),
        ("  ", "empty host list"),
    ],
)
def test_bad_host_lists_name_the_rule(text: str, rule: str) -> None:
    with pytest.raises(HostsError, match=rule):
        parse_hosts(text, SIM, parse_devices)


def test_mpich_machinefile(tmp_path: Path) -> None:
    """MPICH's hydra machinefile form, ``host:N``, beside Open MPI's ``host slots=N``."""
    path = tmp_path / "hostfile"
    path.write_text("node1:2\n# x\nnode2 slots=3\n")
    assert parse_hosts(str(path), SIM, parse_devices) == (
        Host("node1", (0, 1)),
        Host("node2", (0, 1, 2)),
    )
    path.write_text("node1:0\n")
    with pytest.raises(HostsError, match=r"hostfile:1: 'node1:0': expected host:N"):
        parse_hosts(str(path), SIM, parse_devices)


def test_bad_hostfile_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "hostfile"
    path.write_text("node1 slots=two\n")
    with pytest.raises(HostsError, match=r"hostfile:1: 'slots=two'"):
        parse_hosts(str(path), SIM, parse_devices)


def test_placement_fills_hosts_in_order() -> None:
    hosts = [Host("a", (0, 1, 2)), Host("b", (0, 1, 2, 3))]
    assert place(4, hosts) == [0, 0, 0, 1]
    assert place(2, hosts) == [0, 0]
    assert place(3, hosts, devices_per_rank=2) == [0, 1, 1]
    with pytest.raises(HostsError, match="do not fit"):
        place(8, hosts)


def test_placement_with_ranks_per_host() -> None:
    hosts = [Host("a", (0, 1, 2, 3)), Host("b", (0, 1, 2, 3))]
    assert place(4, hosts, ranks_per_host=2) == [0, 0, 1, 1]
    assert place(3, hosts, ranks_per_host=2) == [0, 0, 1]
    with pytest.raises(HostsError, match="need 3 hosts"):
        place(5, hosts, ranks_per_host=2)
    with pytest.raises(HostsError, match="host a: 3 ranks x 2 devices"):
        place(3, hosts, devices_per_rank=2, ranks_per_host=3)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PTO_TEST_INNER", "1")
    for opt in OPTIONS:
        if opt.env:
            monkeypatch.delenv(opt.env, raising=False)
    monkeypatch.setenv("PTO_LOCK_DIR", str(pytester.path / "locks"))
    pytester.makepyfile(
        test_x=textwrap.dedent(
            """
            import pytest

            @pytest.mark.pto(ranks=4, ranks_per_host=2)
            def test_x(pto_world):
                pass
            """
        )
    )
    return pytester


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--pto-launcher=ssh"], {}, "--pto-launcher=ssh: must be 'local' or 'mpirun'"),
        (["--pto-launcher=mpirun"], {}, "--pto-launcher=mpirun: needs --pto-hosts"),
        ([], {"PTO_LAUNCHER": "mpirun"}, "environment PTO_LAUNCHER=mpirun: needs --pto-hosts"),
        (
            ["--pto-launcher=mpirun", "--pto-hosts=a:0-1 a:2-3"],
            {},
            "--pto-hosts=a:0-1 a:2-3: a host is named twice",
        ),
        (
            ["--pto-launcher=mpirun", "--pto-hosts=a:0-1", "--pto-mpirun=/nonexistent/mpirun"],
            {},
            "--pto-mpirun=/nonexistent/mpirun: not an executable program",
        ),
        (["--pto-mpi-args=--mca 'x"], {}, "--pto-mpi-args=--mca 'x: not a shell-quoted"),
        (
            ["--pto-mpi-flavor=lam"],
            {},
            "--pto-mpi-flavor=lam: must be 'auto', 'openmpi', 'mpich'",
        ),
        (  # a real program whose --version names no MPI: the flavor cannot be told
            ["--pto-launcher=mpirun", "--pto-hosts=a:0-1", "--pto-mpirun=/bin/true"],
            {},
            "--pto-mpirun=/bin/true: cannot tell the MPI flavor of /bin/true: its --version "
            "(exit 0) printed 'true (GNU coreutils)",
        ),
    ],
)
def test_bad_launcher_settings_are_usage_errors(
    inner: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    res = inner.runpytest_subprocess(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str() + res.stdout.str()


def test_placement_that_cannot_fit_is_a_collection_error_naming_the_test(
    inner: pytest.Pytester,
) -> None:
    mpirun = Path(sys.executable).parent / "mpirun"
    if not mpirun.exists():
        mpirun = Path("/bin/true")
    res = inner.runpytest_subprocess(
        "--pto-launcher=mpirun",
        "--pto-hosts=a:0-3",
        f"--pto-mpirun={mpirun}",
        "--pto-mpi-flavor=openmpi",  # /bin/true, when there is no mpirun, names no flavor
    )
    assert res.ret == pytest.ExitCode.INTERRUPTED
    res.stdout.fnmatch_lines(
        [
            "*test_x.py::test_x: @pytest.mark.pto: ranks=4 on --pto-hosts: 4 ranks at "
            "ranks_per_host=2 need 2 hosts, --pto-hosts has 1*"
        ]
    )


def test_ini_form(inner: pytest.Pytester) -> None:
    inner.makeini("[pytest]\npto_launcher = mpirun\n")
    res = inner.runpytest_subprocess()
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini pto_launcher = mpirun in tox.ini: needs --pto-hosts" in res.stderr.str()


def test_flavor_is_told_by_version_and_commands_differ() -> None:
    """The real mpirun of each installed MPI names its flavor; each flavor's command places
    one agent per host in host order and passes the variables in its own dialect."""
    from pytest_pto._mpi_flavor import detect, launch_command
    from tests.multihost.nshosts import MPICH_MPIEXEC, MPIRUN

    if MPIRUN.exists():
        assert detect(str(MPIRUN)) == "openmpi"
    if MPICH_MPIEXEC.exists():
        assert detect(str(MPICH_MPIEXEC)) == "mpich"
    prog = ["py", "-m", "agent"]
    assert launch_command(
        "openmpi",
        "mpirun",
        ["a", "b"],
        env_names=["X", "Y"],
        mpi_args=["--mca", "k", "v"],
        program=prog,
        as_root=True,
    ) == [
        *("mpirun", "--allow-run-as-root", "-np", "2", "--host", "a:1,b:1"),
        *("-x", "X", "-x", "Y", "--mca", "k", "v", *prog),
    ]
    assert launch_command(
        "mpich",
        "mpiexec",
        ["a", "b"],
        env_names=["X", "Y"],
        mpi_args=["-iface", "e"],
        program=prog,
        as_root=True,
    ) == [*("mpiexec", "-np", "2", "-hosts", "a:1,b:1", "-genvlist", "X,Y", "-iface", "e", *prog)]
