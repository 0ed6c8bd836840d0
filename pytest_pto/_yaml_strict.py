"""The YAML loader of variants files: yaml's SafeLoader, strict about duplicate keys.

A module of its own so that yaml is imported only when a variants file is read: the plugin is
loaded by every pytest session of an environment, and most never read one.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["StrictLoader"]


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping.

    Plain YAML keeps the last one silently, so a variant pasted twice under one name (or an
    ``env`` block repeated) would run only one of them with no word said. Keys brought in by
    a ``<<:`` merge may still be overridden: that is what merging is for.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
                if duplicate:
                    raise _DuplicateKey(
                        problem=f"key {key!r} appears twice in one mapping",
                        problem_mark=key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]
