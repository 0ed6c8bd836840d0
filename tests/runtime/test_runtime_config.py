"""Every runtime env variable's validation: one validator for env, ``env=`` and overrides;
messages name the variable, the value and the rule."""

from __future__ import annotations

import re

import pytest

import libpto
from libpto._config import CONFIG_KEYS

BAD: list[tuple[str, str, str]] = [
    ("PTO2_RING_TASK_WINDOW", "100", "must be a power of two >= 4"),
    ("PTO2_RING_TASK_WINDOW", "2", "power of two >= 4"),
    ("PTO2_RING_TASK_WINDOW", "0", "power of two"),
    ("PTO2_RING_TASK_WINDOW", "16,16", "four comma-separated"),
    ("PTO2_RING_TASK_WINDOW", "16,16,16,16,16", "four comma-separated"),
    ("PTO2_RING_TASK_WINDOW", "-16", "power of two"),
    ("PTO2_RING_TASK_WINDOW", "abc", "power of two"),
    ("PTO2_RING_TASK_WINDOW", "", "power of two"),
    ("PTO2_RING_HEAP", "1023", ">= 1024"),
    ("PTO2_RING_HEAP", "4096,x,4096,4096", ">= 1024"),
    ("PTO2_RING_HEAP", "1e9", ">= 1024"),
    ("PTO2_RING_DEP_POOL", "3", ">= 4"),
    ("PTO2_RING_DEP_POOL", "4,4,4,", ">= 4"),
    ("PTO_LATCH_POLICY", "wallclock", "owned-wallclock"),
    ("PTO_SCHEDULER_TIMEOUT_MS", "0", "[1, "),
    ("PTO_SCHEDULER_TIMEOUT_MS", "-5", "[1, "),
    ("PTO_SCHEDULER_TIMEOUT_MS", "5s", "[1, "),
    ("PTO_MAX_IDLE_ITERATIONS", "0", "[1, "),
    ("PTO_STREAM_SYNC_TIMEOUT_MS", "0", "[1, "),
    ("PTO_STREAM_SYNC_TIMEOUT_MS", "two", "[1, "),
    ("PTO_STALL_REPORT_MS", "0", "[1, "),
    ("PTO_SIM_SCHED_THREADS", "0", "[1, 32]"),
    ("PTO_SIM_SCHED_THREADS", "33", "[1, 32]"),
    ("PTO_SIM_CORES", "65", "[1, 64]"),
    ("PTO_RANK", "-1", "[0, 4095]"),
    ("PTO_SIM_INIT_DELAY_MS", "fast", "RANK:MS"),
    ("PTO_SIM_INIT_DELAY_MS", "1:", "RANK:MS"),
    ("PTO_SIM_INIT_DELAY_MS", "1:5,x:3", "RANK:MS"),
    ("PTO_SIM_INIT_DELAY_MS", "9999999", "RANK:MS"),
    ("PTO_SIM_MALLOC_MODEL", "pareto", "none (default) or longtail"),
    ("PTO_SIM_MALLOC_MS_PER_GIB", "-1", "[0, 1e6]"),
    ("PTO_SIM_MALLOC_MS_PER_GIB", "nan", "[0, 1e6]"),
    ("PTO_SIM_MALLOC_SEED", "-3", "unsigned 64-bit"),
    ("PTO_SIM_MALLOC_SIGMA", "5", "[0, 4]"),
    ("PTO_SIM_MALLOC_SIGMA", "x", "[0, 4]"),
    ("PTO_SIM_COND_POLL_US", "-1", "[0, 1000000]"),
    ("PTO_SIM_NOTIFY_DELAY_MS", "slow", "RANK:MS"),
    ("PTO_SIM_NOTIFY_DELAY_MS", "0:5,1:", "RANK:MS"),
    ("PTO_SIM_NOTIFY_MEDIAN_MS", "-2", "[0, 1e6]"),
    ("PTO_SIM_NOTIFY_SIGMA", "9", "[0, 4]"),
    ("PTO_DEADLOCK_CHECK", "instant", "no-progress (default) or snapshot"),
    ("PTO_RING_DEADLOCK_MS", "0", "[1, "),
    ("PTO_TENSOR_WAIT_TIMEOUT_MS", "0", "[1, "),
]


def test_every_key_has_a_bad_case() -> None:
    assert {k for k, _, _ in BAD} == set(CONFIG_KEYS)


@pytest.mark.parametrize(("key", "value", "rule"), BAD)
def test_bad_env_value(monkeypatch: pytest.MonkeyPatch, key: str, value: str, rule: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(libpto.ConfigError, match=re.escape(f"{key}={value}")) as ei:
        libpto.Runtime()
    msg = str(ei.value)
    assert f"{key}={value}" in msg and rule in msg and "environment" in msg


@pytest.mark.parametrize(("key", "value", "rule"), BAD)
def test_bad_env_mapping_and_override(key: str, value: str, rule: str) -> None:
    with pytest.raises(libpto.ConfigError, match="Runtime\\(env\\)"):
        libpto.Runtime(env={key: value})
    with pytest.raises(libpto.ConfigError, match=re.escape(rule)) as ei:
        libpto.Runtime(**{key: value})
    assert rule in str(ei.value)


def test_exact_message_of_the_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTO2_RING_TASK_WINDOW", "100")
    with pytest.raises(
        libpto.ConfigError,
        match=r"^environment: PTO2_RING_TASK_WINDOW=100: must be a power of two >= 4",
    ) as ei:
        libpto.Runtime()
    assert (
        "PTO2_RING_TASK_WINDOW=100: must be a power of two >= 4 (at most 16777216) "
        "(one value or four comma-separated values)" in str(ei.value)
    )


def test_precedence_env_then_mapping_then_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTO_SCHEDULER_TIMEOUT_MS", "111")
    monkeypatch.setenv("PTO_SIM_CORES", "3")
    monkeypatch.setenv("PTO_RANK", "5")
    with libpto.Runtime(env={"PTO_SIM_CORES": "4", "UNRELATED": "x"}, cores=1) as rt:
        assert rt.config["PTO_SCHEDULER_TIMEOUT_MS"] == 111
        assert rt.config["PTO_SIM_CORES"] == 1
        assert rt.rank == 5
    with libpto.Runtime(rank=2, PTO2_RING_HEAP=[1024, 2048, 4096, 8192]) as rt:
        assert rt.rank == 2
        assert rt.config["PTO2_RING_HEAP"] == (1024, 2048, 4096, 8192)


def test_defaults() -> None:
    with libpto.Runtime(env={}) as rt:
        c = rt.config
    assert c["PTO2_RING_TASK_WINDOW"] == (16384,) * 4
    assert c["PTO2_RING_HEAP"] == (256 << 20,) * 4
    assert c["PTO2_RING_DEP_POOL"] == (16384,) * 4
    assert c["PTO_LATCH_POLICY"] == "owned-wallclock"
    assert c["PTO_SCHEDULER_TIMEOUT_MS"] == 5000
    assert c["PTO_STREAM_SYNC_TIMEOUT_MS"] == 2000


def test_unknown_override_and_bad_types() -> None:
    with pytest.raises(libpto.InvalidArgument, match="unknown option"):
        libpto.Runtime(heap_size=5)
    with pytest.raises(libpto.InvalidArgument, match="expected a number"):
        libpto.Runtime(cores=True)
    with pytest.raises(libpto.InvalidArgument, match="values must be strings"):
        libpto.Runtime(env={"PTO_SIM_CORES": 2})  # type: ignore[dict-item]
    with pytest.raises(libpto.InvalidArgument, match="rank"):
        libpto.Runtime(rank="1")  # type: ignore[arg-type]
    with pytest.raises(libpto.InvalidArgument, match="NUL"):
        libpto.Runtime(latch_policy="owned-wallclock\x00")


def test_incoherent_budget_is_a_warning(capfd: pytest.CaptureFixture[str]) -> None:
    """Scheduler budget >= stream-sync timeout is legal (the incident's defaults) but the host
    would time out before the device can report SCHEDULER_TIMEOUT: one clear warning line."""
    with libpto.Runtime(scheduler_timeout_ms=5000, stream_sync_timeout_ms=2000) as rt:
        assert "PTO_SCHEDULER_TIMEOUT_MS=5000 >= PTO_STREAM_SYNC_TIMEOUT_MS=2000" in (
            rt.config_warning
        )
    # printed once per process and distinct text: a new pair of values is said again, once
    for _ in range(3):
        with libpto.Runtime(scheduler_timeout_ms=3001, stream_sync_timeout_ms=2999) as rt:
            assert "PTO_SCHEDULER_TIMEOUT_MS=3001" in rt.config_warning
    assert capfd.readouterr().err.count("CONFIG WARNING PTO_SCHEDULER_TIMEOUT_MS=3001") == 1
    with libpto.Runtime(scheduler_timeout_ms=1000, stream_sync_timeout_ms=2000) as rt:
        assert rt.config_warning == ""
    with libpto.Runtime(
        latch_policy="idle-iterations", scheduler_timeout_ms=5000, stream_sync_timeout_ms=2000
    ) as rt:
        assert rt.config_warning == ""  # the budget is not used by the old policy


def test_documented_defaults_do_not_warn_about_themselves(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """5000 >= 2000 is the default pair: warned only when someone chose one of the two."""
    monkeypatch.delenv("PTO_SCHEDULER_TIMEOUT_MS", raising=False)
    monkeypatch.delenv("PTO_STREAM_SYNC_TIMEOUT_MS", raising=False)
    with libpto.Runtime() as rt:
        assert rt.config_warning == ""
    assert "CONFIG WARNING" not in capfd.readouterr().err
    with libpto.Runtime(env={"PTO_STREAM_SYNC_TIMEOUT_MS": "500"}) as rt:  # the incident demo
        assert "PTO_SCHEDULER_TIMEOUT_MS=5000 >= PTO_STREAM_SYNC_TIMEOUT_MS=500" in (
            rt.config_warning
        )
    monkeypatch.setenv("PTO_SCHEDULER_TIMEOUT_MS", "2000")
    with libpto.Runtime() as rt:
        assert "PTO_SCHEDULER_TIMEOUT_MS=2000 >= PTO_STREAM_SYNC_TIMEOUT_MS=2000" in (
            rt.config_warning
        )


def test_init_delay_fixed_and_per_rank() -> None:
    with libpto.Runtime(init_delay_ms=300) as rt:
        assert rt.init_delay_ms == 300 and rt.init_ms >= 300
    with libpto.Runtime(rank=1, init_delay_ms="0:0,1:250") as rt:
        assert rt.init_delay_ms == 250 and rt.init_ms >= 250
    with libpto.Runtime(rank=2, init_delay_ms={0: 5000, 1: 5000}) as rt:
        assert rt.init_delay_ms == 0


def test_longtail_model_is_seeded_and_scales_with_heap() -> None:
    def delay(rank: int, seed: int, heap: int) -> int:
        with libpto.Runtime(
            rank=rank,
            malloc_model="longtail",
            malloc_seed=seed,
            malloc_ms_per_gib=10.0,
            heap=heap,
        ) as rt:
            return rt.init_delay_ms

    gib = 1 << 30
    assert delay(0, 7, gib // 4) == delay(0, 7, gib // 4)  # deterministic
    samples = {delay(r, 7, gib // 4) for r in range(6)}
    assert len(samples) > 1  # ranks differ
    small, big = delay(3, 11, gib // 64), delay(3, 11, gib // 4)
    assert big >= small  # same draw, 16x the heap scale
    assert all(0 <= s <= 60000 for s in samples)


def test_longtail_sigma_shapes_the_tail_around_the_median() -> None:
    def delay(rank: int, sigma: float) -> int:
        with libpto.Runtime(
            rank=rank,
            malloc_model="longtail",
            malloc_seed=5,
            malloc_ms_per_gib=8.0,
            malloc_sigma=sigma,
            heap=(1 << 30) // 16,  # 4 rings x 1/16 GiB: scale = 8 ms/GiB x 0.25 GiB = 2 ms
        ) as rt:
            return rt.init_delay_ms

    # sigma 0: no spread, every rank sleeps exactly the scale (the median)
    assert {delay(r, 0.0) for r in range(4)} == {2}
    # the same draws with a wider sigma spread further from the median
    spread = [abs(delay(r, 2.0) - 2) for r in range(8)]
    narrow = [abs(delay(r, 0.5) - 2) for r in range(8)]
    assert sum(spread) > sum(narrow)
