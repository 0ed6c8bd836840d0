"""Platforms: where the device ids of the pool come from, and how a worker is bound to its own.

A platform answers three questions:

- ``devices()``: which device ids exist here (the pool leases from them);
- ``binding_env(device_ids)``: the environment that binds a rank's worker to the devices it
  leased, so its runtime cannot touch another rank's card;
- ``local_device_id(device_ids)``: the id the rank's runtime must open after that binding.

``sim`` is built in (libpto's simulated devices, nothing to bind). ``ascend`` and ``cuda`` read
the visibility variable their driver stacks use (``ASCEND_RT_VISIBLE_DEVICES``,
``CUDA_VISIBLE_DEVICES``) and otherwise ask the management tool (``npu-smi info -l``,
``nvidia-smi --query-gpu=index --format=csv,noheader``); a worker is bound by setting that same
variable to its leased physical ids, after which its runtime sees them as 0..K-1.

A platform that finds no device raises :class:`NoDevices` saying where it looked (the variable,
the command and what it returned): the plugin turns it into one usage error at configure
instead of a session of rounds that each fail to open a card.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "MAX_DEVICE_ID",
    "AscendPlatform",
    "CudaPlatform",
    "NoDevices",
    "Platform",
    "SimPlatform",
    "get_platform",
    "platform_names",
]

#: Upper bound of a device id (and so of a device count): far above any real machine, low
#: enough that a typo such as ``PTO_SIM_DEVICES=100000000000`` is an error, not a MemoryError.
MAX_DEVICE_ID = 65535
#: How long a management tool may take to list the devices (a wedged driver can hang it).
SMI_TIMEOUT_S = 10.0


class NoDevices(ValueError):
    """A platform found no device; the message says where it looked and what it found."""


class Platform(Protocol):
    name: str

    def devices(self) -> tuple[int, ...]:
        """Every device id of this machine that tests may lease, ascending."""
        ...

    def binding_env(self, device_ids: Sequence[int]) -> dict[str, str]:
        """Environment binding one rank's worker to its leased (physical) device ids."""
        ...

    def local_device_id(self, device_ids: Sequence[int]) -> int:
        """The id the rank's runtime opens after :meth:`binding_env` (its first device)."""
        ...


class SimPlatform:
    """libpto's built-in thread simulation: 8 devices, ids 0-7 (``PTO_SIM_DEVICES`` overrides).

    Nothing to bind: a simulated device is whatever id the runtime is told, so the local id is
    the physical one."""

    name = "sim"

    def devices(self) -> tuple[int, ...]:
        count = os.environ.get("PTO_SIM_DEVICES", "8")
        try:
            n = int(count)
        except ValueError:
            n = -1
        if not 1 <= n <= MAX_DEVICE_ID + 1:
            raise ValueError(
                f"PTO_SIM_DEVICES={count}: must be an integer >= 1 and <= {MAX_DEVICE_ID + 1}"
            )
        return tuple(range(n))

    def binding_env(self, device_ids: Sequence[int]) -> dict[str, str]:
        """Nothing: simulated devices keep their physical ids (libpto's runtime and a
        vendor's simulator open ``chip.device_id`` itself), so no visibility variable renumbers
        them behind a runtime's back."""
        return {}

    def local_device_id(self, device_ids: Sequence[int]) -> int:
        return int(device_ids[0])

    def probe(self, device_id: int) -> str | None:
        """Health of a simulated device: a device with a fault in ``PTO_SIM_DEVICE_FAULTS``
        is unhealthy (what a health query would say of a wedged card)."""
        from libpto._faults import device_faults

        fault = device_faults().get(device_id)
        if fault is None:
            return None
        return f"sim device {device_id} is faulty (PTO_SIM_DEVICE_FAULTS: code {fault.code})"


class _VisibilityPlatform:
    """A real device stack: a visibility variable binds a process to some physical ids, which
    its runtime then numbers 0..K-1; a management tool lists every id when the variable is
    unset."""

    name = ""
    variable = ""  # e.g. CUDA_VISIBLE_DEVICES
    command: tuple[str, ...] = ()  # e.g. ("nvidia-smi", "--query-gpu=index", ...)
    #: Extra binding environment (e.g. CUDA_DEVICE_ORDER, so the tool's ids are the runtime's).
    extra_binding: dict[str, str] = {}

    def parse_listing(self, out: str) -> list[int]:
        raise NotImplementedError

    def devices(self) -> tuple[int, ...]:
        visible = os.environ.get(self.variable, "").strip()
        if visible:  # a typo here must not silently shrink the pool
            items = [x.strip() for x in visible.split(",")]
            if not all(re.fullmatch(r"[0-9]+", x) and int(x) <= MAX_DEVICE_ID for x in items):
                raise ValueError(
                    f"{self.variable}={visible}: must be comma-separated device ids "
                    f"(0..{MAX_DEVICE_ID})"
                )
            return tuple(sorted({int(x) for x in items}))
        ids, looked = self._ask_tool()
        if not ids:
            raise NoDevices(
                f"no device found: {self.variable} is not set, and {looked} "
                f"(set {self.variable}=0,1,... or --pto-devices to name the devices)"
            )
        return ids

    def _ask_tool(self) -> tuple[tuple[int, ...], str]:
        """The tool's ids, and a description of what it returned (for the no-device error)."""
        shown = "`" + " ".join(self.command) + "`"
        path = shutil.which(self.command[0])
        if path is None:
            return (), f"{shown} is not on PATH"
        shown += f" ({path})"
        try:
            proc = subprocess.run(
                [path, *self.command[1:]],
                capture_output=True,
                text=True,
                timeout=SMI_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return (), f"{shown} did not answer within {SMI_TIMEOUT_S:g} s"
        except OSError as exc:
            return (), f"{shown} could not run: {exc}"
        ids = tuple(sorted({i for i in self.parse_listing(proc.stdout) if i <= MAX_DEVICE_ID}))
        if proc.returncode != 0:
            return (), f"{shown} exited with status {proc.returncode}: {_excerpt(proc)}"
        if not ids:
            return (), f"{shown} listed no device: {_excerpt(proc)}"
        return ids, shown

    def binding_env(self, device_ids: Sequence[int]) -> dict[str, str]:
        return {**self.extra_binding, self.variable: ",".join(str(int(d)) for d in device_ids)}

    def local_device_id(self, device_ids: Sequence[int]) -> int:
        return 0  # the binding variable renumbers the leased devices 0..K-1


def _excerpt(proc: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((proc.stdout + " " + proc.stderr).split())
    if not text:
        return "printed nothing"
    return f"printed {text[:200]!r}" + (" ..." if len(text) > 200 else "")


class AscendPlatform(_VisibilityPlatform):
    """Real Ascend NPUs: ``ASCEND_RT_VISIBLE_DEVICES`` if set, else the ids ``npu-smi info -l``
    lists; each worker is bound with ``ASCEND_RT_VISIBLE_DEVICES`` (its runtime then opens
    device 0)."""

    name = "ascend"
    variable = "ASCEND_RT_VISIBLE_DEVICES"
    command = ("npu-smi", "info", "-l")

    def parse_listing(self, out: str) -> list[int]:
        return [int(m) for m in re.findall(r"NPU ID\s*:\s*(\d+)", out)]

    def probe(self, device_id: int) -> str | None:
        """``npu-smi info -t health -i <id>``: None when its ``Health Status`` is ``OK``, else
        the reason (``Warning``, ``Alarm``, ``Critical``, a failed or unreadable query). Without
        ``npu-smi`` on PATH nothing can be checked: None."""
        smi = shutil.which("npu-smi")
        if smi is None:
            return None
        cmd = [smi, "info", "-t", "health", "-i", str(device_id)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"npu-smi health query of card {device_id} failed: {exc}"
        m = re.search(r"Health(?: Status)?\s*:\s*(\S+)", done.stdout)
        if done.returncode != 0 or m is None:
            text = (done.stdout + done.stderr).strip().splitlines()
            return f"npu-smi health query of card {device_id} failed (exit {done.returncode}): " + (
                text[0] if text else "no output"
            )
        health = m.group(1)
        return None if health.upper() == "OK" else f"npu-smi health of card {device_id}: {health}"


class CudaPlatform(_VisibilityPlatform):
    """NVIDIA GPUs: ``CUDA_VISIBLE_DEVICES`` if set, else the indices ``nvidia-smi`` lists;
    each worker is bound with ``CUDA_VISIBLE_DEVICES`` (its runtime then opens ``cuda:0``).

    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` goes with the binding: CUDA's default order (fastest first)
    need not match nvidia-smi's indices, and a binding by the wrong index would hand a rank
    another rank's card."""

    name = "cuda"
    variable = "CUDA_VISIBLE_DEVICES"
    command = ("nvidia-smi", "--query-gpu=index", "--format=csv,noheader")
    extra_binding = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

    def parse_listing(self, out: str) -> list[int]:
        lines = (x.strip() for x in out.splitlines())
        return [int(line) for line in lines if re.fullmatch(r"[0-9]+", line)]


_PLATFORMS: dict[str, type[SimPlatform] | type[_VisibilityPlatform]] = {
    "sim": SimPlatform,
    "ascend": AscendPlatform,
    "cuda": CudaPlatform,
}


def platform_names() -> tuple[str, ...]:
    return tuple(_PLATFORMS)


def get_platform(name: str) -> Platform:
    try:
        return _PLATFORMS[name]()
    except KeyError:
        raise ValueError(
            f"unknown platform {name!r}; known platforms: {', '.join(_PLATFORMS)}"
        ) from None
