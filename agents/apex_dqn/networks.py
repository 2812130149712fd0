"""Dueling Q-network (Wang et al. 2016) on any torso of agents/torsos.py, as an init/apply pair."""

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.building import network_init
from agents.cross_asset import BranchingDuelingNetwork, CrossAssetEncoder
from agents.specs import EnvironmentSpec
from agents.torsos import MLPTorso, first_head_layer


class DuelingNetwork(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a): two heads of one hidden layer of `head_size`
    each on the `torso`'s encoding of the observation."""

    num_actions: int
    head_size: int
    torso: nn.Module

    def setup(self):
        if isinstance(self.torso, MLPTorso):  # its layers in this scope (torsos.first_head_layer)
            nn.share_scope(self, self.torso)

    @nn.compact
    def __call__(self, observation: jnp.ndarray) -> jnp.ndarray:
        x = self.torso(observation)  # [B, encoding]
        first = first_head_layer(self.torso)
        dense = lambda size, k: nn.Dense(size, name=f"Dense_{first + k}")  # noqa: E731
        value = dense(1, 0)(nn.relu(dense(self.head_size, 1)(x)))  # [B, 1]
        advantages = dense(self.num_actions, 2)(nn.relu(dense(self.head_size, 3)(x)))  # [B, A]
        return value + advantages - advantages.mean(axis=-1, keepdims=True)  # [B, A]


class Networks(NamedTuple):
    """init(rng) -> params; apply(params, obs [B, ...]) -> q [B, num_actions] (a portfolio's:
    [B, num_branches, num_actions])."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jnp.ndarray], jnp.ndarray]


def make_networks(spec: EnvironmentSpec, hidden_sizes: Sequence[int], torso: nn.Module | None = None,
                  cross_asset_points: int = 4) -> Networks:
    """Heads of hidden_sizes[-1] on `torso` (default: the MLP torso of hidden_sizes[:-1]); a
    portfolio's instruments read each other through `cross_asset_points` summaries
    (agents/cross_asset.py; 0: full self-attention)."""
    if not hidden_sizes:
        raise ValueError("hidden_sizes must name at least one layer size, got ()")
    torso = MLPTorso(hidden_sizes=tuple(hidden_sizes[:-1])) if torso is None else torso
    if spec.num_branches is not None:  # a portfolio: Q [B, N, A], one branch per instrument
        module = BranchingDuelingNetwork(num_actions=spec.num_actions, head_size=hidden_sizes[-1],
                                         encoder=CrossAssetEncoder(torso, cross_asset_points))
    else:
        module = DuelingNetwork(num_actions=spec.num_actions, head_size=hidden_sizes[-1], torso=torso)
    return Networks(init=network_init(module, spec), apply=module.apply)
