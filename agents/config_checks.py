"""What every agent's config.py shares: range checks of dataclass fields and named presets.

Imports nothing heavy (launch/ checks flags with it before jax, TensorFlow or Reverb load).
"""

import dataclasses
import math
from typing import Any, Callable

Ranges = dict[str, tuple[Callable[[Any], bool], str]]  # field -> (check, what is expected)


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def hidden_sizes(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) >= 1 and all(integer(size) and size >= 1 for size in value)


HIDDEN_SIZES_EXPECTED = "a non-empty tuple of integers >= 1, e.g. (64, 64)"


def check_ranges(agent: str, config: Any, ranges: Ranges) -> None:
    """ValueError naming the first field of `config` outside its range."""
    for field in dataclasses.fields(config):
        if field.name in ranges:
            check, expected = ranges[field.name]
            value = getattr(config, field.name)
            if not check(value):
                raise ValueError(f"{agent} config: {field.name}={value!r}: expected {expected}")


def from_preset(agent: str, config_class: type, presets: dict[str, dict], preset: str,
                overrides: dict[str, Any]) -> Any:
    """config_class(**presets[preset], **overrides); ValueError naming an unknown preset or
    setting (a list given for a tuple field, e.g. hidden_sizes from JSON, becomes a tuple)."""
    if preset not in presets:
        raise ValueError(f"{agent} config: unknown preset {preset!r}; expected one of {sorted(presets)}")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"{agent} config: unknown setting(s) {unknown}; expected some of {sorted(fields)}")
    settings = {**presets[preset], **overrides}
    for name, value in settings.items():
        if isinstance(value, list) and "tuple" in str(fields[name].type):
            settings[name] = tuple(value)
    return config_class(**settings)
