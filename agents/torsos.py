"""Observation encoders ("torsos") that every agent's heads sit on: `mlp` (flatten + dense
layers), a causal temporal `conv` stack and a small causal `transformer`, over [window, F] frames.
Chosen by the agent config's `torso` and sized by its torso_* settings (agents/config_checks.py).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agents.config_checks import TORSOS, TorsoConfig

TRANSFORMER_MLP_RATIO = 4  # Vaswani et al. 2017: the feed-forward layer is 4x the model width.


def _dense_layers(x: jnp.ndarray, sizes: Sequence[int]) -> jnp.ndarray:
    for size in sizes:
        x = nn.relu(nn.Dense(size)(x))
    return x


class MLPTorso(nn.Module):
    """The flattened observation through relu dense layers of `hidden_sizes` (none: the
    flattened observation itself). Sees the whole window at once: no per-frame encoding."""

    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> jnp.ndarray:
        x = observation.reshape(observation.shape[0], -1).astype(jnp.float32)  # [B, prod(obs shape)]
        return _dense_layers(x, self.hidden_sizes)  # [B, hidden_sizes[-1]]


class CausalConvEncoder(nn.Module):
    """Per-frame encodings [B, W, width] of frames [B, W, F]: a per-frame projection to `width`,
    then `depth` residual relu 1-D convolutions of `kernel` taps, dilated 1, 2, 4, ... and padded
    on the left only, so frame t's encoding sees frames t - (kernel - 1)(2^depth - 1) .. t."""

    width: int
    depth: int
    kernel: int

    @nn.compact
    def __call__(self, frames: jnp.ndarray, last_frame_only: bool = False) -> jnp.ndarray:
        """[B, W, width], or the last frame's [B, width] when `last_frame_only`."""
        x = nn.Dense(self.width, name="input_projection")(frames.astype(jnp.float32))  # [B, W, width]
        for layer in range(self.depth):
            dilation = 2 ** layer
            left_padding = (self.kernel - 1) * dilation
            y = nn.Conv(self.width, (self.kernel,), kernel_dilation=(dilation,), padding=[(left_padding, 0)],
                        name=f"conv_{layer}")(x)  # [B, W, width]
            x = x + nn.relu(y)
        return x[:, -1] if last_frame_only else x


def sinusoidal_encoding(length: int, width: int) -> np.ndarray:
    """Vaswani et al. 2017: [length, width] with pe[p, 2i] = sin(p / 10000^(2i / width)) and
    pe[p, 2i + 1] = cos(p / 10000^(2i / width))."""
    positions = np.arange(length, dtype=np.float64)[:, None]  # [L, 1]
    frequencies = 1.0 / 10000.0 ** (np.arange(0, width, 2, dtype=np.float64) / width)  # [ceil(width / 2)]
    angles = positions * frequencies  # [L, ceil(width / 2)]
    encoding = np.zeros((length, 2 * angles.shape[1]))
    encoding[:, 0::2], encoding[:, 1::2] = np.sin(angles), np.cos(angles)
    return encoding[:, :width].astype(np.float32)


class CausalTransformerEncoder(nn.Module):
    """Per-frame encodings [B, W, width] of frames [B, W, F]: a per-frame projection to `width`
    plus a positional encoding ("learned": a [W, width] parameter; "sinusoidal": fixed), then
    `depth` pre-norm blocks (x + attention(norm(x)) under a causal mask, x + MLP(norm(x))) and a
    final norm. Frame t attends to frames <= t only."""

    width: int
    depth: int
    heads: int
    positional_encoding: str

    @nn.compact
    def __call__(self, frames: jnp.ndarray, last_frame_only: bool = False) -> jnp.ndarray:
        """[B, W, width], or the last frame's [B, width] when `last_frame_only` (then the last
        block computes that frame alone: the same numbers, ~1/W of that block's work)."""
        window = frames.shape[-2]
        x = nn.Dense(self.width, name="input_projection")(frames.astype(jnp.float32))  # [B, W, width]
        if self.positional_encoding == "learned":
            x = x + self.param("position_embedding", nn.initializers.normal(0.02), (window, self.width))
        else:
            x = x + sinusoidal_encoding(window, self.width)
        mask = nn.make_causal_mask(jnp.ones(frames.shape[:-1], jnp.int32))  # [B, 1, W, W]
        for layer in range(self.depth):
            y = nn.LayerNorm(name=f"attention_norm_{layer}")(x)
            attention = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width,
                                                        out_features=self.width, name=f"attention_{layer}")
            if last_frame_only and layer == self.depth - 1:  # the last frame attends to every frame
                x = x[:, -1:] + attention(y[:, -1:], y, y)  # [B, 1, width]
            else:
                x = x + attention(y, mask=mask)  # [B, W, width]
            y = nn.LayerNorm(name=f"mlp_norm_{layer}")(x)
            y = nn.gelu(nn.Dense(TRANSFORMER_MLP_RATIO * self.width, name=f"mlp_hidden_{layer}")(y))
            x = x + nn.Dense(self.width, name=f"mlp_output_{layer}")(y)
        x = nn.LayerNorm(name="output_norm")(x)  # [B, W or 1, width]
        return x[:, -1] if last_frame_only else x


class SequenceTorso(nn.Module):
    """The last frame's encoding [B, width] from a per-frame `encoder` (called with
    last_frame_only=True), then relu dense layers of `hidden_sizes`."""

    encoder: nn.Module
    hidden_sizes: Sequence[int]

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> jnp.ndarray:
        x = self.encoder(observation, last_frame_only=True)  # [B, width]
        return _dense_layers(x, self.hidden_sizes)


def first_head_layer(torso: nn.Module) -> int:
    """The index k of a network's first head layer "Dense_k". A network shares its scope with an
    MLP torso (nn.share_scope), so the torso's layers are its own Dense_0 .. Dense_{k-1}: the
    parameter names, checkpoints and initial values of the networks from before torsos."""
    return len(torso.hidden_sizes) if isinstance(torso, MLPTorso) else 0


def make_torso(torso: TorsoConfig, observation_shape: Sequence[int]) -> nn.Module:
    """The torso `torso` describes (an agent config's torso_config()). ValueError when a
    sequence torso gets no [window, F] frames."""
    if torso.kind not in TORSOS:
        raise ValueError(f"torso={torso.kind!r}: expected one of {TORSOS}")
    if torso.kind == "mlp":
        return MLPTorso(hidden_sizes=torso.layers)
    if len(observation_shape) != 2:
        raise ValueError(f"torso={torso.kind!r} encodes observations of frames [window, features]; "
                         f"got observation shape {tuple(observation_shape)} (use torso='mlp')")
    if torso.kind == "conv":
        encoder = CausalConvEncoder(width=torso.width, depth=torso.depth, kernel=torso.kernel)
    else:
        encoder = CausalTransformerEncoder(width=torso.width, depth=torso.depth, heads=torso.heads,
                                           positional_encoding=torso.positional_encoding)
    return SequenceTorso(encoder=encoder, hidden_sizes=torso.layers)


def parameter_count(params: Any) -> int:
    """The number of scalars in a parameter pytree (arrays or jax.eval_shape's shapes)."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params)))
