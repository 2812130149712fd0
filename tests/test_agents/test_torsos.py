"""The observation torsos (agents/torsos.py): causality of the per-frame encodings, the conv
stack's receptive field, parameter counts by hand, the mlp default equal to the network from
before torsos, bad settings rejected, and one Anakin train_step per torso for both agents."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import config_checks, specs, testing, torsos
from agents.apex_dqn import builder as apex_builder
from agents.impala import builder as impala_builder

WINDOW = 4
SPEC = specs.make_environment_spec(testing.FrameWindowEnv(window=WINDOW))  # obs [4, 3], 3 actions
BUILDERS = {"apex_dqn": apex_builder, "impala": impala_builder}
TINY = dict(hidden_sizes=(8,), torso_width=8, torso_depth=2, torso_heads=2, conv_kernel=3)


def random_frames(seed, shape=(2, 8, 3)):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


ENCODERS = {
    "conv": torsos.CausalConvEncoder(width=8, depth=2, kernel=3),
    "transformer_learned": torsos.CausalTransformerEncoder(width=8, depth=2, heads=2, positional_encoding="learned"),
    "transformer_sinusoidal": torsos.CausalTransformerEncoder(width=8, depth=2, heads=2,
                                                              positional_encoding="sinusoidal"),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize("k", [0, 3, 6])
def test_perturbing_frames_after_k_leaves_the_encodings_up_to_k_unchanged(name, k):
    encoder = ENCODERS[name]
    frames = random_frames(0)  # [B=2, W=8, F=3]
    params = encoder.init(jax.random.PRNGKey(1), frames)
    perturbed = frames.at[:, k + 1:].add(10.0 * random_frames(2)[:, k + 1:])
    before, after = np.asarray(encoder.apply(params, frames)), np.asarray(encoder.apply(params, perturbed))
    assert before.shape == (2, 8, 8)
    np.testing.assert_allclose(after[:, :k + 1], before[:, :k + 1], rtol=0, atol=1e-6)
    assert np.all(np.abs(after[:, k + 1:] - before[:, k + 1:]).max(axis=-1) > 1e-3)  # later frames do change


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_the_last_frame_alone_is_the_last_of_the_per_frame_encodings(name):
    encoder = ENCODERS[name]
    frames = random_frames(0)
    params = encoder.init(jax.random.PRNGKey(1), frames)
    last = np.asarray(encoder.apply(params, frames, last_frame_only=True))
    assert last.shape == (2, 8)
    np.testing.assert_allclose(last, np.asarray(encoder.apply(params, frames))[:, -1], rtol=1e-5, atol=1e-6)


def test_conv_frame_t_sees_exactly_the_last_1_plus_kernel_minus_1_times_2_to_the_depth_minus_1_frames():
    encoder = torsos.CausalConvEncoder(width=4, depth=2, kernel=2)  # dilations 1, 2: 1 + 1 * 3 = 4 frames
    frames = random_frames(0, (1, 8, 3))
    params = encoder.init(jax.random.PRNGKey(1), frames)
    changed = np.asarray(encoder.apply(params, frames.at[:, 2].add(5.0))) != np.asarray(encoder.apply(params, frames))
    assert [bool(changed[0, t].any()) for t in range(8)] == [False, False, True, True, True, True, False, False]


def test_sinusoidal_encoding_by_hand():
    encoding = torsos.sinusoidal_encoding(3, 3)  # width 3: frequencies 1 and 10000^(-2/3)
    slow = 10000.0 ** (-2.0 / 3.0)
    expected = [[0.0, 1.0, 0.0], [np.sin(1.0), np.cos(1.0), np.sin(slow)], [np.sin(2.0), np.cos(2.0), np.sin(2 * slow)]]
    np.testing.assert_allclose(encoding, expected, rtol=1e-6)


# obs [4, 3] (12 inputs), 3 actions, heads of 8 (hidden_sizes (8,)) on an encoding of 8:
# value 8*8+8 + 8*1+1 = 81, advantages (impala: logits) 8*8+8 + 8*3+3 = 99.
HEADS = 81 + 99
EXPECTED_COUNTS = {
    # hidden_sizes (8, 8): the torso 12*8+8 = 104.
    "mlp": 104 + HEADS,
    # input projection 3*8+8 = 32; two convs of 3 taps 3*8*8+8 = 200 each.
    "conv": 32 + 2 * 200 + HEADS,
    # input projection 32, learned positions 4*8 = 32; per block: attention q, k, v, out 4*(8*8+8) = 288,
    # two norms 2*16 = 32, MLP 8*32+32 + 32*8+8 = 552 (872); output norm 16.
    "transformer": 32 + 32 + 2 * 872 + 16 + HEADS,
}


@pytest.mark.parametrize("agent", sorted(BUILDERS))
@pytest.mark.parametrize("torso", sorted(EXPECTED_COUNTS))
def test_output_shapes_and_parameter_counts_by_hand(agent, torso):
    builder = BUILDERS[agent]
    config = builder.make_config(**{**TINY, "hidden_sizes": (8, 8) if torso == "mlp" else (8,)}, torso=torso)
    network = builder.make_networks(config, SPEC)
    params = network.init(jax.random.PRNGKey(0))
    assert torsos.parameter_count(params) == builder.parameter_count(config, SPEC) == EXPECTED_COUNTS[torso]
    outputs = network.apply(params, random_frames(3, (5, WINDOW, 3)))
    shapes = jax.tree.map(jnp.shape, outputs)
    assert shapes == ((5, 3) if agent == "apex_dqn" else ((5, 3), (5,)))


def test_sinusoidal_positions_have_no_parameters():
    learned = apex_builder.make_config(**TINY, torso="transformer")
    sinusoidal = apex_builder.make_config(**TINY, torso="transformer", positional_encoding="sinusoidal")
    assert apex_builder.parameter_count(learned, SPEC) - apex_builder.parameter_count(sinusoidal, SPEC) == WINDOW * 8


class DuelingMLPBeforeTorsos(nn.Module):
    """agents/apex_dqn/networks.py's DuelingMLP as it was before torsos (commit 815df1e)."""

    num_actions: int
    hidden_sizes: tuple

    @nn.compact
    def __call__(self, observation):
        x = observation.reshape(observation.shape[0], -1).astype(jnp.float32)
        for size in self.hidden_sizes[:-1]:
            x = nn.relu(nn.Dense(size)(x))
        head_size = self.hidden_sizes[-1]
        value = nn.Dense(1)(nn.relu(nn.Dense(head_size)(x)))
        advantages = nn.Dense(self.num_actions)(nn.relu(nn.Dense(head_size)(x)))
        return value + advantages - advantages.mean(axis=-1, keepdims=True)


@pytest.mark.parametrize("hidden_sizes", [(6,), (8, 6), (4, 5, 6)])
def test_mlp_default_is_the_network_from_before_torsos(hidden_sizes):
    config = apex_builder.make_config(hidden_sizes=hidden_sizes)
    assert config.torso == "mlp"
    network = apex_builder.make_networks(config, SPEC)
    reference = DuelingMLPBeforeTorsos(3, hidden_sizes)
    params = network.init(jax.random.PRNGKey(7))
    reference_params = reference.init(jax.random.PRNGKey(7), jnp.zeros((1, WINDOW, 3)))
    assert jax.tree.structure(params) == jax.tree.structure(reference_params)  # same names: checkpoints load
    jax.tree.map(np.testing.assert_array_equal, params, reference_params)
    observation = random_frames(4, (5, WINDOW, 3))
    np.testing.assert_array_equal(network.apply(params, observation), reference.apply(reference_params, observation))


@pytest.mark.parametrize("agent", sorted(BUILDERS))
@pytest.mark.parametrize("text, message", [
    ("torso=lstm", "torso='lstm': expected one of mlp, conv, transformer"),
    ("torso=transformer,torso_width=10,torso_heads=4", "torso_heads=4 does not divide torso_width=10"),
    ("positional_encoding=rotary", "positional_encoding='rotary': expected one of learned, sinusoidal"),
    ("torso_depth=0", "torso_depth=0: expected an integer >= 1"),
    ("conv_kernel=0", "conv_kernel=0: expected an integer >= 1"),
])
def test_bad_torso_settings_are_rejected_naming_the_setting(agent, text, message):
    config_module = BUILDERS[agent]
    with pytest.raises(ValueError, match=f"{agent} config: {message}".replace("(", r"\(").replace(")", r"\)")):
        config_module.make_config(**config_checks.parse_overrides(text, config_module.Config))


def test_heads_need_not_divide_the_width_of_a_torso_without_attention():
    assert apex_builder.make_config(torso="conv", torso_width=10, torso_heads=4).torso_width == 10


def test_a_sequence_torso_needs_frames():
    config = apex_builder.make_config(**TINY, torso="conv")
    with pytest.raises(ValueError, match=r"torso='conv' encodes observations of frames \[window, features\]; "
                                         r"got observation shape \(3,\)"):
        apex_builder.make_networks(config, specs.make_environment_spec(testing.CountingEnv()))


ANAKIN_SIZES = {
    "apex_dqn": dict(batch_size=4, n_step=2, max_replay_size=8, min_replay_size=1, anakin_num_envs=2,
                     anakin_rollout_steps=4, anakin_updates_per_cycle=1),
    "impala": dict(batch_size=2, sequence_length=4, anakin_num_envs=4),  # 2 updates per cycle
}


@pytest.mark.parametrize("agent", sorted(BUILDERS))
@pytest.mark.parametrize("torso", ["mlp", "conv", "transformer"])
def test_one_anakin_train_step_per_torso_on_frame_windows(agent, torso):
    builder = BUILDERS[agent]
    config = builder.make_config(**TINY, **ANAKIN_SIZES[agent], torso=torso)
    anakin = builder.make_anakin(config, SPEC, testing.make_frame_window_functional_env(WINDOW), None)
    env_params = testing.counting_env_params(episode_length=5)
    state = anakin.init(jax.random.PRNGKey(0), env_params)
    assert state.observations.shape == (config.anakin_num_envs, WINDOW, 3)
    new_state, metrics = jax.jit(anakin.train_step)(state, env_params)
    assert int(anakin.learner_steps(new_state)) == (1 if agent == "apex_dqn" else 2)
    assert all(np.isfinite(float(value)) for value in metrics.values())
    moved = jax.tree.map(lambda a, b: bool((a != b).any()), anakin.policy_params(state), anakin.policy_params(new_state))
    assert any(jax.tree.leaves(moved))


def test_the_functional_frame_window_env_shows_the_gym_envs_windows():
    env, gym_env = testing.make_frame_window_functional_env(WINDOW), testing.FrameWindowEnv(window=WINDOW)
    params = testing.counting_env_params(episode_length=3)
    observation, state = env.reset(jax.random.PRNGKey(0), params)
    expected, _ = gym_env.reset()
    np.testing.assert_array_equal(observation, expected)
    for action in [2, 1]:
        observation, state, reward, done, info = env.step(jax.random.PRNGKey(0), state, jnp.int32(action), params)
        expected, expected_reward, *_ = gym_env.step(action)
        np.testing.assert_array_equal(observation, expected)
        assert float(reward) == expected_reward and not bool(done)
    observation, state, reward, done, info = env.step(jax.random.PRNGKey(0), state, jnp.int32(0), params)
    expected, *_ = gym_env.step(0)
    np.testing.assert_array_equal(info["final_observation"], expected)
    assert bool(done) and float(reward) == 3.0
    np.testing.assert_array_equal(observation, gym_env.reset()[0])
