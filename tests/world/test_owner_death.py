"""The world's owner is interrupted or killed: nothing it started survives it, and what a
SIGKILLed owner could not clean up, a later run's stale cleanup removes (and only that)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from libpto import cleanup_stale
from tests import leaks

ROOT = Path(__file__).resolve().parents[2]


def start_owner(env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.world._parent"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"owner did not start: {proc.stderr.read() if proc.stderr else ''}")
    facts = json.loads(line)
    for pid in facts["workers"]:
        assert alive(pid)
    for name in facts["segments"]:
        assert Path("/dev/shm", name).exists()
    time.sleep(0.2)  # let the owner enter its hanging run()
    return proc, facts


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], limit: float = 10.0) -> list[int]:
    deadline = time.monotonic() + limit
    while True:
        leaks.reap_zombies()
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("sig", "returncode"), [(signal.SIGINT, -signal.SIGINT), (signal.SIGTERM, -signal.SIGTERM)]
)
def test_interrupted_owner_leaves_nothing(sig: signal.Signals, returncode: int) -> None:
    proc, facts = start_owner()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == returncode, err
    assert wait_gone([*facts["workers"], *facts["spares"], facts["zygote"]]) == []
    for name in facts["segments"]:
        assert not Path("/dev/shm", name).exists()


def test_sigkilled_owner_workers_die_and_zygote_cleans_up() -> None:
    proc, facts = start_owner()
    proc.kill()
    proc.wait(10)
    assert wait_gone([*facts["workers"], *facts["spares"], facts["zygote"]]) == []
    for name in facts["segments"]:
        assert not Path("/dev/shm", name).exists()


def test_stale_cleanup_after_owner_and_zygote_sigkill() -> None:
    decoy = Path(f"/dev/shm/pto-mbox-{os.getpid()}-0badcafe")  # a live owner's segment
    decoy.write_bytes(b"")
    try:
        proc, facts = start_owner()
        os.kill(facts["zygote"], signal.SIGSTOP)  # no janitor: the worst case
        proc.kill()
        proc.wait(10)
        os.kill(facts["zygote"], signal.SIGKILL)
        assert wait_gone([*facts["workers"], *facts["spares"], facts["zygote"]]) == []
        left = [n for n in facts["segments"] if Path("/dev/shm", n).exists()]
        assert left == facts["segments"]  # nobody could clean these up
        removed = cleanup_stale()
        assert set(facts["segments"]) <= set(removed)
        assert decoy.name not in removed and decoy.exists()
        for name in facts["segments"]:
            assert not Path("/dev/shm", name).exists()
    finally:
        decoy.unlink()


def test_escaped_grandchild_dies_after_sigkill_of_owner_and_zygote(tmp_path: Path) -> None:
    """An op starts a process in a session of its own (out of its worker's process group and
    session), then hangs; the owner and the zygote are SIGKILLed. The keeper that outlives
    them kills that process within seconds, and then exits itself."""
    pid_file = tmp_path / "escapee.pid"
    proc, facts = start_owner({"HIER_ESCAPEE_FILE": str(pid_file)})
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    escapee = int(pid_file.read_text())
    assert alive(escapee)
    assert os.getsid(escapee) == escapee  # its own session: no process-group kill reaches it
    os.kill(facts["zygote"], signal.SIGKILL)
    proc.kill()
    proc.wait(10)
    assert wait_gone([escapee], limit=5.0) == []
    assert wait_gone([*facts["workers"], *facts["spares"], facts["zygote"], facts["keeper"]]) == []
    # the segments of a SIGKILLed owner whose zygote died too: the next run's stale cleanup
    cleanup_stale()
    for name in facts["segments"]:
        assert not Path("/dev/shm", name).exists()


@pytest.mark.parametrize("double_fork", [False, True])
def test_every_descendant_of_a_rank_dies_with_it(double_fork: bool) -> None:
    """What an op starts in a session of its own -- with its parent still the worker, or
    double-forked so it is an orphan at once -- is gone when the world's workers are."""
    from libpto.world import World, WorldConfig
    from tests.world import _ops

    with World.start(WorldConfig(devices=(0, 1))) as world:
        pids = world.run(_ops.start_escapee, 1, double_fork)
        escapee = pids[1]
        assert escapee and alive(escapee) and os.getsid(escapee) == escapee
        # a helper of a running world is left alone: it may still serve the next op
        assert world.run(_ops.rendezvous) == [0, 1] and alive(escapee)
    assert wait_gone([escapee], limit=5.0) == []


def test_a_ranks_descendants_die_with_it_while_another_world_runs() -> None:
    """The zygote does not wait for *every* worker to be gone: the escapee of a closed world
    dies while another world's workers (same zygote) still run."""
    from libpto.world import World, WorldConfig
    from tests.world import _ops

    with World.start(WorldConfig(devices=(2, 3))) as other:
        with World.start(WorldConfig(devices=(0, 1))) as world:
            escapee = world.run(_ops.start_escapee, 0, True)[0]
            assert alive(escapee)
        assert wait_gone([escapee], limit=5.0) == []
        assert other.run(_ops.rendezvous) == [0, 1]  # the other world is untouched
