"""What every agent's config.py shares: range checks of dataclass fields, named presets, and
the parser of "key=value,..." overrides (the launcher's --agent_config).

Imports nothing heavy (launch/ checks flags with it before jax, TensorFlow or Reverb load).
"""

import ast
import dataclasses
import math
import types
import typing
from typing import Any, Callable

class ConfigError(ValueError):
    """An override that cannot be a value of its field; the message names the setting."""


Ranges = dict[str, tuple[Callable[[Any], bool], str]]  # field -> (check, what is expected)


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def hidden_sizes(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) >= 1 and all(integer(size) and size >= 1 for size in value)


HIDDEN_SIZES_EXPECTED = "a non-empty tuple of integers >= 1, e.g. (64, 64)"

TORSOS = ("mlp", "conv", "transformer")  # agents/torsos.py
POSITIONAL_ENCODINGS = ("learned", "sinusoidal")

# The torso settings every agent config holds, with their ranges (check_torso adds the one
# between two of them).
TORSO_RANGES = {
    "torso": (lambda v: v in TORSOS, f"one of {', '.join(TORSOS)}"),
    "torso_width": (lambda v: integer(v) and v >= 1, "an integer >= 1"),
    "torso_depth": (lambda v: integer(v) and v >= 1, "an integer >= 1"),
    "torso_heads": (lambda v: integer(v) and v >= 1, "an integer >= 1 (dividing torso_width)"),
    "conv_kernel": (lambda v: integer(v) and v >= 1, "an integer >= 1"),
    "positional_encoding": (lambda v: v in POSITIONAL_ENCODINGS, f"one of {', '.join(POSITIONAL_ENCODINGS)}"),
    "cross_asset_points": (lambda v: integer(v) and v >= 0, "an integer >= 0 (0: full self-attention)"),
}


def check_ranges(agent: str, config: Any, ranges: Ranges) -> None:
    """ValueError naming the first field of `config` outside its range."""
    for field in dataclasses.fields(config):
        if field.name in ranges:
            check, expected = ranges[field.name]
            value = getattr(config, field.name)
            if not check(value):
                raise ValueError(f"{agent} config: {field.name}={value!r}: expected {expected}")


NETWORK_RANGES = {"hidden_sizes": (hidden_sizes, HIDDEN_SIZES_EXPECTED), **TORSO_RANGES}


@dataclasses.dataclass(frozen=True)
class TorsoConfig:
    """The observation encoder of a network (agents/torsos.py), typed: made by
    NetworkSettings.torso_config from an agent config's flat settings."""

    kind: str  # one of TORSOS
    layers: tuple[int, ...]  # relu dense layers after the encoder (the mlp torso: its only layers)
    width: int  # conv channels / transformer model width (mlp: unused)
    depth: int  # conv layers (dilations 1, 2, 4, ...) / transformer blocks
    heads: int  # transformer attention heads, dividing width
    kernel: int  # conv taps per layer
    positional_encoding: str  # transformer positions: one of POSITIONAL_ENCODINGS


@dataclasses.dataclass
class NetworkSettings:
    """The network settings every agent config holds: the heads' width after the torso's dense
    layers, and the observation encoder (the torso). Flat fields, so --agent_config sets them
    (torso=conv,torso_width=8); `torso_config()` gives them typed. An agent config subclasses
    this and calls `check_network` from its __post_init__."""

    # ours: the heads' width, after the torso's dense layers hidden_sizes[:-1] (the mlp torso:
    # the flattened observation through them; Ape-X's heads are 512 wide).
    hidden_sizes: tuple[int, ...] = (512, 512)
    # ours: the observation encoder (agents/torsos.py): "mlp", or over the window's frames a
    # causal temporal "conv" stack or a causal "transformer"; the settings below size the last two.
    torso: str = "mlp"
    torso_width: int = 64  # ours: conv channels / transformer model width (mlp: unused).
    torso_depth: int = 2  # ours: conv layers (dilations 1, 2, 4, ...) / transformer blocks.
    torso_heads: int = 4  # ours: transformer attention heads; must divide torso_width.
    conv_kernel: int = 3  # ours: conv taps per layer (WaveNet's 2; 3 reaches further per layer).
    positional_encoding: str = "learned"  # ours: transformer positions, "learned" or "sinusoidal" (Vaswani et al.).
    # ours: a portfolio's instruments read each other through this many learned summaries (the
    # induced attention of Set Transformer, Lee et al. 2019; agents/cross_asset.py): cost linear
    # in N; 0: full self-attention across instruments (cost N^2).
    cross_asset_points: int = 4

    def check_network(self, agent: str) -> None:
        """ValueError naming the first network setting out of its range."""
        check_ranges(agent, self, NETWORK_RANGES)
        check_torso(agent, self)

    def torso_config(self) -> TorsoConfig:
        return TorsoConfig(kind=self.torso, layers=tuple(self.hidden_sizes[:-1]), width=self.torso_width,
                           depth=self.torso_depth, heads=self.torso_heads, kernel=self.conv_kernel,
                           positional_encoding=self.positional_encoding)


def check_torso(agent: str, config: Any) -> None:
    """ValueError when a transformer's heads do not split its width evenly."""
    if config.torso == "transformer" and config.torso_width % config.torso_heads:
        raise ValueError(f"{agent} config: torso_heads={config.torso_heads} does not divide "
                         f"torso_width={config.torso_width}; expected a divisor (each head gets "
                         f"torso_width / torso_heads features)")


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


def _split_top_level(text: str) -> list[str]:
    """Splits at commas outside brackets: "a=1,b=(2,3)" -> ["a=1", "b=(2,3)"]."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in parts + [current] if part.strip()]


def parse_overrides(text: str, config_class: Any) -> dict[str, Any]:
    """"key=value,..." (the launcher's --agent_config), each value converted by the type of its
    field of `config_class` (a dataclass): batch_size=64,hidden_sizes=(64,64),samples_per_insert=None.
    ConfigError names the setting, the text and what was expected."""
    hints = typing.get_type_hints(config_class)
    overrides = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"{item!r} is not key=value")
        if key not in hints:
            raise ConfigError(f"unknown setting {key!r}; expected one of {sorted(hints)}")
        overrides[key] = _convert(key, value, hints[key])
    return overrides


def _convert(key: str, text: str, hint: Any) -> Any:
    """`text` as a value of type `hint` (int, float, str, bool, tuple[int, ...], X | None)."""
    expected = getattr(hint, "__name__", None) or str(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if text == "None" and len(options) < len(typing.get_args(hint)):
            return None
        hint, expected = options[0], " or ".join(
            getattr(o, "__name__", str(o)) for o in typing.get_args(hint))
    if hint is str:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = _NOT_A_LITERAL
    if typing.get_origin(hint) is tuple:
        item_type = typing.get_args(hint)[0]
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value,)
        if isinstance(value, (tuple, list)) and all(_is(item, item_type) for item in value):
            return tuple(value)
        raise ConfigError(f"{key}={text!r}: expected a tuple of {item_type.__name__}, "
                          f"e.g. {key}=(64,64)")
    if _is(value, hint):
        return hint(value)
    raise ConfigError(f"{key}={text!r}: expected {expected}")


_NOT_A_LITERAL = object()


def _is(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)
