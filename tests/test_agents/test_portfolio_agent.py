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


@pytest.mark.parametrize("torso,points", [("mlp", 4), ("conv", 4), ("mlp", 0)])
def test_the_cross_asset_network_is_permutation_equivariant_and_ignores_unholdable(torso, points):
    spec = EnvironmentSpec((4, 3, 5), np.dtype(np.float32), num_actions=3, num_branches=4)
    config = make_config("small", hidden_sizes=(16, 16), torso=torso, torso_width=8, torso_depth=1,
                         cross_asset_points=points)
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


def test_impala_on_a_portfolio_is_a_product_of_per_instrument_categoricals():
    from agents.impala.acting import entropy_of, log_prob_of
    from agents.impala.losses import make_impala_loss

    probs = np.array([[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]])  # [B=1, D=2, A=3]
    logits = jnp.log(jnp.asarray(probs))
    assert float(log_prob_of(logits, jnp.array([[0, 1]]), batch_dims=1)[0]) == pytest.approx(np.log(0.5 * 0.6))
    entropy = -(probs * np.log(probs)).sum()
    assert float(entropy_of(logits, batch_dims=1)[0]) == pytest.approx(entropy, rel=1e-6)

    # A second branch whose policy does not depend on the parameters (uniform over 3, always
    # taking action 0) moves the loss by constants only: the same rhos, the same gradients.
    def single(params, obs):  # obs [N, 1] -> logits [N, 3], value [N]
        return obs * params["w"], obs[:, 0] * params["v"]

    def branched(params, obs):
        logits, value = single(params, obs)
        return jnp.stack([logits, jnp.zeros_like(logits)], axis=1), value  # [N, 2, 3]

    rng = np.random.default_rng(0)
    data = {"observation": jnp.asarray(rng.normal(size=(2, 4, 1)), jnp.float32),
            "action": jnp.asarray(rng.integers(0, 3, (2, 4)), jnp.int32),
            "reward": jnp.asarray(rng.normal(size=(2, 4)), jnp.float32),
            "discount": jnp.ones((2, 4), jnp.float32),
            "behaviour_log_prob": jnp.asarray(np.log(rng.uniform(0.2, 0.5, (2, 4))), jnp.float32),
            "valid": jnp.array([[True, True, True, False]] * 2)}
    two = dict(data, action=jnp.stack([data["action"], jnp.zeros_like(data["action"])], axis=-1),
               behaviour_log_prob=data["behaviour_log_prob"] + np.log(1 / 3))
    params = {"w": jnp.array([0.3, -0.2, 0.1]), "v": jnp.array(0.5)}
    (loss_one, extra_one), grads_one = jax.value_and_grad(
        make_impala_loss(single, 0.9, 0.5, 0.01), has_aux=True)(params, data)
    (loss_two, extra_two), grads_two = jax.value_and_grad(
        make_impala_loss(branched, 0.9, 0.5, 0.01), has_aux=True)(params, two)
    assert float(extra_two.metrics["rho_mean"]) == pytest.approx(float(extra_one.metrics["rho_mean"]), rel=1e-5)
    assert float(extra_two.metrics["entropy"]) == pytest.approx(float(extra_one.metrics["entropy"]) + np.log(3), rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_one, grads_two)
    assert float(loss_two) != pytest.approx(float(loss_one))  # the constants are there


def test_impala_trains_on_a_portfolio_under_anakin():
    from agents import core
    from agents import specs as agent_specs
    from agents.impala import anakin as impala_anakin
    from agents.impala import builder as impala_builder
    from environments import EnvConfig
    from environments.data.synthetic_panel import synthetic_panel
    from environments.envs.portfolio import JaxPortfolioEnv
    from environments.envs.portfolio_gym import PortfolioEnv

    panel, _ = synthetic_panel(3, 200, seed=1)
    env_config = EnvConfig(window=4, episode_length=16)
    spec = agent_specs.make_environment_spec(PortfolioEnv(panel, env_config))
    assert spec.num_branches == 3 and spec.num_actions == 3
    config = impala_builder.make_config(hidden_sizes=(16, 16), batch_size=2, sequence_length=5,
                                        anakin_num_envs=4)
    jax_env = JaxPortfolioEnv(panel, env_config)
    env = core.FunctionalEnv(jax_env.reset, jax_env.step, jax_env.observation_ref,
                             jax_env.observation_from_ref)
    agent = impala_builder.make_anakin(config, spec, env, None)
    state = agent.init(jax.random.PRNGKey(0), jax_env.params)
    learned, metrics = jax.jit(agent.train_step)(state, jax_env.params)
    assert int(agent.learner_steps(learned)) == 2 and np.isfinite(float(metrics["loss"]))
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), state.learner.params, learned.learner.params)
    assert any(jax.tree.leaves(changed))
    # The rollout: one action per instrument, and the behaviour log-probability of the joint
    # action is the sum of the instruments' under the acting parameters.
    network = impala_builder.make_networks(config, spec)
    _, _, data, _, _ = impala_anakin.rollout(network.apply, env, jax_env.params, state.learner.params,
                                             state.env_states, state.observations, jax.random.PRNGKey(1),
                                             5, config.discount, config.reward_scale)
    assert data["action"].shape == (4, 5, 3)
    logits, _ = network.apply(state.learner.params, data["observation"][:, :4].reshape(16, 3, 4, -1))
    log_pi = np.asarray(jax.nn.log_softmax(logits)).reshape(4, 4, 3, -1)
    taken = np.take_along_axis(log_pi, np.asarray(data["action"][:, :4, :, None]), axis=-1)[..., 0].sum(-1)
    np.testing.assert_allclose(data["behaviour_log_prob"][:, :4], taken, rtol=1e-5, atol=1e-5)
