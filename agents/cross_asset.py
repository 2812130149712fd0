"""Networks that look across the instruments of a portfolio: observations [B, N, window, F]
(environments/envs/portfolio.py: the last column of each frame is 1 where the instrument can be
held), one action branch per instrument (Tavakoli et al. 2018), so the outputs grow with N
linearly, not as |positions|^N.

Each instrument is encoded by the same torso (shared weights, the EIIE idea of Jiang, Xu and
Liang 2017), then one masked self-attention layer lets every instrument read the others:
permutation-equivariant, for any N, instruments that cannot be held ignored as keys.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

ATTENTION_HEADS = 2
ATTENTION_FEATURES_PER_HEAD = 8


class CrossAssetEncoder(nn.Module):
    """[B, N, window, F] -> [B, N, H]: `torso` on each instrument (its [window, F] frames),
    then a residual masked self-attention across instruments."""

    torso: nn.Module

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> jnp.ndarray:
        batch, num = observation.shape[:2]
        x = self.torso(observation.reshape((batch * num,) + observation.shape[2:]))
        x = x.reshape(batch, num, -1)  # [B, N, H]
        holdable = observation[:, :, -1, -1] > 0.5  # [B, N] at the current bar
        y = nn.LayerNorm(name="cross_norm")(x)
        attended = nn.MultiHeadDotProductAttention(
            num_heads=ATTENTION_HEADS, qkv_features=ATTENTION_HEADS * ATTENTION_FEATURES_PER_HEAD,
            out_features=x.shape[-1], name="cross_attention")(y, y, mask=holdable[:, None, None, :])
        return x + attended


class BranchingDuelingNetwork(nn.Module):
    """Q [B, N, A]: each instrument's dueling head (Wang et al. 2016) on its cross-asset
    encoding, V_i + A_i(a) - mean_a A_i(a); the heads' weights are shared by the instruments."""

    num_actions: int
    head_size: int
    encoder: CrossAssetEncoder

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> jnp.ndarray:
        x = self.encoder(observation)  # [B, N, H]
        value = nn.Dense(1, name="value")(nn.relu(nn.Dense(self.head_size, name="value_hidden")(x)))
        advantages = nn.Dense(self.num_actions, name="advantage")(
            nn.relu(nn.Dense(self.head_size, name="advantage_hidden")(x)))  # [B, N, A]
        return value + advantages - advantages.mean(axis=-1, keepdims=True)


class BranchingPolicyValueNetwork(nn.Module):
    """(logits [B, N, A], value [B]) for IMPALA on a portfolio: a policy that is a product of
    per-instrument categoricals (each instrument's logits from its cross-asset encoding, the
    head's weights shared), and one value of the whole portfolio from the mean of the holdable
    instruments' encodings (all of them where none is holdable)."""

    num_actions: int
    head_size: int
    encoder: CrossAssetEncoder

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        x = self.encoder(observation)  # [B, N, H]
        logits = nn.Dense(self.num_actions, name="policy")(
            nn.relu(nn.Dense(self.head_size, name="policy_hidden")(x)))  # [B, N, A]
        holdable = (observation[:, :, -1, -1] > 0.5).astype(x.dtype)  # [B, N]
        weights = jnp.where(holdable.sum(axis=1, keepdims=True) > 0, holdable, 1.0)
        pooled = (x * weights[..., None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)  # [B, H]
        value = nn.Dense(1, name="value")(nn.relu(nn.Dense(self.head_size, name="value_hidden")(pooled)))
        return logits, value[:, 0]
