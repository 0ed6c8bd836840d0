"""The ``torch`` runtime: every rank of a round is a member of a fresh ``torch.distributed`` group.

``--pto-runtime=torch`` (or ``@pytest.mark.pto(runtime="torch")``): in ``init`` each rank joins
a process group over a TCP store on the round's ``MASTER_ADDR:MASTER_PORT`` (rank 0 serves it
and waits for every peer, so a missing peer is one clear ``rendezvous_failed``), and
``torch.distributed`` collectives work inside ops on the default group; ``close`` destroys it.
``chip.runtime`` is a :class:`TorchRuntime` (backend, device, group, store, timeout).

Backend: ``--pto-torch-backend`` (ini ``pto_torch_backend``, env ``PTO_TORCH_BACKEND``), else
``nccl`` on the ``cuda`` platform, ``hccl`` on ``ascend`` when ``torch_npu`` is installed, else
``gloo``. A rank binds its device first (``cuda:<local id>``, ``npu:<local id>``; the platform's
visibility variable makes that id 0).

Timeouts, derived from the round's so that torch reports its own diagnosis before pytest-pto's
watchdogs fire: the rendezvous gets 80 % of the init timeout (``PTO_INIT_TIMEOUT``, default
60 s), collectives 80 % of the round timeout (``PTO_ROUND_TIMEOUT``, default 300 s; ``off``:
torch's default of 30 min).

Why the forking process stays single-threaded: ``preload`` imports torch (1 s, paid once per
session instead of once per rank per round). torch itself starts no thread at import, but the
OpenBLAS bundled with numpy (which torch imports) starts its pool at load; ``preload`` caps it
at one thread (``OPENBLAS_NUM_THREADS=1``) unless the user set it, so numpy BLAS calls inside
ops are single-threaded. torch's own intra-op pool is created lazily, in each rank.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_pto._adapter import Classified, RankFailure, RuntimeAdapter, TestInfo
from pytest_pto._torch_classify import classify_torch_failure

__all__ = ["TorchAdapter", "TorchRuntime", "default_backend"]

BACKEND_ENV = "PTO_TORCH_BACKEND"
#: Share of pytest-pto's deadline that torch's own timeout gets, so torch reports first.
TIMEOUT_SHARE = 0.8
_TORCH_DEFAULT_TIMEOUT_S = 1800.0

#: Process groups (and stores) closed by ``close``, kept alive until the worker exits right
#: after: gloo's destructor stops its transport loop thread in two 10 ms epoll ticks, 20 ms of
#: every round for nothing, since the process ends anyway (fresh workers per round).
_PARKED: list[Any] = []


@dataclass
class TorchRuntime:
    """``chip.runtime`` of the torch runtime: what an op needs besides ``torch.distributed``'s
    default group (which is ``group``)."""

    backend: str
    device: Any  # torch.device: cpu, cuda:<local id>, npu:<local id>
    group: Any
    store: Any
    timeout: datetime.timedelta
    store_address: str


def default_backend(platform: str) -> str:
    """The backend a platform gets when none is configured."""
    if platform == "cuda":
        return "nccl"
    if platform == "ascend" and importlib.util.find_spec("torch_npu") is not None:
        return "hccl"
    return "gloo"


def _seconds(env: dict[str, str], name: str, default: float | None) -> float | None:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("off", "none", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        return default  # the plugin validated its own settings; a stray value is not ours
    return value if value > 0 else default


class TorchAdapter(RuntimeAdapter):
    """``torch.distributed`` as the chip runtime (see the module docstring)."""

    def __init__(self) -> None:
        #: Set by pytest-pto in the controller from ``--pto-torch-backend`` (ini, env); None:
        #: by platform.
        self.backend: str | None = None
        self._platform = "sim"

    # -- forking process ------------------------------------------------------------------
    def preload(self) -> None:
        if "numpy" not in sys.modules:
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        import torch
        import torch.distributed

        _ = (torch, torch.distributed)

    # -- controller ---------------------------------------------------------------------------
    def prepare(self, test: TestInfo) -> None:
        self._platform = test.platform

    def worker_env(self, rank: int, size: int, device_id: int) -> dict[str, str]:
        return {BACKEND_ENV: self.backend or default_backend(self._platform)}

    def classify(self, failure: RankFailure) -> str | Classified | None:
        return classify_torch_failure(failure)

    # -- rank ---------------------------------------------------------------------------------
    def init(self, chip: Any) -> TorchRuntime:
        import torch
        import torch.distributed as dist

        env = dict(os.environ)
        backend = env.get(BACKEND_ENV, "").strip() or "gloo"
        init_s = _seconds(env, "PTO_INIT_TIMEOUT", 60.0) or 60.0
        round_s = _seconds(env, "PTO_ROUND_TIMEOUT", 300.0)
        join = datetime.timedelta(seconds=TIMEOUT_SHARE * init_s)
        timeout = datetime.timedelta(
            seconds=TIMEOUT_SHARE * round_s if round_s is not None else _TORCH_DEFAULT_TIMEOUT_S
        )
        _check_backend(torch, dist, backend)
        device = _bind_device(torch, backend, chip.local_device_id)
        store, address = _store(dist, chip, env, join)
        extra: dict[str, Any] = {"device_id": device} if device.type != "cpu" else {}
        dist.init_process_group(
            backend, store=store, rank=chip.rank, world_size=chip.size, timeout=timeout, **extra
        )
        store.set_timeout(timeout)
        return TorchRuntime(backend, device, dist.group.WORLD, store, timeout, address)

    def close(self, chip: Any, runtime: object) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            _PARKED.append(dist.group.WORLD)
            dist.destroy_process_group()
        if isinstance(runtime, TorchRuntime):
            _PARKED.append(runtime.store)  # rank 0's store server must outlive its peers' close


def _check_backend(torch: Any, dist: Any, backend: str) -> None:
    """A backend this torch build lacks is named before anything else fails on it (binding a
    CUDA device on a CPU build would only say "Torch not compiled with CUDA enabled")."""
    names = [part.rpartition(":")[2] for part in backend.split(",")]
    for name in names:
        if name == "hccl" and importlib.util.find_spec("torch_npu") is not None:
            continue  # torch_npu registers it on import
        if not dist.is_backend_available(name):
            raise RuntimeError(
                f"torch.distributed backend {name!r} is not available in this torch build "
                f"({torch.__version__}); set --pto-torch-backend (or PTO_TORCH_BACKEND)"
            )


def _bind_device(torch: Any, backend: str, local_id: int) -> Any:
    """The rank's device, made current: the process group and the op's tensors use it."""
    if "nccl" in backend:
        torch.cuda.set_device(local_id)
        return torch.device("cuda", local_id)
    if "hccl" in backend:
        import torch_npu

        _ = torch_npu
        torch.npu.set_device(local_id)
        return torch.device("npu", local_id)
    return torch.device("cpu")


def _store(dist: Any, chip: Any, env: dict[str, str], join: datetime.timedelta) -> tuple[Any, str]:
    """A TCP store on the round's MASTER_ADDR:MASTER_PORT, served by rank 0, which waits until
    every peer joined (within ``join``); without a port, a file store in the round directory."""
    port = env.get("MASTER_PORT", "").strip()
    if port:
        host = env.get("MASTER_ADDR", "").strip() or "127.0.0.1"
        store = dist.TCPStore(
            host,
            int(port),
            chip.size,
            chip.rank == 0,
            timeout=join,
            wait_for_workers=True,
        )
        return store, f"tcp://{host}:{port}"
    round_dir = getattr(chip, "round_dir", None) or env.get("PTO_ROUND_DIR")
    if not round_dir:
        raise RuntimeError(
            "torch runtime: neither MASTER_PORT nor a round directory (PTO_ROUND_DIR) is set; "
            "pytest-pto sets both for every round"
        )
    path = Path(round_dir) / "torch-file-store"
    store = dist.FileStore(str(path), chip.size)
    store.set_timeout(join)
    return store, f"file://{path}"
