"""Every bad argument of the Python API is a ``libpto.PtoError`` naming the argument and the
rule -- never a TypeError, OverflowError, UnicodeEncodeError or a silently truncated name
(issue 9). The table lists each case with the text the error must carry."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

import libpto
from libpto import CommWindow, Runtime, WorldConfig
from libpto._mailbox import Mailbox


def _runtime(**kw: Any) -> None:
    Runtime(**kw).close()


def _kernel(name: Any, **kw: Any) -> None:
    with Runtime() as rt:
        g = rt.graph()
        try:
            g.kernel(name, **kw)
        finally:
            g.close()


def _run(timeout_ms: Any) -> None:
    with Runtime() as rt:
        g = rt.graph()
        try:
            rt.run(g, timeout_ms=timeout_ms)
        finally:
            g.close()


CASES: list[tuple[str, Callable[[], Any], str]] = [
    # names that cross into C: a NUL would cut them short, a lone surrogate cannot be encoded
    (
        "comm create NUL",
        lambda: CommWindow.create("pto-x\x00tail", 2),
        "name='pto-x\\x00tail' contains a NUL",
    ),
    (
        "comm create surrogate",
        lambda: CommWindow.create("pto-x\ud800", 2),
        "name='pto-x\\ud800' cannot be encoded",
    ),
    ("comm create empty", lambda: CommWindow.create("", 2), "name='' must not be empty"),
    (
        "comm create bytes",
        lambda: CommWindow.create(b"pto-x", 2),
        "CommWindow.create: name=b'pto-x' must be a string",
    ),
    (
        "comm create space (C)",
        lambda: CommWindow.create("pto-x y", 2),
        "name: must not contain spaces or control characters",
    ),
    (
        "comm create tab (C)",
        lambda: CommWindow.create("pto-x\ty", 2),
        "name: must not contain spaces or control characters",
    ),
    (
        "comm attach NUL",
        lambda: CommWindow.attach("pto-x\x00", 0),
        "CommWindow.attach: name='pto-x\\x00' contains a NUL",
    ),
    (
        "comm unlink NUL",
        lambda: CommWindow.unlink("pto-x\x00"),
        "CommWindow.unlink: name='pto-x\\x00' contains a NUL",
    ),
    (
        "comm size nan",
        lambda: CommWindow.create(None, math.nan),
        "CommWindow.create: size=nan must be an integer",
    ),
    ("comm size huge", lambda: CommWindow.create(None, 1e308), "size=1e+308 must be an integer"),
    (
        "mailbox NUL",
        lambda: Mailbox.create("pto-m\x00x", 2),
        "mailbox name 'pto-m\\x00x': contains a NUL",
    ),
    (
        "mailbox surrogate",
        lambda: Mailbox.create("pto-m\ud800", 2),
        "mailbox name 'pto-m\\ud800': cannot be encoded",
    ),
    (
        "mailbox control (C)",
        lambda: Mailbox.create("pto-m\x01", 2),
        "mailbox name: must not contain spaces or control",
    ),
    (
        "kernel NUL",
        lambda: _kernel("noop\x00spin"),
        "Graph.kernel('noop\\x00spin'): the kernel name contains a NUL",
    ),
    ("kernel surrogate", lambda: _kernel("noop\ud800"), "the kernel name cannot be encoded"),
    ("kernel None", lambda: _kernel(None), "Graph.kernel(None): the kernel name must be a string"),
    (
        "kernel spin nan",
        lambda: _kernel("spin", duration_us=math.nan),
        "duration_us=nan must be an int",
    ),
    (
        "kernel spin huge",
        lambda: _kernel("spin", duration_us=1e308),
        "duration_us=1e+308 must be an int",
    ),
    # runtime variables: the error names the variable, whatever the value's encoding
    (
        "runtime env surrogate",
        lambda: _runtime(env={"PTO2_RING_HEAP": "\ud800"}),
        "Runtime(env): PTO2_RING_HEAP='\\ud800': the value cannot be encoded",
    ),
    (
        "runtime env NUL",
        lambda: _runtime(env={"PTO2_RING_HEAP": "1\x00"}),
        "PTO2_RING_HEAP='1\\x00': the value contains a NUL",
    ),
    (
        "runtime heap huge",
        lambda: _runtime(heap=1e308),
        "PTO2_RING_HEAP=1e+308: must be an integer number of bytes",
    ),
    ("runtime heap nan", lambda: _runtime(heap=math.nan), "PTO2_RING_HEAP=nan: must be an integer"),
    (
        "runtime cores non-ASCII digit",
        lambda: _runtime(cores="\u0663"),
        "PTO_SIM_CORES=\u0663: must be an integer",
    ),
    (
        "runtime sched budget huge",
        lambda: _runtime(scheduler_timeout_ms=1e308),
        "PTO_SCHEDULER_TIMEOUT_MS=1e+308: must be an integer in",
    ),
    ("runtime env not a mapping", lambda: _runtime(env=5), "Runtime(env=...): expected a mapping"),
    ("run timeout huge", lambda: _run(1e308), "Runtime.run: timeout_ms=1e+308 must be > 0 and <="),
    ("run timeout nan", lambda: _run(math.nan), "Runtime.run: timeout_ms=nan must be > 0 and <="),
    ("run timeout text", lambda: _run("5"), "Runtime.run: timeout_ms='5' must be a number"),
    # WorldConfig: checked when built, before any process starts
    (
        "world devices None",
        lambda: WorldConfig(devices=None),
        "WorldConfig.devices=None: must be a sequence of device ids",
    ),  # type: ignore[arg-type]
    (
        "world devices str",
        lambda: WorldConfig(devices="01"),
        "WorldConfig.devices='01': must be a sequence",
    ),  # type: ignore[arg-type]
    (
        "world devices negative",
        lambda: WorldConfig(devices=(-1,)),
        "WorldConfig.devices: -1 is not a device id",
    ),
    (
        "world init_timeout huge",
        lambda: WorldConfig(devices=(0,), init_timeout=1e308),
        "WorldConfig.init_timeout=1e+308: must be a number of seconds > 0 and <= 1000000",
    ),
    (
        "world init_timeout text",
        lambda: WorldConfig(devices=(0,), init_timeout="5"),
        "WorldConfig.init_timeout='5': must be a number of seconds > 0 and <= 1000000 (not str)",
    ),  # type: ignore[arg-type]
    (
        "world round_timeout huge",
        lambda: WorldConfig(devices=(0,), round_timeout=1e308),
        "WorldConfig.round_timeout=1e+308: must be a number of seconds > 0 and <= 1000000, or None",
    ),
    (
        "world round_timeout nan",
        lambda: WorldConfig(devices=(0,), round_timeout=math.nan),
        "WorldConfig.round_timeout=nan: must be a number of seconds",
    ),
    (
        "world round_timeout inf",
        lambda: WorldConfig(devices=(0,), round_timeout=math.inf),
        "WorldConfig.round_timeout=inf: must be a number of seconds",
    ),
    (
        "world env NUL",
        lambda: WorldConfig(devices=(0,), env={"X": "a\x00b"}),
        "WorldConfig.env: X='a\\x00b': the value contains a NUL",
    ),
    (
        "world env surrogate",
        lambda: WorldConfig(devices=(0,), env={"X": "\ud800"}),
        "WorldConfig.env: X='\\ud800': the value cannot be encoded",
    ),
    (
        "world env bad name",
        lambda: WorldConfig(devices=(0,), env={"A=B": "1"}),
        "WorldConfig.env: 'A=B' is not a valid environment variable name",
    ),
    (
        "world env None",
        lambda: WorldConfig(devices=(0,), env=None),
        "WorldConfig.env=None: must be a mapping",
    ),  # type: ignore[arg-type]
    (
        "world rank_env NUL",
        lambda: WorldConfig(devices=(0,), rank_env={0: {"X": "\x00"}}),
        "WorldConfig.rank_env[0]: X='\\x00': the value contains a NUL",
    ),
    (
        "world rank_env bool rank",
        lambda: WorldConfig(devices=(0, 1), rank_env={True: {}}),
        "WorldConfig.rank_env: rank True is not in [0, 2)",
    ),
    (
        "world init_barrier text",
        lambda: WorldConfig(devices=(0,), init_barrier="no"),
        "WorldConfig.init_barrier='no': must be True or False",
    ),  # type: ignore[arg-type]
    (
        "world log_dir int",
        lambda: WorldConfig(devices=(0,), log_dir=5),
        "WorldConfig.log_dir=5: must be a path",
    ),  # type: ignore[arg-type]
    (
        "world name NUL",
        lambda: WorldConfig(devices=(0,), name="a\x00b"),
        "WorldConfig.name='a\\x00b': must be text without NUL",
    ),
]


@pytest.mark.parametrize(("label", "call", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_argument_is_a_pto_error_naming_it(
    label: str, call: Callable[[], Any], expected: str
) -> None:
    with pytest.raises(libpto.PtoError, match=re.escape(expected)) as info:
        call()
    assert expected in str(info.value), str(info.value)


def test_non_utf8_runtime_variable_in_the_environment_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bytes that are not UTF-8 reach the C validator as they are; its error names the
    variable (before: a UnicodeEncodeError that named nothing)."""
    monkeypatch.setenv("PTO2_RING_HEAP", os.fsdecode(b"\xff\xfe"))
    with pytest.raises(
        libpto.ConfigError, match=r"environment: PTO2_RING_HEAP=.*must be an integer"
    ):
        Runtime().close()


def test_a_nul_name_leaves_no_segment_behind() -> None:
    """Before: 'pto-x\\x00tail' created /dev/shm/pto-x, which no cleanup recognises."""
    name = libpto.new_name("comm")
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(libpto.InvalidArgument, match="name"):
        CommWindow.create(name + "\x00tail", 2)
    assert set(os.listdir("/dev/shm")) - before == set()
