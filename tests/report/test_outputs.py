"""Output paths are written, not replaced: symlinks, FIFOs and device nodes stay what they are.

Real symlinks, a real FIFO with a reader thread, the real /dev/null and /dev/full.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_pto._atomic import OutputError, append_text, write_text_atomic
from pytest_pto.report._cli import EXIT_BAD_INPUT, EXIT_OK, main
from pytest_pto.report._trace import TraceWriter
from tests.report.conftest import MakeRun


def _is_chr(path: str) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


def test_regular_file_is_replaced_atomically_keeping_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "r.md"
    target.write_text("old")
    target.chmod(0o640)
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]  # no temp file left


def test_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "report.md"
    target.write_text("old")
    link = tmp_path / "latest.md"
    link.symlink_to(target)
    assert write_text_atomic(link, "new") == target
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert sorted(p.name for p in real_dir.iterdir()) == ["report.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.md", "real"]


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "made.json")
    write_text_atomic(link, "{}")
    assert link.is_symlink()
    assert (tmp_path / "made.json").read_text() == "{}"


def test_fifo_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    text = "x" * 300_000  # more than a pipe buffer: the writer must block, not fail
    t = threading.Thread(target=reader)
    t.start()
    try:
        write_text_atomic(fifo, text)
    finally:
        t.join(timeout=60)
    assert got == [text.encode()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_fifo_without_reader_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "nobody.md"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(OutputError, match=r"nobody\.md: cannot write: FIFO has no reader"):
        write_text_atomic(fifo, "data", fifo_wait_s=0.2)
    assert time.monotonic() - t0 < 30  # bounded: 0.2 s asked, 150x margin
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dev_null_is_written_not_replaced() -> None:
    write_text_atomic("/dev/null", "discarded\n")
    assert _is_chr("/dev/null")


def test_dev_full_is_refused_and_stays_a_device() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OutputError, match=r"^/dev/full: cannot write: No space left on device"):
        write_text_atomic("/dev/full", "x" * 10_000)
    assert _is_chr("/dev/full")


def test_symlink_to_a_device_is_written_in_place(tmp_path: Path) -> None:
    link = tmp_path / "sink"
    link.symlink_to("/dev/null")
    write_text_atomic(link, "discarded")
    assert link.is_symlink() and _is_chr("/dev/null")


def test_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(OutputError, match=r"dir: cannot write: is a directory"):
        write_text_atomic(d, "x")
    link = tmp_path / "link"
    link.symlink_to(d)
    with pytest.raises(OutputError, match=r"link -> .*dir: cannot write: is a directory"):
        write_text_atomic(link, "x")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=r"r\.md: cannot write: Permission denied"):
            write_text_atomic(ro / "r.md", "x")
    finally:
        ro.chmod(0o755)


def test_report_cli_output_to_devices_and_fifo(
    make_run: MakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = make_run({"v": ["passed", "hang"]})
    assert main(["-o", "/dev/null", str(junit)]) == EXIT_OK
    assert _is_chr("/dev/null")
    capsys.readouterr()
    if os.path.exists("/dev/full"):
        assert main(["-o", "/dev/full", str(junit)]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (
            "pto-report: error: --output /dev/full: cannot write: No space left on device"
        )
        assert _is_chr("/dev/full")
    fifo = tmp_path / "table.fifo"
    os.mkfifo(fifo)
    got: list[str] = []

    def reader() -> None:
        with open(fifo, encoding="utf-8") as fh:
            got.append(fh.read())

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert main(["--format", "json", "-o", str(fifo), str(junit)]) == EXIT_OK
    finally:
        t.join(timeout=60)
    assert json.loads(got[0])["schema"] == "pto-report/1"


def test_trace_writer_follows_symlink_and_writes_fifo(tmp_path: Path) -> None:
    target = tmp_path / "traces" / "t.json"
    target.parent.mkdir()
    link = tmp_path / "trace.json"
    link.symlink_to(target)
    ev = [{"rank": 0, "name": "init", "ts_us": 1, "dur_us": 2}]
    with TraceWriter(link) as w:
        w.add_round("t::x", 1, None, ev)
    assert link.is_symlink()
    assert json.loads(target.read_text())["traceEvents"]


@pytest.mark.parametrize("redirect", ["pipe", "file"])
def test_dev_stdout_is_written_in_place(redirect: str, tmp_path: Path) -> None:
    code = (
        "import sys; from pytest_pto._atomic import write_text_atomic; "
        "sys.stdout.write('head\\n'); sys.stdout.flush(); "
        "write_text_atomic('/dev/stdout', 'report\\n')"
    )
    cmd = [sys.executable, "-c", code]
    if redirect == "pipe":
        out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, timeout=60).stdout
        assert out == b"head\nreport\n"
    else:
        dest = tmp_path / "out.txt"
        with open(dest, "wb") as fh:
            subprocess.run(cmd, stdout=fh, check=True, timeout=60)
        # like any tool opening /dev/stdout for writing: the file now holds the report,
        # and it is still the file the shell redirected to (not a renamed replacement)
        assert dest.read_bytes() == b"report\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_step_summary_appends_through_symlinks_and_refuses_what_it_cannot_write(
    tmp_path: Path,
) -> None:
    real = tmp_path / "summary.md"
    real.write_text("# earlier step\n")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    append_text(link, "table\n")
    assert link.is_symlink() and real.read_text() == "# earlier step\ntable\n"
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"summary\.fifo: cannot append: FIFO has no reader"):
        append_text(fifo, "x", fifo_wait_s=0.2)
    with pytest.raises(OutputError, match=r"cannot append: is a directory"):
        append_text(tmp_path, "x")
    if os.path.exists("/dev/full"):
        with pytest.raises(OutputError, match=r"^/dev/full: cannot append: No space left"):
            append_text("/dev/full", "x")
        assert _is_chr("/dev/full")
