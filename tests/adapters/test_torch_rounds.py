"""``--pto-runtime=torch`` end to end: real gloo process groups in real chip workers.

Each inner session runs in a subprocess (ranks are killed in the failing cases) with its own
lock dir; results cross back through files and JUnit XML.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.conftest import junit_cases

pytest.importorskip("torch")  # never skipped in CI: the root conftest fails a CI run without it

ROUNDS_TEST = """
import json, os
import pytest
import torch
import torch.distributed as dist


def allreduce_op(chip, rnd):
    t = torch.tensor([float(chip.rank + 1)] * 4)
    dist.all_reduce(t)
    store = chip.runtime.store
    earlier = [r for r in range(1, rnd) if store.check([f"round-{r}"])]
    dist.barrier()
    if chip.rank == 0:
        store.set(f"round-{rnd}", "seen")
    return {
        "sum": t.tolist(),
        "dist_rank": dist.get_rank(),
        "world": dist.get_world_size(),
        "port": os.environ["MASTER_PORT"],
        "pid": os.getpid(),
        "earlier_rounds_in_store": earlier,
        "backend": chip.runtime.backend,
        "device": str(chip.runtime.device),
        "timeout_s": chip.runtime.timeout.total_seconds(),
        "store": chip.runtime.store_address,
    }


@pytest.mark.pto(ranks=2, runtime="torch")
def test_allreduce(pto_world):
    results = pto_world.run(allreduce_op, pto_world.round)
    with open("results.jsonl", "a") as f:
        f.write(json.dumps({"round": pto_world.round, "ranks": results}) + "\\n")
    assert [r["sum"] for r in results] == [[3.0] * 4, [3.0] * 4]
"""


def test_allreduce_rounds_are_isolated(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_rounds=ROUNDS_TEST)
    result = ptester.runpytest_subprocess("--pto-rounds=3", "--pto-round-timeout=50", "-q")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*3 passed*"])
    rounds = [
        json.loads(line) for line in (ptester.path / "results.jsonl").read_text().splitlines()
    ]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    ports, pids = set(), set()
    for entry in rounds:
        r0, r1 = entry["ranks"]
        assert (r0["dist_rank"], r1["dist_rank"]) == (0, 1)
        assert r0["world"] == r1["world"] == 2
        assert r0["port"] == r1["port"]  # one rendezvous per round
        assert r0["store"] == f"tcp://127.0.0.1:{r0['port']}"
        ports.add(r0["port"])
        pids.update((r0["pid"], r1["pid"]))
        # a fresh group and store per round: nothing of an earlier round is in it
        assert r0["earlier_rounds_in_store"] == r1["earlier_rounds_in_store"] == []
        assert (r0["backend"], r0["device"]) == ("gloo", "cpu")
        assert r0["timeout_s"] == pytest.approx(0.8 * 50)  # from the round timeout
    assert len(ports) == 3, "every round gets its own free MASTER_PORT"
    assert len(pids) == 6, "every round gets fresh rank processes"


FAILING_TEST = """
import datetime
import pytest
import torch
import torch.distributed as dist


def skip_collective(chip):
    group = dist.new_group(timeout=datetime.timedelta(seconds=0.5))
    if chip.rank == 0:  # rank 1 never joins this all_reduce
        dist.all_reduce(torch.ones(4), group=group)


def store_get(chip):
    if chip.rank == 0:
        chip.runtime.store.set_timeout(datetime.timedelta(seconds=0.3))
        chip.runtime.store.get("nobody-sets-this")


@pytest.mark.pto(ranks=2, runtime="torch")
def test_skip_collective(pto_world):
    pto_world.run(skip_collective)


@pytest.mark.pto(ranks=2, runtime="torch")
def test_store_get(pto_world):
    pto_world.run(store_get)


@pytest.mark.pto(ranks=2, runtime="torch")
def test_ok(pto_world):
    pto_world.run(_noop)


def _noop(chip):
    return None
"""


def test_torch_failure_classes_reach_junit(ptester: pytest.Pytester) -> None:
    ptester.makepyfile(test_fail=FAILING_TEST)
    result = ptester.runpytest_subprocess("--junitxml=junit.xml", "-q")
    assert result.ret == 1, result.stdout.str()
    cases = junit_cases(ptester.path / "junit.xml")
    skip = cases["test_skip_collective[round-1]"]
    assert skip["props"]["pto.outcome"] == "collective_timeout", skip
    assert skip["props"]["pto.error_name"] == "ALL_REDUCE"
    assert skip["props"]["pto.failed_rank"] == "0"
    assert str(skip["failure"]).startswith("collective_timeout: rank 0"), skip["failure"]
    assert "Timed out waiting 500ms for recv operation" in str(skip["failure"])
    store = cases["test_store_get[round-1]"]
    assert store["props"]["pto.outcome"] == "store_timeout", store
    assert "keys: /nobody-sets-this" in str(store["failure"])
    assert cases["test_ok[round-1]"]["props"]["pto.outcome"] == "passed"


RENDEZVOUS_CONFTEST = """
import dataclasses, socket

HOLDER = socket.socket()
HOLDER.bind(("127.0.0.1", 0))
HOLDER.listen()  # someone else's server on the round's port


def pytest_pto_world_config(item, config):
    port = str(HOLDER.getsockname()[1])
    return dataclasses.replace(config, env={**config.env, "MASTER_PORT": port})
"""

RENDEZVOUS_TEST = """
import pytest


def noop(chip):
    return None


@pytest.mark.pto(ranks=2, runtime="torch")
def test_port_taken(pto_world):
    pto_world.run(noop)
"""


def test_rendezvous_failure_is_its_own_class(ptester: pytest.Pytester) -> None:
    ptester.makeconftest(RENDEZVOUS_CONFTEST)
    ptester.makepyfile(test_rdv=RENDEZVOUS_TEST)
    result = ptester.runpytest_subprocess("--junitxml=junit.xml", "-q")
    assert result.ret == 1, result.stdout.str()
    case = junit_cases(ptester.path / "junit.xml")["test_port_taken[round-1]"]
    assert case["props"]["pto.outcome"] == "rendezvous_failed", case
    assert case["props"]["pto.error_name"] == "EADDRINUSE"
    assert case["props"]["pto.failed_rank"] == "0"


BACKEND_TEST = """
import pytest
import torch.distributed as dist


def backend(chip):
    return dist.get_backend()


@pytest.mark.pto(ranks=2, runtime="torch")
def test_backend(pto_world):
    assert pto_world.run(backend) == ["gloo", "gloo"]
"""


def test_backend_setting_order_and_unavailable_backend(
    ptester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    ptester.makepyfile(test_backend=BACKEND_TEST)
    ptester.makeini("[pytest]\npto_torch_backend = gloo\n")
    monkeypatch.setenv("PTO_TORCH_BACKEND", "nccl")  # env over ini, command line over env
    assert ptester.runpytest_subprocess("-q", "--pto-torch-backend=gloo").ret == 0
    result = ptester.runpytest_subprocess("-q", "--junitxml=junit.xml")
    assert result.ret == 1, result.stdout.str()
    case = junit_cases(ptester.path / "junit.xml")["test_backend[round-1]"]
    assert case["props"]["pto.outcome"] == "backend_unavailable=nccl", case
    assert "'nccl' is not available in this torch build" in str(case["failure"])
    bad = ptester.runpytest("-q", "--pto-torch-backend=nc cl")  # configure: no rank starts
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--pto-torch-backend=nc cl: must be a backend name" in bad.stderr.str()


def test_the_example_runs(ptester: pytest.Pytester) -> None:
    example = Path(__file__).parents[2] / "examples" / "test_torch_allreduce.py"
    ptester.makepyfile(test_torch_allreduce=example.read_text())
    result = ptester.runpytest_subprocess("-q", "--pto-rounds=2")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*2 passed*"])
