"""Ape-X DQN on a portfolio: one action branch per instrument with a shared target (Tavakoli et
al. 2018), and the cross-asset network: permutation-equivariant, blind to instruments that
cannot be held."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.apex_dqn import builder
from agents.apex_dqn.config import make_config
from agents.apex_dqn.losses import double_q_td_error, per_item
from agents.specs import EnvironmentSpec


def test_branches_share_one_target_the_mean_of_their_next_values():
    q_taken = jnp.array([[1.0, 2.0]])  # [B=1, D=2]
    online = jnp.array([[[0.0, 1.0, 3.0], [5.0, 1.0, 0.0]]])  # argmax: 2, then 0
    target = jnp.array([[[7.0, 8.0, 9.0], [4.0, 6.0, 2.0]]])
    td = double_q_td_error(q_taken, jnp.array([0.5]), jnp.array([0.9]), online, target)
    y = 0.5 + 0.9 * (9.0 + 4.0) / 2
    np.testing.assert_allclose(td, [[y - 1.0, y - 2.0]], rtol=1e-6)
    assert float(per_item(jnp.abs(td), 1)[0]) == pytest.approx((abs(y - 1) + abs(y - 2)) / 2)
    # Without branches the same function is the single-action TD error.
    single = double_q_td_error(jnp.array([1.0]), jnp.array([0.5]), jnp.array([0.9]), online[:, 0], target[:, 0])
    np.testing.assert_allclose(single, [0.5 + 0.9 * 9.0 - 1.0], rtol=1e-6)


@pytest.mark.parametrize("torso", ["mlp", "conv"])
def test_the_cross_asset_network_is_permutation_equivariant_and_ignores_unholdable(torso):
    spec = EnvironmentSpec((4, 3, 5), np.dtype(np.float32), num_actions=3, num_branches=4)
    config = make_config("small", hidden_sizes=(16, 16), torso=torso, torso_width=8, torso_depth=1)
    network = builder.make_networks(config, spec)
    params = network.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3, 5))
    obs = obs.at[:, :, :, -1].set(1.0).at[:, 3, -1, -1].set(0.0)  # instrument 3 not holdable now
    q = network.apply(params, obs)
    assert q.shape == (2, 4, 3)
    order = jnp.array([2, 0, 3, 1])
    np.testing.assert_allclose(network.apply(params, obs[:, order]), q[:, order], rtol=1e-5, atol=1e-6)
    # What the unholdable instrument shows does not reach the others' values.
    changed = obs.at[:, 3, :, :-1].add(5.0)
    np.testing.assert_allclose(network.apply(params, changed)[:, :3], q[:, :3], rtol=1e-5, atol=1e-6)
    # A holdable one's does.
    assert not np.allclose(network.apply(params, obs.at[:, 1, :, :-1].add(5.0))[:, 0], q[:, 0])
