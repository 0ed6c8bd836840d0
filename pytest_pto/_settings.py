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


@dataclass(frozen=True)
class Option:
    """One setting: where it can come from and how its text becomes a value."""

    dest: str
    flag: str | None  # command-line option
    ini: str | None
    env: str | None
    default: Any
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"


OPTIONS: tuple[Option, ...] = (
    Option(
        "ranks",
        "--pto-ranks",
        "pto_ranks",
        None,
        2,
        _int_at_least(1),
        "ranks of a distributed test whose pto marker does not fix them (default 2)",
        "N",
    ),
    Option(
        "rounds",
        "--pto-rounds",
        "pto_rounds",
        "PTO_ROUNDS",
        1,
        _rounds,
        "rounds per distributed test; each round is its own item, id suffix round-K "
        "(default 1). 'auto': one item per test (id round-auto) runs rounds round-1, "
        "round-2, ... until an anytime-valid 95-percent confidence sequence of the failure "
        "rate (Robbins' beta-binomial mixture) decides 'passes' (upper bound below "
        "--pto-target-fail-rate) or 'flaky' (lower bound above it), at most "
        "--pto-max-rounds; the chance that the decision is ever wrong is at most 5 percent, "
        "although it looks after every round",
        "R|auto",
    ),
    Option(
        "max_rounds",
        "--pto-max-rounds",
        "pto_max_rounds",
        "PTO_MAX_ROUNDS",
        200,
        _int_at_least(1, MAX_ROUNDS),
        "--pto-rounds=auto: rounds at most per test before it ends 'undecided' (default 200)",
        "N",
    ),
    Option(
        "target_fail_rate",
        "--pto-target-fail-rate",
        "pto_target_fail_rate",
        "PTO_TARGET_FAIL_RATE",
        0.05,
        _rate,
        "--pto-rounds=auto: the failure rate a test is decided against (default 0.05; 5 percent)",
        "RATE",
    ),
    Option(
        "target_outcome",
        "--pto-target-outcome",
        "pto_target_outcome",
        "PTO_TARGET_OUTCOME",
        "any",
        _outcome_class,
        "--pto-rounds=auto: the failure class whose rate is decided, e.g. "
        "sched_error_code=100 (default any: every product failure)",
        "CLASS",
    ),
    Option(
        "platform",
        "--pto-platform",
        "pto_platform",
        "PTO_PLATFORM",
        "sim",
        _platform,
        "device platform: 'sim' (default, built in, 8 devices), 'ascend' (NPUs: "
        "ASCEND_RT_VISIBLE_DEVICES or npu-smi) or 'cuda' (GPUs: CUDA_VISIBLE_DEVICES or "
        "nvidia-smi)",
        "NAME",
    ),
    Option(
        "runtime",
        "--pto-runtime",
        "pto_runtime",
        "PTO_RUNTIME",
        "libpto",
        _runtime_name,
        "runtime the chip workers drive: libpto (default, built in), torch (torch.distributed, "
        "extra pytest-pto[torch]), a name registered in the entry-point group "
        "pytest_pto.runtimes, or module:attribute of a pytest_pto.RuntimeAdapter subclass",
        "NAME",
    ),
    Option(
        "devices",
        "--pto-devices",
        "pto_devices",
        "PTO_DEVICES",
        None,
        parse_devices,
        "device ids to use: 0-7, 0,2,5, mixes; default all devices of the platform",
        "SPEC",
    ),
    Option(
        "lock_dir",
        "--pto-lock-dir",
        "pto_lock_dir",
        "PTO_LOCK_DIR",
        None,
        _dir_path,
        "directory of the cross-process device locks (also PTO_LOCK_DIR); default a per-user "
        "directory under the temp dir",
        "DIR",
    ),
    Option(
        "lock_timeout",
        "--pto-lock-timeout",
        "pto_lock_timeout",
        "PTO_LOCK_TIMEOUT",
        300.0,
        _seconds,
        "seconds a round may wait for its devices before it ends as device_unavailable "
        "(default 300)",
        "S",
    ),
    Option(
        "init_timeout",
        "--pto-init-timeout",
        "pto_init_timeout",
        "PTO_INIT_TIMEOUT",
        60.0,
        _seconds,
        "startup deadline of the INIT_DONE barrier in seconds (default 60)",
        "S",
    ),
    Option(
        "round_timeout",
        "--pto-round-timeout",
        "pto_round_timeout",
        "PTO_ROUND_TIMEOUT",
        300.0,
        _seconds_or_off,
        "hang watchdog of one round in seconds, or 'off' (default 300); a hang dumps every "
        "rank's stack and the session goes on",
        "S",
    ),
    Option(
        "env",
        "--pto-env",
        "pto_env",
        None,
        {},
        str,  # list-valued: handled by resolve()
        "KEY=VALUE environment for every chip worker (repeatable), e.g. PTO2_RING_HEAP=1048576",
        "KEY=VALUE",
    ),
    Option(
        "init_barrier",
        "--pto-init-barrier",
        "pto_init_barrier",
        "PTO_INIT_BARRIER",
        True,
        _on_off,
        "on (default): dispatch only after every rank wrote INIT_DONE; off reproduces the "
        "pre-barrier behaviour",
        "on|off",
    ),
    Option(
        "latch_policy",
        "--pto-latch-policy",
        "pto_latch_policy",
        "PTO_LATCH_POLICY",
        "owned-wallclock",
        _latch_policy,
        "scheduler latch policy of the chip workers: owned-wallclock (default) or "
        "idle-iterations (the old policy)",
        "NAME",
    ),
    Option(
        "log_dir",
        "--pto-log-dir",
        "pto_log_dir",
        "PTO_LOG_DIR",
        None,
        _dir_path,
        "keep every round's per-rank logs under DIR (default: temporary, attached to the "
        "report of a failing round only)",
        "DIR",
    ),
    Option(
        "variants_file",
        "--pto-variants",
        "pto_variants",
        "PTO_VARIANTS",
        None,
        _existing_file,
        "YAML file of named variants (description, env, rank_env, latch_policy, init_barrier, "
        "ranks); each selected variant multiplies the distributed items",
        "FILE",
    ),
    Option(
        "variant",
        "--pto-variant",
        "pto_variant",
        "PTO_VARIANT",
        None,
        _names,
        "run only these variants of the variants file (repeatable or comma list; default all)",
        "NAME",
    ),
    Option(
        "trace",
        "--pto-trace",
        "pto_trace",
        "PTO_TRACE",
        None,
        _output_file,
        "write a Chrome trace-event JSON timeline (init, barrier, op, teardown per rank)",
        "FILE",
    ),
    Option(
        "junit_strict",
        "--pto-junit-strict",
        "pto_junit_strict",
        "PTO_JUNIT_STRICT",
        False,
        _on_off,
        "make the --junitxml file valid against the Jenkins junit-10.xsd: each testcase's "
        "properties move into a system-out block of name=value lines (pto-report reads both)",
        "on|off",
    ),
    Option(
        "quarantine",
        "--pto-quarantine",
        "pto_quarantine",
        "PTO_QUARANTINE",
        True,
        _on_off,
        "on (default): a round that fails with a poisoning device error code (the runtime "
        "adapter's poison_codes) quarantines its device in the lock dir, and no session "
        "sharing it leases the device until `pto-devices --release`; off: neither",
        "on|off",
    ),
    Option(
        "quarantine_ttl",
        "--pto-quarantine-ttl",
        "pto_quarantine_ttl",
        "PTO_QUARANTINE_TTL",
        None,
        _seconds_or_off,
        "quarantines this session writes expire after S seconds (default off: until released)",
        "S",
    ),
    Option(
        "health_check",
        "--pto-health-check",
        "pto_health_check",
        "PTO_HEALTH_CHECK",
        False,
        _on_off,
        "on: probe every leased device (the runtime adapter's probe) before a round uses it; "
        "a failing device is quarantined and the lease moves on (default off)",
        "on|off",
    ),
    Option(
        "seed",
        "--pto-seed",
        "pto_seed",
        "PTO_SEED",
        1,
        _int_at_least(0),
        "base seed of the init-latency model; round K gets PTO_SIM_MALLOC_SEED derived from it, "
        "so rounds resample init skew deterministically (default 1)",
        "N",
    ),
    Option(
        "torch_backend",
        "--pto-torch-backend",
        "pto_torch_backend",
        "PTO_TORCH_BACKEND",
        None,
        _torch_backend,
        "torch.distributed backend of --pto-runtime=torch: gloo, nccl, hccl, ... or a "
        "'cpu:gloo,cuda:nccl' list (default: nccl on cuda, hccl on ascend when torch_npu is "
        "installed, else gloo)",
        "NAME",
    ),
)
_BY_DEST = {opt.dest: opt for opt in OPTIONS}
_FLAGS = frozenset({"junit_strict"})


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("pto", "pytest-pto: ranked distributed tests on locked device groups")
    for opt in OPTIONS:
        assert opt.flag is not None
        extra = f" [ini {opt.ini}" + (f", env {opt.env}" if opt.env else "") + "]"
        repeatable = opt.dest in ("env", "variant")
        if opt.dest in _FLAGS:  # a bare switch on the command line; env/ini take on|off
            kind: dict[str, Any] = {"action": "store_const", "const": "on"}
        else:
            kind = {"action": "append" if repeatable else "store", "metavar": opt.metavar}
        group.addoption(
            opt.flag, dest=f"pto_{opt.dest}", default=None, help=opt.help + extra, **kind
        )
        if opt.ini and opt.dest == "env":
            parser.addini(opt.ini, opt.help, type="linelist", default=[])
        elif opt.ini:
            parser.addini(opt.ini, opt.help, type="string", default="")


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


@dataclass(frozen=True)
class Settings:
    """The resolved session settings; ``sources`` tells where each value came from."""

    ranks: int = 2
    rounds: int = 1  # with --pto-rounds=auto: max_rounds (the most any test may take)
    auto_rounds: bool = False
    max_rounds: int = 200
    target_fail_rate: float = 0.05
    target_outcome: str = "any"
    platform: str = "sim"
    runtime: str = "libpto"
    devices: tuple[int, ...] = ()
    lock_dir: Path = field(default_factory=default_lock_dir)
    lock_timeout: float = 300.0
    init_timeout: float = 60.0
    round_timeout: float | None = 300.0
    env: Mapping[str, str] = field(default_factory=dict)
    init_barrier: bool = True
    latch_policy: str = "owned-wallclock"
    log_dir: Path | None = None
    variants_file: Path | None = None
    variant: tuple[str, ...] | None = None
    trace: Path | None = None
    seed: int = 1
    junit_strict: bool = False
    torch_backend: str | None = None
    quarantine: bool = True
    quarantine_ttl: float | None = None
    health_check: bool = False
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
            values[opt.dest] = opt.default
    if values["lock_dir"] is None:
        values["lock_dir"] = default_lock_dir()
    values["auto_rounds"] = values["rounds"] == "auto"
    if values["auto_rounds"]:
        values["rounds"] = values["max_rounds"]
    _check_runtime(config, values["runtime"], sources.get("runtime"))
    values["devices"] = _check_devices(values, sources)
    if values["platform"] == "sim":
        _check_sim_faults(values["env"], environ)
    if values["ranks"] > len(values["devices"]):
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
