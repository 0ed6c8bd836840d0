"""Runtime adapters for the World-level tests (libpto without the plugin: duck-typed classes,
named ``module:attribute`` like pytest-pto passes them)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any


class Handle:
    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.thread = threading.get_ident()


class Plain:
    """Brings a trivial runtime up and down; fails close on request (HIER_FAIL_CLOSE=rank)."""

    cache_dir: Any = None

    def preload(self) -> None:
        pass

    def init(self, chip: Any) -> Handle:
        return Handle(chip.rank)

    def close(self, chip: Any, runtime: Handle) -> None:
        if os.environ.get("HIER_FAIL_CLOSE") == str(chip.rank):
            raise RuntimeError(f"finalize failed with code -3 on rank {chip.rank}")


class ThreadedPreload(Plain):
    def preload(self) -> None:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()


class BrokenPreload(Plain):
    def preload(self) -> None:
        raise OSError("libvendor.so: cannot open shared object file")


def describe(chip: Any) -> dict[str, Any]:
    return {
        "runtime": type(chip.runtime).__name__,
        "same_thread": getattr(chip.runtime, "thread", None) == threading.get_ident(),
        "device_ids": list(chip.device_ids),
        "local": chip.local_device_id,
        "round_dir": str(chip.round_dir) if chip.round_dir else None,
        "env": {
            k: os.environ.get(k)
            for k in (
                "PTO_DEVICE_IDS",
                "CUDA_VISIBLE_DEVICES",
                "ASCEND_RT_VISIBLE_DEVICES",
                "RANK",
                "WORLD_SIZE",
                "PTO_ROUND_DIR",
                "PTO_LOCAL_DEVICE_ID",
            )
        },
        "state": chip.dump_state(),
    }
