"""Networks that look across the instruments of a portfolio: observations [B, N, window, F]
(environments/envs/portfolio.py: the last column of each frame is 1 where the instrument can be
held), one action branch per instrument (Tavakoli et al. 2018), so the outputs grow with N
linearly, not as |positions|^N.

Each instrument is encoded by the same torso (shared weights, the EIIE idea of Jiang, Xu and
Liang 2017), then one masked attention layer lets every instrument read the others:
permutation-equivariant, for any N, instruments that cannot be held ignored as keys. By default
the instruments are read through M learned summaries (the induced attention of Set Transformer,
Lee et al. 2019: M queries attend over the instruments, then each instrument attends over the
M summaries), so the cost grows as N M, not N^2; with M = 0 every instrument attends to all.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

ATTENTION_HEADS = 2
ATTENTION_FEATURES_PER_HEAD = 8


class CrossAssetEncoder(nn.Module):
    """[B, N, window, F] -> [B, N, H]: `torso` on each instrument (its [window, F] frames),
    then a residual masked attention across instruments: through `num_points` learned
    summaries (cost linear in N), or, with num_points = 0, full self-attention (N^2)."""

    torso: nn.Module
    num_points: int = 4

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> jnp.ndarray:
        batch, num = observation.shape[:2]
        x = self.torso(observation.reshape((batch * num,) + observation.shape[2:]))
        x = x.reshape(batch, num, -1)  # [B, N, H]
        holdable = observation[:, :, -1, -1] > 0.5  # [B, N] at the current bar
        y = nn.LayerNorm(name="cross_norm")(x)
        if self.num_points == 0:
            return x + _attention("cross_attention", x.shape[-1])(y, y, mask=holdable[:, None, None, :])
        points = self.param("summary_queries", nn.initializers.normal(1.0), (self.num_points, x.shape[-1]))
        queries = jnp.broadcast_to(points, (batch,) + points.shape)  # [B, M, H]
        summaries = _attention("summarize", x.shape[-1])(queries, y, mask=holdable[:, None, None, :])  # [B, M, H]
        summaries = nn.LayerNorm(name="summary_norm")(summaries)
        return x + _attention("read_summaries", x.shape[-1])(y, summaries)


def _attention(name: str, out_features: int) -> nn.MultiHeadDotProductAttention:
    return nn.MultiHeadDotProductAttention(
        num_heads=ATTENTION_HEADS, qkv_features=ATTENTION_HEADS * ATTENTION_FEATURES_PER_HEAD,
        out_features=out_features, name=name)


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
