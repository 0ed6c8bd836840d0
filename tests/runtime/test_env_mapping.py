"""The one validator of environment mappings (marker, variants, ini, --pto-env, WorldConfig)."""

from __future__ import annotations

import pytest

from libpto._checks import EnvError, env_mapping


def test_numbers_are_text_only_where_the_source_allows_them() -> None:
    assert env_mapping({"A": "x", "B": 2, "C": 1.5}, numbers=True) == {
        "A": "x",
        "B": "2",
        "C": "1.5",
    }
    with pytest.raises(EnvError) as info:
        env_mapping({"B": 2})
    assert (info.value.kind, info.value.key, info.value.rule) == ("value", "B", "must be a string")
    with pytest.raises(EnvError, match="must be a string or number"):
        env_mapping({"T": True}, numbers=True)  # True is not "1"


@pytest.mark.parametrize(
    ("env", "kind", "text"),
    [
        (["A=1"], "mapping", "src must be a mapping NAME -> value, got ['A=1']"),
        ({"1A": "x"}, "name", "src: '1A' is not a valid environment variable name (letters"),
        ({"A\n": "x"}, "name", "src: 'A\\n' is not a valid environment variable name"),
        ({"A": None}, "value", "src['A'] must be a string or number, got None"),
        ({"A": "a\x00"}, "text", "src: A='a\\x00': the value contains a NUL character"),
    ],
)
def test_each_rule_names_its_source(env: object, kind: str, text: str) -> None:
    with pytest.raises(EnvError) as info:
        env_mapping(env, numbers=True)
    assert info.value.kind == kind
    assert info.value.text("src").startswith(text)
