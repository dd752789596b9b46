import dataclasses
from typing import Literal

import pytest

from vlshield.config import ConfigError, field, from_dict, parse_overrides, to_json


@dataclasses.dataclass(frozen=True)
class Inner:
    size: int = field(6, help="size")
    mode: Literal["a", "b"] = field("a", help="mode")


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = field("x", help="name")
    rate: float = field(0.1, help="rate")
    inner: Inner = field(default_factory=Inner, help="inner")
    tags: tuple[str, ...] = field((), help="tags")
    limit: int | None = field(None, help="limit")


def test_nested_dict_and_overrides_build_the_dataclass():
    overrides = parse_overrides(["inner.size=12", "rate=5e-2", "tags=[p, q]", "limit=null"])
    config = from_dict(Outer, overrides)
    assert config == Outer(rate=0.05, inner=Inner(size=12), tags=("p", "q"), limit=None)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key inner\.sise; valid keys of Inner: size, mode"):
        from_dict(Outer, {"inner": {"sise": 3}})


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"inner\.mode: 'c' is not one of 'a', 'b'"):
        from_dict(Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ConfigError, match="inner.size: expected an integer"):
        from_dict(Outer, {"inner": {"size": 2.5}})
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_overrides(["rate"])


def test_json_is_sorted_and_round_trips():
    config = Outer(inner=Inner(size=3))
    text = to_json(config)
    assert text.index('"inner"') < text.index('"limit"') < text.index('"name"')
    import json

    assert from_dict(Outer, json.loads(text)) == config
