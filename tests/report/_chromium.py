"""Open a page in headless Chromium and report what a person would see: a minimal client of
the DevTools protocol over ``--remote-debugging-pipe`` (no npm, no driver download).

Chromium reads protocol messages from fd 3 and writes to fd 4, each a JSON object ended by a
NUL byte. :func:`open_page` attaches to the first page, enables the Runtime, Log, Network
and Page domains, navigates to the file, waits for the load event, and returns the console
errors and uncaught exceptions, every network request that is not the page itself, the
rendered DOM (``document.documentElement.outerHTML``) and a full-page PNG screenshot. The
browser is closed with ``Browser.close`` and, whatever happens, its process group is killed
and reaped, so no renderer or zygote outlives the call.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The flags of the issue: no sandbox (root in a container), no GPU, no network chatter.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,1800",
)


def chromium_binary() -> str | None:
    """Debian's real binary (the /usr/bin/chromium wrapper script adds noise), else PATH."""
    for candidate in ("/usr/lib/chromium/chromium",):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dom: str = ""
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self.w, self.r, self.deadline = write_fd, read_fd, deadline
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the DevTools pipe")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read_message()
            if ev.get("method") == method:
                return ev
            self.events.append(ev)


def _collect(events: list[dict[str, Any]], page_url: str, out: PageResult) -> None:
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            out.console_errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            out.console_errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.console_errors.append(f"log: {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if url != page_url and not url.startswith("data:"):
                out.requests.append(url)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved above fd 10, so the shell's ``3<&N 4>&M`` never clobbers one."""
    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return out[0], out[1]


def open_page(page: Path, profile: Path, timeout: float = 90.0) -> PageResult:
    """Load ``page`` (a local file) in headless Chromium; ``profile`` is a fresh directory."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed")
    url = page.resolve().as_uri()
    cmd_r, cmd_w = _high(os.pipe())  # we write commands, chromium reads fd 3
    res_r, res_w = _high(os.pipe())  # chromium writes fd 4, we read
    # the pipe ends become fds 3 and 4 of chromium through the shell's redirections (no
    # preexec_fn: it is unsafe with the leak fixture's watcher thread running)
    args = [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
    proc = subprocess.Popen(
        ["bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-', "bash", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(cmd_r, res_w),
        start_new_session=True,
    )
    os.close(cmd_r)
    os.close(res_w)
    out = PageResult()
    pipe = _Pipe(cmd_w, res_r, time.monotonic() + timeout)
    try:
        targets = pipe.call("Target.getTargets")["targetInfos"]
        target = next(t for t in targets if t["type"] == "page")
        session = pipe.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Network", "Page"):
            pipe.call(f"{domain}.enable", session)
        pipe.call("Page.navigate", session, url=url)
        pipe.wait_event("Page.loadEventFired")
        dom = pipe.call(
            "Runtime.evaluate",
            session,
            expression="document.documentElement.outerHTML",
            returnByValue=True,
        )
        out.dom = dom["result"]["value"]
        shot = pipe.call(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
        )
        out.screenshot = base64.b64decode(shot["data"])
        _collect(pipe.events, url, out)
        with contextlib.suppress(OSError, ConnectionError, TimeoutError, RuntimeError):
            pipe.call("Browser.close")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(cmd_w)
        os.close(res_r)
    return out
