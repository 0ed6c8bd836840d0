"""Outcome classes of torch.distributed failures, read from the text torch and its backends print.

torch raises plain ``RuntimeError`` (gloo), ``DistStoreError``/``DistNetworkError`` (c10d stores)
or ``DistBackendError`` (NCCL, HCCL) whose only structure is the message, so classification is
by pattern. The gloo and store patterns are what torch 2.13's CPU build really prints (the
adapter tests provoke each one with real gloo and check the class); the NCCL and HCCL patterns
follow the messages ProcessGroupNCCL and torch_npu print (``NCCL error in: ..., unhandled system
error, ...`` / ``ncclSystemError: ...``, ``EI0006: ... Getting socket times out``), which no card
here can produce.

Classes (``name`` or ``name=value``, the adapter outcome grammar):

``collective_timeout``   a collective waited longer than the process group's timeout (gloo's
                         ``Timed out waiting ...ms for recv operation``, NCCL's watchdog);
                         ``error_name`` is the collective (``ALL_REDUCE``) when the traceback
                         names it
``store_timeout``        an op's store ``get``/``wait`` ran out of time
``rendezvous_failed``    the rank never joined its group: the store could not be reached or
                         bound, or a peer never arrived (``error_name`` says which)
``backend_unavailable=NAME``  this torch build has no such backend (``nccl`` on a CPU build)
``nccl_error=N``         an NCCL result code (``error_name`` ``ncclSystemError``)
``hccl_error=CODE``      an Ascend error code (``EI0006``) or HCCL result number
``gloo_error``           any other gloo transport error (a peer reset the connection: it died
                         mid-collective); ``error_name`` ``PEER_RESET``/``PEER_CLOSED``
"""

from __future__ import annotations

import re

from pytest_pto._adapter import Classified, RankFailure

__all__ = ["classify_torch_failure"]

NCCL_RESULTS = {
    "ncclUnhandledCudaError": 1,
    "ncclSystemError": 2,
    "ncclInternalError": 3,
    "ncclInvalidArgument": 4,
    "ncclInvalidUsage": 5,
    "ncclRemoteError": 6,
    "ncclInProgress": 7,
}
#: NCCL's own one-line descriptions, as ProcessGroupNCCL quotes them after the file and line.
_NCCL_TEXT = {
    "unhandled cuda error": "ncclUnhandledCudaError",
    "unhandled system error": "ncclSystemError",
    "internal error": "ncclInternalError",
    "invalid argument": "ncclInvalidArgument",
    "invalid usage": "ncclInvalidUsage",
    "remote process exited or there was a network error": "ncclRemoteError",
}
HCCL_RESULTS = {
    1: "HCCL_E_PARA",
    2: "HCCL_E_PTR",
    3: "HCCL_E_MEMORY",
    4: "HCCL_E_INTERNAL",
    5: "HCCL_E_NOT_SUPPORT",
    6: "HCCL_E_NOT_FOUND",
    7: "HCCL_E_UNAVAIL",
    8: "HCCL_E_SYSCALL",
    9: "HCCL_E_TIMEOUT",
    10: "HCCL_E_OPEN_FILE_FAILURE",
    11: "HCCL_E_TCP_CONNECT",
    12: "HCCL_E_ROCE_CONNECT",
    13: "HCCL_E_TCP_TRANSFER",
    14: "HCCL_E_ROCE_TRANSFER",
    15: "HCCL_E_RUNTIME",
    16: "HCCL_E_DRV",
    17: "HCCL_E_PROFILING",
    18: "HCCL_E_CCE",
    19: "HCCL_E_NETWORK",
    20: "HCCL_E_AGAIN",
    21: "HCCL_E_REMOTE",
    22: "HCCL_E_SUSPENDING",
}

# gloo (torch 2.13): "[.../gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms for
# recv operation to complete"; "[.../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:19343:
# Connection reset by peer. This is typically caused by ..."
_GLOO_TIMEOUT = re.compile(r"gloo/\S+\] (Timed out waiting (\d+)ms for (\w+) operation)")
_GLOO_ANY = re.compile(r"\[[^\]\s]*gloo/[^\]\s]+\] ([^\n]+)")
_GLOO_PEER = (
    ("Connection reset by peer", "PEER_RESET"),
    ("Connection closed by peer", "PEER_CLOSED"),
)
# stores: DistStoreError "wait timeout after 2000ms, keys: /never"; FileStore RuntimeError
# "Timeout waiting for key: never after 2000 ms" and "Wait timeout"
_STORE_TIMEOUT = re.compile(
    r"wait timeout after \d+ms, keys: [^\n]*|Timeout waiting for key: [^\n]*|\bWait timeout\b"
)
# rendezvous: DistStoreError "Timed out after 3 seconds waiting for clients. 1/2 clients
# joined."; DistNetworkError "The client socket has timed out after 2000ms while trying to
# connect to (127.0.0.1, 41283)." and "The server socket has failed to listen on any local
# network address. port: 58609, useIpv6: false, code: -98, name: EADDRINUSE, ..."
_RENDEZVOUS = (
    (
        re.compile(r"Timed out after \d+ seconds waiting for clients\. \d+/\d+ clients joined\."),
        "PEERS_MISSING",
    ),
    (
        re.compile(r"client socket has timed out after \d+ms while trying to connect to [^\n]*"),
        "STORE_UNREACHABLE",
    ),
    (re.compile(r"failed to listen on any local network address[^\n]*name: (E[A-Z]+)"), None),
    (re.compile(r"Connection refused[^\n]*"), "STORE_UNREACHABLE"),
)
_NO_BACKEND = re.compile(
    r"Distributed package doesn't have (\w+) built in|backend '(\w+)' is not available in this"
)
_UNKNOWN_BACKEND = re.compile(r"Invalid backend: '(\w+)'|Unknown c10d backend type (\w+)")
# NCCL: "NCCL error in: .../ProcessGroupNCCL.cpp:1275, unhandled system error (run with
# NCCL_DEBUG=INFO for details), NCCL version 2.18.1\nncclSystemError: System call ..."
_NCCL_NAME = re.compile(
    r"\b(nccl(?:UnhandledCudaError|SystemError|InternalError|"
    r"InvalidArgument|InvalidUsage|RemoteError|InProgress))\b"
)
_NCCL_ERROR = re.compile(r"NCCL error in: [^,\n]*, ([a-z ]+?)(?: \(|,|\n|$)")
_NCCL_WATCHDOG = re.compile(
    r"Watchdog caught collective operation timeout: WorkNCCL\([^)]*OpType=(\w+)[^)]*\)[^\n]*"
)
# HCCL / torch_npu: "EI0006: [PID: 1292363] ... Getting socket times out. Reason: ...",
# "Get_Socket_Timeout(EI0006): ...", "HcclAllreduce, error code is 6"
_ASCEND_CODE = re.compile(r"\b(E[A-Z][0-9]{4})\b")
_ASCEND_NAMED = re.compile(r"\b([A-Z][A-Za-z_]+)\((E[A-Z][0-9]{4})\)")
_HCCL_RESULT = re.compile(r"\b(Hccl\w+|HCCL\w*)\b[^\n]*?error code is (\d+)")
_COLLECTIVE = re.compile(r'distributed_c10d\.py", line \d+, in (\w+)')


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _collective(text: str) -> str | None:
    """The torch.distributed function the traceback failed in (``all_reduce`` -> ALL_REDUCE)."""
    names = [n for n in _COLLECTIVE.findall(text) if not n.startswith("_") and n != "wrapper"]
    return names[-1].upper() if names else None


def classify_torch_failure(failure: RankFailure) -> Classified | None:
    """The torch class of a failed rank, or None (the built-in classes then apply: a rank that
    was killed or exited is ``rank_crashed``/``hang``, an unrecognised error ``failed``)."""
    message = failure.message or ""
    text = f"{message}\n{failure.log or ''}"
    found = _backend_error(message, text)
    if found is not None:
        return found
    if failure.kind != "exception":
        return None  # killed or exited: the built-in class says it better than a log line
    if failure.phase == "init":
        return _rendezvous(message, text)
    if (m := _GLOO_TIMEOUT.search(message)) is not None:
        return Classified("collective_timeout", _collective(text), m.group(1))
    if (m := _STORE_TIMEOUT.search(message)) is not None:
        return Classified("store_timeout", None, m.group(0))
    if (m := _GLOO_ANY.search(message)) is not None:
        detail = m.group(1).split(". This is typically caused")[0]
        name = next((n for pat, n in _GLOO_PEER if pat in detail), None)
        return Classified("gloo_error", name, detail)
    return None


def _backend_error(message: str, text: str) -> Classified | None:
    """NCCL and HCCL failures, wherever they happened (init, op, close, even a killed rank's
    log: their watchdogs write the diagnosis before the process dies)."""
    if (m := _NCCL_WATCHDOG.search(text)) is not None:
        return Classified("collective_timeout", m.group(1), _first_line(m.group(0)))
    name = None
    if (m := _NCCL_NAME.search(text)) is not None:
        name = m.group(1)
    elif (m := _NCCL_ERROR.search(text)) is not None:
        name = _NCCL_TEXT.get(m.group(1).strip())
    if name is not None:
        where = _NCCL_ERROR.search(text)
        detail = _first_line(where.group(0)) if where else _first_line(message)
        return Classified(f"nccl_error={NCCL_RESULTS[name]}", name, detail)
    if "hccl" in text.lower() or _ASCEND_CODE.search(text):
        if (m := _ASCEND_NAMED.search(text)) is not None:
            return Classified(
                f"hccl_error={m.group(2)}", m.group(1), _ascend_line(text, m.group(2))
            )
        if (m := _ASCEND_CODE.search(text)) is not None:
            return Classified(f"hccl_error={m.group(1)}", None, _ascend_line(text, m.group(1)))
        if (m := _HCCL_RESULT.search(text)) is not None:
            code = int(m.group(2))
            return Classified(f"hccl_error={code}", HCCL_RESULTS.get(code), _first_line(m.group(0)))
    return None


def _ascend_line(text: str, code: str) -> str:
    for line in text.splitlines():
        if code in line:
            return _first_line(line)
    return code


def _rendezvous(message: str, text: str) -> Classified | None:
    if (m := _NO_BACKEND.search(message)) is not None:
        name = (m.group(1) or m.group(2)).lower()
        return Classified(f"backend_unavailable={name}", None, _first_line(message))
    if (m := _UNKNOWN_BACKEND.search(message)) is not None:
        name = (m.group(1) or m.group(2)).lower()
        return Classified(f"backend_unavailable={name}", None, m.group(0))
    for pattern, name in _RENDEZVOUS:
        if (m := pattern.search(message)) is not None:
            return Classified("rendezvous_failed", name or m.group(1), _first_line(m.group(0)))
    if (m := _STORE_TIMEOUT.search(message)) is not None:
        return Classified("rendezvous_failed", "STORE_TIMEOUT", m.group(0))
    if (m := _GLOO_ANY.search(message)) is not None:
        return Classified("rendezvous_failed", "GLOO_CONNECT", _first_line(m.group(1)))
    return None  # not torch's rendezvous: the built-in init_failed
