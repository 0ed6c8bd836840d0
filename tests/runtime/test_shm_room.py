"""A segment that /dev/shm has no room for fails at create with the free and needed bytes
(pto_sys_shm_room), instead of a SIGBUS in whichever rank first writes a page of it; nothing is
left behind. Sizes are far beyond any /dev/shm (terabytes), so the check fails on every machine
without allocating anything."""

from __future__ import annotations

import os

import pytest

import libpto
from libpto._comm import CommWindow
from libpto._mailbox import Mailbox


def _segments(tag: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if tag in n]


def test_a_comm_window_without_room_fails_at_create() -> None:
    name = f"pto-comm-room-{os.getpid()}"
    try:
        with pytest.raises(libpto.PtoError, match=r"/dev/shm has \d+ bytes free, the segment"):
            CommWindow.create(name, 4096, None, data_bytes=1 << 32)  # 16 TiB
        assert _segments(name) == []
    finally:  # a create that wrongly succeeded must not leave its (sparse) segment behind
        CommWindow.unlink(name, missing_ok=True)


def test_a_mailbox_without_room_fails_at_create() -> None:
    name = f"pto-mbox-room-{os.getpid()}"
    try:
        with pytest.raises(libpto.PtoError, match=r"pto_mbox_create: /dev/shm has \d+ bytes free"):
            Mailbox.create(name, 1024, 1 << 30)  # 1 TiB of channels
        assert _segments(name) == []
    finally:
        if _segments(name):
            Mailbox.unlink(name)


def test_a_window_that_fits_is_made_without_allocating_its_pages() -> None:
    """Pages come on first touch: a fresh 2-rank window (1 MiB data each) occupies almost
    nothing in /dev/shm until written."""
    name = f"pto-comm-lazy-{os.getpid()}"
    window = CommWindow.create(name, 2, None)
    try:
        st = os.stat(f"/dev/shm/{name}")
        assert st.st_size >= 2 << 20 and st.st_blocks * 512 < 256 << 10
    finally:
        window.close()
        CommWindow.unlink(name)
