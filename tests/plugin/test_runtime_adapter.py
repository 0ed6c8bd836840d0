"""The runtime adapter contract end to end: a team's own adapter (defined in the test project,
named ``module:attribute``) drives real chip workers through every method of the contract.

One inner session (a subprocess: ranks hang and are killed) runs several tests over two rounds;
the adapter writes what it saw to a JSON-lines file, which the outer test reads back next to
the JUnit file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests import leaks
from tests.plugin.conftest import junit_cases

ADAPTER = """
import json
import os
import threading
from pathlib import Path

from pytest_pto import Classified, RuntimeAdapter
from pytest_pto._libpto_adapter import LibptoAdapter


def note(**kw):
    with open(os.environ["ADAPTER_LOG"], "a") as f:
        f.write(json.dumps(kw) + "\\n")


class Runtime:
    def __init__(self, rank):
        self.rank = rank
        self.thread = threading.get_ident()


class MyAdapter(RuntimeAdapter):
    def preload(self):
        note(event="preload", pid=os.getpid(), cache_dir=str(self.cache_dir))

    def prepare(self, test):
        note(event="prepare", nodeid=test.nodeid, ranks=test.ranks, platform=test.platform,
             kwargs=sorted(test.marker_kwargs), pid=os.getpid())
        if test.marker_kwargs.get("env", {}).get("MYRT_PREPARE_FAIL"):
            raise RuntimeError("kernel compile failed")
        (self.cache_dir / "kernel.bin").write_text(test.nodeid)

    def worker_env(self, rank, size, device_id):
        if "test_bad_env" in os.environ.get("PYTEST_CURRENT_TEST", ""):
            return {"MYRT_WHO": 3}
        return {"MYRT_WHO": f"{rank}/{size}@{device_id}"}

    def init(self, chip):
        if chip.env.get("MYRT_FAIL_INIT") == str(chip.rank):
            raise RuntimeError("rtInit failed with code -9")
        note(event="init", rank=chip.rank, pid=os.getpid(),
             kernel=(self.cache_dir / "kernel.bin").read_text(),
             dump=chip.dump_state())
        return Runtime(chip.rank)

    def close(self, chip, runtime):
        note(event="close", rank=chip.rank, nodeid=chip.env.get("MYRT_TEST", ""),
             same_thread=runtime.thread == threading.get_ident())
        if chip.env.get("MYRT_FAIL_CLOSE") == str(chip.rank):
            raise RuntimeError("rtFinalize failed with code -3")

    def after_round(self, round):
        note(event="after_round", nodeid=round.nodeid, round=round.round, outcome=round.outcome,
             pids=list(round.pids), devices=list(round.devices),
             round_dir=str(round.round_dir), round_dir_exists=round.round_dir.is_dir())

    def classify(self, failure):
        note(event="classify", nodeid=failure.nodeid, rank=failure.rank, phase=failure.phase,
             kind=failure.kind, code=failure.code, exc_type=failure.exc_type,
             message=failure.message, log_has_diagnosis="DEVICE SAYS sub_class=S1" in failure.log,
             device_ids=list(failure.device_ids))
        if "test_invalid" in failure.nodeid:
            return "Not A Class!"
        if failure.phase == "close":
            return "runtime_close_failed"
        if failure.code is not None:
            return Classified(f"device_error_code={failure.code}", error_name="DEV_LOST",
                              detail="device said no")
        if failure.kind == "timeout":
            return "collective_timeout"
        return None


class CountingLibpto(LibptoAdapter):
    # libpto's adapter, subclassed: the workers load it by name and run its init/close

    def init(self, chip):
        runtime = super().init(chip)
        note(event="libpto_init", rank=chip.rank, runtime=type(runtime).__name__)
        return runtime
"""

CONFTEST = """
def pytest_pto_classify(failure):
    if "test_hooked" in failure.nodeid:
        return "hook_class=7"
    return None
"""

TESTS = """
import os
import sys
import threading
import time

import pytest

from pytest_pto import TestInfo  # not collected as a test class

MY = pytest.mark.pto(runtime="myrt:MyAdapter")
ENV_KEYS = ["PTO_RANK", "PTO_WORLD_SIZE", "PTO_DEVICE_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK",
            "MASTER_ADDR", "MASTER_PORT", "RANK_ID", "RANK_SIZE", "PTO_ROUND_DIR", "MYRT_WHO",
            "ASCEND_RT_VISIBLE_DEVICES"]


class DeviceError(RuntimeError):
    def __init__(self, message, code):  # does not rebuild from its args: arrives as text
        super().__init__(message)
        self.code = code


def look(chip):
    files = sorted(os.listdir(chip.round_dir))
    (chip.round_dir / f"rank{chip.rank}").write_text("x")
    return {
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "runtime_rank": chip.runtime.rank,
        "same_thread": chip.runtime.thread == threading.get_ident(),
        "device_ids": list(chip.device_ids),
        "local": chip.local_device_id,
        "round_dir": str(chip.round_dir),
        "comm": chip.comm is not None,
    }


def device_error(chip):
    if chip.rank == 1:
        os.write(2, b"[ERROR] DEVICE SAYS sub_class=S1 stuck task 3\\n")
        raise DeviceError("aclrtSynchronizeStream failed", 507018)
    return chip.rank


def stall(chip):
    if chip.rank == 0:
        time.sleep(60)


def plain_error(chip):
    if chip.rank == 0:
        raise DeviceError("still coded", 9)


def ok(chip):
    return chip.rank


@MY
def test_contract(pto_world, tmp_path_factory):
    results = pto_world.run(look)
    out = os.environ["RESULTS_DIR"]
    with open(os.path.join(out, f"contract-{pto_world.round}.json"), "w") as f:
        import json
        json.dump({"results": results, "devices": list(pto_world.devices)}, f)


@MY
def test_coded(pto_world):
    pto_world.run(device_error)


@pytest.mark.pto(runtime="myrt:MyAdapter", round_timeout=1)
def test_stall(pto_world):
    pto_world.run(stall)


@MY
def test_hooked(pto_world):
    pto_world.run(plain_error)


@MY
def test_invalid(pto_world):
    pto_world.run(plain_error)


@pytest.mark.pto(runtime="myrt:MyAdapter", rank_env={1: {"MYRT_FAIL_INIT": "1"}})
def test_init_fails(pto_world):
    pto_world.run(ok)


@pytest.mark.pto(runtime="myrt:MyAdapter", rank_env={0: {"MYRT_FAIL_CLOSE": "0"}})
def test_close_fails(pto_world):
    assert pto_world.run(ok) == [0, 1]


def pair(chip):
    return {
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "device_ids": list(chip.device_ids),
        "local": chip.local_device_id,
    }


@pytest.mark.pto(runtime="myrt:MyAdapter", env={"MYRT_PREPARE_FAIL": "1"})
def test_prepare_fails(pto_world):
    pto_world.run(ok)


@MY
def test_bad_env(pto_world):
    pto_world.run(ok)


def wait_forever(chip):
    graph = chip.runtime.graph()
    graph.wait(0, ">=", 1)  # nobody notifies: the scheduler latches SCHEDULER_TIMEOUT
    chip.runtime.run(graph)


@pytest.mark.pto(runtime="myrt:CountingLibpto", env={"PTO_SCHEDULER_TIMEOUT_MS": "300"})
def test_libpto_subclass(pto_world):
    pto_world.run(wait_forever)


@pytest.mark.pto(ranks=2, devices_per_rank=2)
def test_pairs(pto_world):
    got = pto_world.run(pair)
    out = os.environ["RESULTS_DIR"]
    with open(os.path.join(out, f"pairs-{pto_world.round}.json"), "w") as f:
        import json
        json.dump({"results": got, "devices": list(pto_world.devices),
                   "libpto": pto_world.run(runtime_type)}, f)


def runtime_type(chip):
    return type(chip.runtime).__name__
"""


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def contract_session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the inner session once for this module's tests; hand out its JUnit cases, the
    adapter's events, the ops' results and the output. Checks that it left nothing behind."""
    project = tmp_path_factory.mktemp("contract")
    (project / "myrt.py").write_text(textwrap.dedent(ADAPTER))
    (project / "test_contract.py").write_text(textwrap.dedent(TESTS))
    (project / "conftest.py").write_text(CONFTEST)
    results = project / "results"
    results.mkdir()
    log = project / "adapter.jsonl"
    logs = project / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTO_")}
    env.update(
        PTO_TEST_INNER="1",
        PTO_LOCK_DIR=str(project / "locks"),
        ADAPTER_LOG=str(log),
        RESULTS_DIR=str(results),
    )
    before_shm = leaks.shm_segments()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--junitxml=out.xml",
            "--pto-rounds=2",
            f"--pto-log-dir={logs}",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.communicate(timeout=300)[0]
    left = {n for n in leaks.shm_segments() - before_shm if n.split("-")[2] == str(proc.pid)}
    assert left == set()
    assert not list(Path(tempfile.gettempdir()).glob(f"pto-*-{proc.pid}-*"))
    assert log.exists() and (project / "out.xml").exists(), out
    return {
        "out": out,
        "cases": junit_cases(project / "out.xml"),
        "events": _events(log),
        "results": results,
        "logs": logs,
        "junit": project / "out.xml",
    }


def _props(s: dict[str, Any], name: str, rnd: int = 1) -> dict[str, str]:
    return s["cases"][f"{name}[round-{rnd}]"]["props"]  # type: ignore[no-any-return]


def _failure(s: dict[str, Any], name: str, rnd: int = 1) -> str:
    return str(s["cases"][f"{name}[round-{rnd}]"]["failure"])


def test_an_adapter_of_our_own_drives_every_round(contract_session: dict[str, Any]) -> None:
    s = contract_session
    ev = s["events"]
    by = lambda kind: [e for e in ev if e["event"] == kind]  # noqa: E731

    assert "cannot collect test class 'TestInfo'" not in s["out"]
    # preload: once, in the forking process (not pytest, not a rank)
    preloads = by("preload")
    assert len(preloads) == 1, s["out"]
    zygote = preloads[0]["pid"]
    assert zygote != os.getpid()
    assert preloads[0]["cache_dir"] != "None"
    # prepare: once per test (not per round), in the controller, with the marker and ranks
    prepares = by("prepare")
    names = [p["nodeid"].rsplit("::", 1)[1] for p in prepares]
    assert sorted(names) == sorted(set(names)), names  # once per test
    assert "test_contract" in names and "test_pairs" not in names  # libpto's test: not ours
    contract = next(p for p in prepares if p["nodeid"].endswith("::test_contract"))
    assert contract["ranks"] == 2 and contract["platform"] == "sim"
    assert contract["kwargs"] == ["runtime"]
    assert contract["pid"] not in (zygote,)
    # init: every rank of every round read what prepare put in the cache dir; a fresh
    # process per rank per round, none of them the forking process
    inits = [e for e in by("init") if e["kernel"].endswith("::test_contract")]
    assert len(inits) == 4 and {e["rank"] for e in inits} == {0, 1}
    assert len({e["pid"] for e in inits}) == 4 and zygote not in {e["pid"] for e in inits}
    # nothing of libpto's runtime in a foreign runtime's chip
    assert all(e["dump"] is None for e in by("init"))

    # ops see chip.runtime (init's return) on the thread that ran init; close on it too
    for rnd in (1, 2):
        data = json.loads((s["results"] / f"contract-{rnd}.json").read_text())
        results = data["results"]
        assert [r["runtime_rank"] for r in results] == [0, 1]
        assert all(r["same_thread"] and r["comm"] for r in results)
        # the worker environment (README: worker environment)
        for rank, r in enumerate(results):
            env = r["env"]
            dev = data["devices"][rank]
            assert (
                env["PTO_RANK"] == env["RANK"] == env["RANK_ID"] == env["LOCAL_RANK"] == str(rank)
            )
            assert env["PTO_WORLD_SIZE"] == env["WORLD_SIZE"] == env["RANK_SIZE"] == "2"
            assert env["PTO_DEVICE_ID"] == str(dev) and r["device_ids"] == [dev]
            assert r["local"] == dev  # sim binds nothing: the physical id is the local one
            assert env["ASCEND_RT_VISIBLE_DEVICES"] is None
            assert env["MYRT_WHO"] == f"{rank}/2@{dev}"
            assert env["MASTER_ADDR"] == "127.0.0.1"
            assert env["PTO_ROUND_DIR"] == r["round_dir"]
        assert results[0]["env"]["MASTER_PORT"] == results[1]["env"]["MASTER_PORT"]
        assert results[0]["round_dir"] == results[1]["round_dir"]
    ports = [
        json.loads((s["results"] / f"contract-{k}.json").read_text())["results"][0]["env"][
            "MASTER_PORT"
        ]
        for k in (1, 2)
    ]
    assert ports[0] != ports[1] and all(1024 <= int(p) <= 65535 for p in ports)
    closes = [e for e in by("close") if e["rank"] in (0, 1)]
    assert closes and all(e["same_thread"] for e in closes)

    # after_round: after every round of our tests, the killed ones too, with the round's
    # pids, devices, outcome; the round dir still there, removed after
    afters = {(e["nodeid"].rsplit("::", 1)[1], e["round"]): e for e in by("after_round")}
    for name in ("test_contract", "test_coded", "test_stall", "test_init_fails"):
        for rnd in (1, 2):
            assert (f"{name}[round-{rnd}]", rnd) in afters, (name, rnd, list(afters))
    stall = afters[("test_stall[round-1]", 1)]
    assert stall["outcome"] == "collective_timeout" and len(stall["pids"]) == 2
    assert len(stall["devices"]) == 2 and stall["round_dir_exists"]
    assert not Path(stall["round_dir"]).exists()
    assert afters[("test_contract[round-2]", 2)]["outcome"] == "passed"
    init_failed = afters[("test_init_fails[round-1]", 1)]  # a failed start: its ranks' pids
    assert init_failed["outcome"] == "init_failed" and len(init_failed["pids"]) == 2
    for name in ("test_contract", "test_coded"):
        assert _props(s, name)["pto.outcome"] in ("passed", "device_error_code=507018")


def test_classification_reaches_junit_and_the_headline(contract_session: dict[str, Any]) -> None:
    s = contract_session
    ev = [e for e in s["events"] if e["event"] == "classify"]

    # an exception with code=507018 that does not even pickle: code, type and log reach
    # classify; its class, code and name reach JUnit and the headline
    coded = [e for e in ev if "test_coded" in e["nodeid"]]
    assert coded and coded[0]["rank"] == 1 and coded[0]["phase"] == "op"
    assert coded[0]["kind"] == "exception" and coded[0]["code"] == 507018
    assert coded[0]["exc_type"] == "test_contract.DeviceError"
    assert coded[0]["message"] == "aclrtSynchronizeStream failed"
    assert coded[0]["log_has_diagnosis"] and len(coded[0]["device_ids"]) == 1
    for rnd in (1, 2):
        p = _props(s, "test_coded", rnd)
        assert p["pto.outcome"] == "device_error_code=507018"
        assert (p["pto.error_code"], p["pto.error_name"], p["pto.failed_rank"]) == (
            "507018",
            "DEV_LOST",
            "1",
        )
        head = _failure(s, "test_coded", rnd)
        assert head.startswith("device_error_code=507018: rank 1: "), head
        assert "(device said no)" in head
    assert "device_error_code=507018" in s["out"]  # the terminal summary table too

    # a hang the watchdog killed is still offered, as a timeout
    stall = [e for e in ev if "test_stall" in e["nodeid"]]
    assert stall and stall[0]["kind"] == "timeout" and stall[0]["rank"] == 0
    p = _props(s, "test_stall")
    assert (p["pto.outcome"], p["pto.failed_rank"]) == ("collective_timeout", "0")
    assert "pto.error_code" not in p

    # the conftest hook is asked first and wins
    p = _props(s, "test_hooked")
    assert (p["pto.outcome"], p["pto.error_code"]) == ("hook_class=7", "7")
    assert not [e for e in ev if "test_hooked" in e["nodeid"]]

    # an invalid class is a failed round naming the adapter and the rule
    p = _props(s, "test_invalid")
    assert p["pto.outcome"] == "failed" and p["pto.failed_rank"] == "0"
    head = _failure(s, "test_invalid")
    assert "runtime adapter 'myrt:MyAdapter'" in head and "'Not A Class!'" in head, head
    assert "not an outcome class" in head

    # init raising: init_failed naming the rank (the adapter had no class for it)
    init = [e for e in ev if "test_init_fails" in e["nodeid"]]
    assert init and init[0]["phase"] == "init" and init[0]["kind"] == "exception"
    assert init[0]["exc_type"] == "builtins.RuntimeError" and init[0]["code"] is None
    p = _props(s, "test_init_fails")
    assert (p["pto.outcome"], p["pto.failed_rank"]) == ("init_failed", "1")
    assert "rtInit failed with code -9" in _failure(s, "test_init_fails")

    # prepare raising: every round of the test fails, prepare is not retried
    prepares = [
        e for e in s["events"] if e["event"] == "prepare" and "test_prepare_fails" in e["nodeid"]
    ]
    assert len(prepares) == 1
    for rnd in (1, 2):
        assert _props(s, "test_prepare_fails", rnd)["pto.outcome"] == "failed"
        head = _failure(s, "test_prepare_fails", rnd)
        assert (
            "runtime adapter 'myrt:MyAdapter': prepare(test_contract.py::test_prepare_fails)"
            in (head)
            and "kernel compile failed" in head
        ), head

    # worker_env returning a non-str value: the round fails naming the adapter
    head = _failure(s, "test_bad_env")
    assert "runtime adapter 'myrt:MyAdapter': worker_env(rank=0, ...) returned" in head, head

    # libpto's adapter, subclassed and loaded by name in the workers: its init made the
    # runtime, its classify the scheduler's class
    inits = [e for e in s["events"] if e["event"] == "libpto_init"]
    assert len(inits) == 4 and {e["runtime"] for e in inits} == {"Runtime"}
    p = _props(s, "test_libpto_subclass")
    assert (p["pto.outcome"], p["pto.error_code"], p["pto.error_name"]) == (
        "sched_error_code=100",
        "100",
        "SCHEDULER_TIMEOUT",
    )

    # close raising: reported with phase close, in the round (not its teardown)
    close = [e for e in ev if "test_close_fails" in e["nodeid"]]
    assert close and close[0]["phase"] == "close" and close[0]["rank"] == 0
    assert "rtFinalize failed with code -3" in close[0]["message"]
    p = _props(s, "test_close_fails")
    assert (p["pto.outcome"], p["pto.failed_rank"]) == ("runtime_close_failed", "0")
    assert "closing its runtime failed" in _failure(s, "test_close_fails")


def test_adapter_classes_reach_pto_report(
    contract_session: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_pto.report._cli import EXIT_OK, main

    assert main(["--format", "json", str(contract_session["junit"])]) == EXIT_OK
    rows = {r["test"].rsplit("::", 1)[1]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["test_coded"]["outcomes"] == {"device_error_code=507018": 2}
    assert rows["test_stall"]["outcomes"] == {"collective_timeout": 2}
    assert rows["test_hooked"]["outcomes"] == {"hook_class=7": 2}
    assert main([str(contract_session["junit"])]) == EXIT_OK
    header = capsys.readouterr().out.splitlines()[0]
    assert "device_error_code=507018" in header and "collective_timeout" in header
    # and GitHub annotations, from the records read back
    from pytest_pto.report._github import failure_annotations
    from pytest_pto.report._junit_read import read_junit

    records = [r for r in read_junit(contract_session["junit"]).records if "coded" in r.test]
    lines = failure_annotations(records)
    assert len(lines) == 2 and all(
        "title=pto device_error_code=507018%2C rank 1%2C round" in line for line in lines
    ), lines


def test_a_foreign_runtime_shows_nothing_of_libpto(contract_session: dict[str, Any]) -> None:
    s = contract_session
    libpto_tests = ("test_pairs", "test_libpto_subclass")
    ours = [p for p in s["logs"].rglob("*.log") if not any(t in str(p) for t in libpto_tests)]
    assert ours
    for path in ours:
        text = path.read_text()
        assert "pto[rank" not in text and "runtime state" not in text, path
    # the check can fail: libpto's runtime does speak in its own rounds' logs
    libpto_logs = [p for p in s["logs"].rglob("*.log") if "test_libpto_subclass" in str(p)]
    assert any("pto[rank" in p.read_text() for p in libpto_logs)
    stall = s["cases"]["test_stall[round-1]"]["text"]
    assert "rank 0" in str(stall) and "runtime state" not in str(stall)
    assert "pto[rank" not in str(stall)


def test_devices_per_rank_leases_disjoint_groups(contract_session: dict[str, Any]) -> None:
    s = contract_session
    assert _props(s, "test_pairs")["pto.outcome"] == "passed", s["out"]
    data = json.loads((s["results"] / "pairs-1.json").read_text())
    devices = data["devices"]
    assert len(devices) == 4 == len(set(devices))
    groups = [r["device_ids"] for r in data["results"]]
    assert groups == [devices[0:2], devices[2:4]]
    for r, group in zip(data["results"], groups, strict=True):
        assert r["env"]["PTO_DEVICE_ID"] == str(group[0]) and r["local"] == group[0]
    assert data["libpto"] == ["Runtime", "Runtime"]  # the default runtime is still libpto's
    assert _props(s, "test_pairs")["pto.devices"] == ",".join(map(str, devices))


PRELOAD_THREAD = """
import threading
import time

from pytest_pto import RuntimeAdapter


class Threaded(RuntimeAdapter):
    def preload(self):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
"""


def test_preload_that_starts_a_thread_stops_the_session(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(
        threaded=PRELOAD_THREAD,
        test_one="def op(chip):\n    return 1\n\n\ndef test_one(pto_world):\n"
        "    pto_world.run(op)\n\n\ndef test_two(pto_world):\n    pto_world.run(op)\n",
    )
    result = ptester.runpytest_subprocess("--pto-runtime=threaded:Threaded", timeout=120)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "pytest-pto: runtime adapter threaded:Threaded: preload() left 1 thread" in out
    assert "must not start threads" in out
    assert " passed" not in out  # the session stopped at its first round


def test_unknown_runtime_names_are_usage_and_collection_errors(
    ptester: pytest.Pytester,
) -> None:
    ptester.makepyfile(test_x="def test_x(pto_world):\n    pass\n")
    result = ptester.runpytest_subprocess("--pto-runtime=nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "--pto-runtime=nosuch: unknown runtime 'nosuch'" in err
    assert "known runtimes: libpto, torch" in err and "module:attribute" in err

    result = ptester.runpytest_subprocess("--pto-runtime=nomod:Adapter")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot load the adapter: ModuleNotFoundError" in result.stderr.str()

    ptester.makepyfile(
        test_x="import pytest\n\n@pytest.mark.pto(runtime='nosuch')\ndef test_x(pto_world):\n"
        "    pass\n"
    )
    result = ptester.runpytest_subprocess()
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out  # a collection error
    assert "test_x.py::test_x: @pytest.mark.pto(runtime='nosuch'): unknown runtime" in out


ENTRY_POINT_ADAPTER = """
import os
from pytest_pto import RuntimeAdapter


class Registered(RuntimeAdapter):
    def init(self, chip):
        return "registered-" + str(chip.rank)
"""


def test_a_runtime_registered_by_another_package(
    ptester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    dist = site / "vendor_rt-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vendor-rt\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest_pto.runtimes]\nvendor = vendor_rt_adapter:Registered\n"
    )
    (site / "vendor_rt_adapter.py").write_text(ENTRY_POINT_ADAPTER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *sys.path]))
    ptester.makepyfile(
        test_ep="def op(chip):\n    return chip.runtime\n\n\ndef test_ep(pto_world):\n"
        "    assert pto_world.run(op) == ['registered-0', 'registered-1']\n"
    )
    result = ptester.runpytest_subprocess("--pto-runtime=vendor")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)
    # and the registry lists it among the known names
    result = ptester.runpytest_subprocess("--pto-runtime=nosuch")
    assert "known runtimes: libpto, torch, vendor" in result.stderr.str()


def test_ascend_platform_binds_each_rank(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--pto-platform ascend` used to fail every round (WorldConfig rejected the platform);
    now each rank is bound with ASCEND_RT_VISIBLE_DEVICES and opens local device 0."""
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,5,6,7")
    ptester.makepyfile(
        test_npu="""
import os


def bound(chip):
    return (os.environ["ASCEND_RT_VISIBLE_DEVICES"], chip.device_id, chip.local_device_id)


def test_npu(pto_world):
    got = pto_world.run(bound)
    assert got == [(str(d), d, 0) for d in pto_world.devices]
    assert set(pto_world.devices) <= {4, 5, 6, 7}
"""
    )
    result = ptester.runpytest_subprocess("--pto-platform=ascend")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def test_registry_names_the_torch_extra_when_torch_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without PyTorch, ``torch`` is a usage error that names the extra to install. The
    absence is made real for this process with an import blocker on ``sys.meta_path`` (the
    mechanism that decides what is importable), since CI installs torch."""
    from pytest_pto._registry import RuntimeResolveError, resolve_runtime

    class BlockTorch:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> None:
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BlockTorch(), *sys.meta_path])
    with pytest.raises(RuntimeResolveError, match=r"pip install 'pytest-pto\[torch\]'"):
        resolve_runtime("torch")


def test_registry_rejects_what_is_not_an_adapter() -> None:
    from pytest_pto._registry import RuntimeResolveError, known_runtimes, resolve_runtime

    assert known_runtimes()[:2] == ["libpto", "torch"]
    ref = resolve_runtime("libpto")
    assert ref.spec == "pytest_pto._libpto_adapter:LibptoAdapter"
    with pytest.raises(RuntimeResolveError, match=r"not a subclass of pytest_pto\.RuntimeAdapter"):
        resolve_runtime("os:getcwd")
    with pytest.raises(RuntimeResolveError, match="has no attribute 'Nope'"):
        resolve_runtime("pytest_pto:Nope")
    with pytest.raises(RuntimeResolveError, match="not module:attribute"):
        resolve_runtime("a b:c")


def test_a_variant_may_choose_the_runtime(tmp_path: Path) -> None:
    from pytest_pto._variants import VariantError, load_variants

    good = tmp_path / "good.yaml"
    good.write_text("a:\n  runtime: libpto\nb: {}\n")
    variants = load_variants(good)
    assert variants["a"].runtime == "libpto" and variants["b"].runtime is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("a:\n  runtime: nosuch\n")
    with pytest.raises(VariantError, match=r"variant 'a': key 'runtime': unknown runtime"):
        load_variants(bad)
