"""Shared fixtures of the runtime tests: in-process comm windows for notify/wait graphs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import libpto


@pytest.fixture
def comm_pair() -> Iterator[tuple[libpto.CommWindow, libpto.CommWindow]]:
    """Two ranks of one comm window, both in this process (rank 0 owns the segment)."""
    name = libpto.new_name("comm")
    w0 = libpto.CommWindow.create(name, 2, 0, slots=8, data_bytes=1 << 16)
    w1 = libpto.CommWindow.attach(name, 1)
    try:
        yield w0, w1
    finally:
        w1.close()
        w0.close()
        libpto.CommWindow.unlink(name, missing_ok=True)
