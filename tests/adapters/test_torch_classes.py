"""The torch adapter's failure classes, on what torch 2.13 really prints.

The gloo and store messages are produced here by real failures with real gloo
(``_torch_failures.py`` forks ranks that skip a collective, die mid-collective, never join,
...); the NCCL and HCCL messages cannot be produced without cards, so their tests use the text
ProcessGroupNCCL and torch_npu print, quoted from real reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_pto import Classified, RankFailure
from pytest_pto._torch_adapter import TorchAdapter, default_backend
from pytest_pto._torch_classify import classify_torch_failure

pytest.importorskip("torch")  # never skipped in CI: the root conftest fails a CI run without it

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def real_failures() -> dict[str, dict[str, Any]]:
    """Every scenario of _torch_failures.py, run once: scenario -> its failed rank's record."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "_torch_failures.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        out.setdefault(record["scenario"], record)
    return out


def _failure(record: dict[str, Any], log: str = "") -> RankFailure:
    return RankFailure(
        rank=record["rank"],
        phase=record["phase"],
        kind="exception",
        exc_type=record["exc_type"],
        message=record["message"],
        log=log or record["traceback"],
    )


@pytest.mark.parametrize(
    "case",
    [
        (
            "skip_collective",
            "op",
            "collective_timeout",
            "ALL_REDUCE",
            "Timed out waiting 1000ms for recv",
        ),
        ("peer_dies", "op", "gloo_error", "PEER_CLOSED", "by peer"),
        ("peer_never_joins", "init", "rendezvous_failed", "PEERS_MISSING", "1/2 clients joined"),
        ("store_unreachable", "init", "rendezvous_failed", "STORE_UNREACHABLE", "connect to"),
        ("port_taken", "init", "rendezvous_failed", "EADDRINUSE", "EADDRINUSE"),
        ("store_get_timeout", "op", "store_timeout", None, "keys: /never-set"),
        ("file_store_timeout", "op", "store_timeout", None, "never-set"),
        ("no_backend", "init", "backend_unavailable=nccl", None, "NCCL built in"),
    ],
)
def test_real_gloo_and_store_failures_are_classified(
    real_failures: dict[str, dict[str, Any]], case: tuple[str, str, str, str | None, str]
) -> None:
    """case: scenario, phase it fails in, outcome, error_name, a piece of the detail."""
    scenario, phase, outcome, error_name, detail_has = case
    record = real_failures[scenario]
    assert record["phase"] == phase, record
    verdict = classify_torch_failure(_failure(record))
    assert isinstance(verdict, Classified), record["message"]
    assert verdict.outcome == outcome, record["message"]
    assert verdict.error_name == error_name, record["message"]
    assert detail_has in (verdict.detail or ""), verdict


def test_unrecognised_errors_and_killed_ranks_fall_back(
    real_failures: dict[str, dict[str, Any]],
) -> None:
    plain = RankFailure(rank=0, phase="op", kind="exception", message="assert 1 == 2")
    assert classify_torch_failure(plain) is None
    init = RankFailure(rank=0, phase="init", kind="exception", message="CUDA out of memory")
    assert classify_torch_failure(init) is None  # init_failed, not a made-up rendezvous class
    # a rank killed by the watchdog whose log holds a gloo timeout is still a hang / crash:
    # only NCCL/HCCL watchdog diagnoses count for a killed rank
    log = real_failures["skip_collective"]["message"]
    killed = RankFailure(rank=0, phase="op", kind="timeout", message="hang", log=log)
    assert classify_torch_failure(killed) is None


NCCL_SYSTEM = (
    "NCCL error in: /opt/pytorch/pytorch/torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1275, "
    "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.18.1\n"
    "ncclSystemError: System call (e.g. socket, malloc) or external library call failed or "
    "device error."
)
NCCL_OLD = "NCCL error in: /pytorch/torch/lib/c10d/ProcessGroupNCCL.cpp:825, unhandled cuda error"
NCCL_WATCHDOG = (
    "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, "
    "OpType=ALLREDUCE, NumelIn=4, NumelOut=4, Timeout(ms)=600000) ran for 600018 milliseconds "
    "before timing out."
)
HCCL_SOCKET = (
    "InnerRunOpApi:torch_npu/csrc/framework/OpParamMaker.cpp:281 OPS function error: "
    "HcclAllreduce, error code is 6\n"
    "[ERROR] 2025-04-08-18:07:20 (PID:1292363, Device:1, RankID:1) ERR01100 OPS call acl api "
    "failed.\n"
    "EI0006: [PID: 1292363] 2025-04-08-18:07:20.444.436 Getting socket times out. Reason: "
    "Remote Rank did not send the data in time."
)
HCCL_NAMED = (
    "[PID: 749] 2025-12-29-03:16:15.787.356 Get_Socket_Timeout(EI0006): Getting socket times "
    "out. Reason: 1. The remote does not initiate a connect request."
)
HCCL_RESULT_ONLY = "HCCL function error: HcclGetRootInfo(&hcclID), error code is 7"


@pytest.mark.parametrize(
    "case",
    [
        ("op", "exception", NCCL_SYSTEM, "", "nccl_error=2", "ncclSystemError"),
        ("init", "exception", NCCL_OLD, "", "nccl_error=1", "ncclUnhandledCudaError"),
        ("op", "timeout", "hang", NCCL_WATCHDOG, "collective_timeout", "ALLREDUCE"),
        ("op", "exception", HCCL_SOCKET, "", "hccl_error=EI0006", None),
        (
            "op",
            "exception",
            "ACL stream synchronize failed.",
            HCCL_NAMED,
            "hccl_error=EI0006",
            "Get_Socket_Timeout",
        ),
        ("init", "exception", HCCL_RESULT_ONLY, "", "hccl_error=7", "HCCL_E_UNAVAIL"),
    ],
)
def test_nccl_and_hccl_codes_from_their_messages(
    case: tuple[str, str, str, str, str, str | None],
) -> None:
    """case: phase, kind, message, log, outcome, error_name."""
    phase, kind, message, log, outcome, error_name = case
    failure = RankFailure(rank=1, phase=phase, kind=kind, message=message, log=log)
    verdict = classify_torch_failure(failure)
    assert isinstance(verdict, Classified)
    assert (verdict.outcome, verdict.error_name) == (outcome, error_name)


def test_backend_by_platform_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_backend("sim") == "gloo"
    assert default_backend("cuda") == "nccl"
    assert default_backend("ascend") == "gloo"  # torch_npu is not installed here
    adapter = TorchAdapter()
    assert adapter.worker_env(0, 2, 0) == {"PTO_TORCH_BACKEND": "gloo"}
    adapter.backend = "cpu:gloo,cuda:nccl"
    assert adapter.worker_env(1, 2, 5) == {"PTO_TORCH_BACKEND": "cpu:gloo,cuda:nccl"}


def test_preload_leaves_the_forking_process_single_threaded() -> None:
    """Importing torch (and the numpy it pulls in, whose OpenBLAS starts a pool at load) must
    leave one thread, or the zygote refuses to fork; a forked child must still run gloo."""
    code = (
        "import os, sys\n"
        "from pytest_pto._torch_adapter import TorchAdapter\n"
        "TorchAdapter().preload()\n"
        "assert 'torch' in sys.modules and 'numpy' in sys.modules, sorted(sys.modules)[:5]\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1"]
    bare = subprocess.run(  # the same imports without preload's setting: a second thread
        [
            sys.executable,
            "-c",
            "import os, numpy, torch; print(len(os.listdir('/proc/self/task')))",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if (os.cpu_count() or 1) > 1:  # OpenBLAS starts no pool on a single CPU
        assert int(bare.stdout.split()[0]) > 1, "numpy starts no thread now: simplify preload"
