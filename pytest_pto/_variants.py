"""Variants: named configurations from a YAML file, each multiplying the distributed items.

File shape (the schema is :data:`VARIANT_KEYS`; any other key is an error)::

    before-fixes:
      description: idle-iterations latch, no init barrier
      latch_policy: idle-iterations
      init_barrier: false
      env: {PTO2_RING_HEAP: "4294967296", PTO_SIM_MALLOC_MODEL: longtail}
    both-fixes:
      latch_policy: owned-wallclock
      init_barrier: true
      ranks: 2                      # optional: pins the rank count like the marker would
      rank_env: {1: {PTO_SIM_INIT_DELAY_MS: "500"}}   # optional, per rank
      runtime: libpto               # optional: the runtime adapter, as --pto-runtime

A variant overlays the session settings for its items; a test's own ``@pytest.mark.pto``
marker overlays the variant (the test knows what it needs). A variant's ``rank_env`` applies to
the ranks a round has: one shared by tests of several sizes may name rank 3 for the 4-rank
tests; a variant that pins ``ranks`` must name only ranks below it. Every error names the
file, the variant and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libpto._checks import EnvError, env_mapping
from pytest_pto._settings import LATCH_POLICIES

__all__ = ["VARIANT_KEYS", "Variant", "VariantError", "load_variants", "select_variants"]

VARIANT_KEYS = {
    "description": "text shown in reports",
    "env": "mapping NAME -> value: environment for every chip worker",
    "rank_env": "mapping rank -> {NAME: value}: extra environment for one rank",
    "latch_policy": f"one of {', '.join(LATCH_POLICIES)}",
    "init_barrier": "true/false (or on/off)",
    "ranks": "integer >= 1",
    "runtime": "runtime name, as --pto-runtime (libpto, torch, an entry point, module:attribute)",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class VariantError(ValueError):
    """A variants file broke the schema; the message names file, variant and key."""


@dataclass(frozen=True)
class Variant:
    name: str
    description: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    rank_env: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    latch_policy: str | None = None
    init_barrier: bool | None = None
    ranks: int | None = None
    runtime: str | None = None


def _env(where: str, value: Any) -> dict[str, str]:
    try:
        return env_mapping(value, numbers=True)  # the rules every env source shares
    except EnvError as exc:
        text = exc.text(
            where, mapping="{where}: {rule}", value="{where}.{key}: {rule}, got {got!r}"
        )
        raise VariantError(text) from None


def _variant(path: Path, name: Any, body: Any) -> Variant:
    where = f"{path}: variant {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise VariantError(
            f"{where}: variant names are letters, digits and _.+- (they become test ids)"
        )
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise VariantError(f"{where}: must be a mapping of {', '.join(VARIANT_KEYS)}")
    unknown = [k for k in body if k not in VARIANT_KEYS]
    if unknown:
        raise VariantError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(VARIANT_KEYS)}"
        )
    kw: dict[str, Any] = {"name": name}
    if "description" in body:
        if not isinstance(body["description"], str):
            raise VariantError(f"{where}: key 'description': must be text")
        kw["description"] = body["description"]
    if "env" in body:
        kw["env"] = _env(f"{where}: key 'env'", body["env"])
    if "rank_env" in body:
        rank_env = body["rank_env"]
        if not isinstance(rank_env, Mapping):
            raise VariantError(f"{where}: key 'rank_env': must be a mapping rank -> env")
        parsed: dict[int, dict[str, str]] = {}
        for rank, env in rank_env.items():
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
                raise VariantError(f"{where}: key 'rank_env': {rank!r} is not a rank (int >= 0)")
            parsed[rank] = _env(f"{where}: key 'rank_env.{rank}'", env)
        kw["rank_env"] = parsed
    if "latch_policy" in body:
        if body["latch_policy"] not in LATCH_POLICIES:
            raise VariantError(
                f"{where}: key 'latch_policy': {body['latch_policy']!r} must be one of "
                f"{', '.join(LATCH_POLICIES)}"
            )
        kw["latch_policy"] = body["latch_policy"]
    if "init_barrier" in body:
        val = body["init_barrier"]
        if isinstance(val, str) and val.lower() in ("on", "off"):
            val = val.lower() == "on"
        if not isinstance(val, bool):
            raise VariantError(f"{where}: key 'init_barrier': {val!r} must be true/false or on/off")
        kw["init_barrier"] = val
    if "ranks" in body:
        val = body["ranks"]
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise VariantError(f"{where}: key 'ranks': {val!r} must be an integer >= 1")
        kw["ranks"] = val
        beyond = sorted(r for r in kw.get("rank_env", {}) if r >= val)
        if beyond:
            raise VariantError(
                f"{where}: key 'rank_env': rank {beyond[0]} does not exist with ranks: {val} "
                f"(ranks are 0..{val - 1})"
            )
    if "runtime" in body:
        from pytest_pto._registry import RuntimeResolveError, resolve_runtime

        val = body["runtime"]
        if not isinstance(val, str):
            raise VariantError(f"{where}: key 'runtime': {val!r} must be a runtime name")
        try:
            kw["runtime"] = resolve_runtime(val).name
        except RuntimeResolveError as exc:
            raise VariantError(f"{where}: key 'runtime': {exc}") from None
    return Variant(**kw)


def load_variants(path: Path) -> dict[str, Variant]:
    """Parse and validate a variants file; raise :class:`VariantError` naming file/variant/key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise VariantError(f"{path}: cannot read variants file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise VariantError(
            f"{path}: not valid YAML: not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    import yaml  # here, not at import: most sessions never read a variants file

    from pytest_pto._yaml_strict import StrictLoader

    try:
        data = yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: no tags run code
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise VariantError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        raise VariantError(f"{path}: no variants defined (the file is empty)")
    if not isinstance(data, Mapping):
        raise VariantError(f"{path}: must be a mapping of variant name -> settings")
    return {str(name): _variant(path, name, body) for name, body in data.items()}


def select_variants(
    path: Path, variants: Mapping[str, Variant], names: Sequence[str] | None
) -> list[Variant]:
    """The variants to run, in file order (or ``--pto-variant`` order when given)."""
    if not names:
        return list(variants.values())
    unknown = [n for n in names if n not in variants]
    if unknown:
        raise VariantError(
            f"--pto-variant {unknown[0]}: no such variant in {path} "
            f"(it defines {', '.join(variants) or 'none'})"
        )
    return [variants[n] for n in dict.fromkeys(names)]
