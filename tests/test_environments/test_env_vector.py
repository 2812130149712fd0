"""TradingVectorEnv: equal to B independent TradingEnvs, NEXT_STEP autoreset, gymnasium API."""

import pickle

import gymnasium as gym
import numpy as np
import pytest

import environments
from environments import TradingEnv, TradingVectorEnv, synthetic_market


def assert_vector_equals_singles(mode, num_steps, num_envs=5, seed=3):
    market = synthetic_market("regime", 400, seed=1)
    kwargs = dict(window=8, episode_length=20, mode=mode, borrow_bps_per_step=2.0)
    vector = TradingVectorEnv(market, num_envs=num_envs, **kwargs)
    singles = [TradingEnv(market, **kwargs) for _ in range(num_envs)]
    obs, info = vector.reset(seed=seed)
    for i, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs[i], single_obs)
        assert info["step_index"][i] == single_info["step_index"]
    rng = np.random.default_rng(0)
    ended = [False] * num_envs
    num_autoresets = 0
    for _ in range(num_steps):
        actions = rng.integers(0, 3, num_envs)
        obs, rewards, terminated, truncated, info = vector.step(actions)
        for i, env in enumerate(singles):
            if ended[i]:  # NEXT_STEP autoreset: action ignored, reset obs, zero reward
                expected_obs, expected_info = env.reset()
                expected = (0.0, False, False)
                ended[i] = False
                num_autoresets += 1
            else:
                expected_obs, reward, term, trunc, expected_info = env.step(actions[i])
                expected = (reward, term, trunc)
                ended[i] = term or trunc
            np.testing.assert_array_equal(obs[i], expected_obs)
            assert rewards[i] == pytest.approx(expected[0], rel=1e-14, abs=1e-15)
            assert (terminated[i], truncated[i]) == expected[1:]
            for key in ("portfolio_value", "position", "cost", "traded", "step_index"):
                assert info[key][i] == expected_info[key], key
    assert num_autoresets > 0


def test_train_mode_equals_independent_envs_across_autoresets():
    assert_vector_equals_singles("train", num_steps=120)


def test_eval_mode_equals_independent_envs_across_the_data_end():
    assert_vector_equals_singles("eval", num_steps=400, num_envs=2)


def test_same_seed_same_trajectory_and_spaces():
    market = synthetic_market("ou", 300, seed=0)
    envs = [TradingVectorEnv(market, num_envs=4, window=8, episode_length=16) for _ in range(2)]
    actions = np.random.default_rng(1).integers(0, 3, (40, 4))
    results = []
    for env in envs:
        obs, _ = env.reset(seed=7)
        assert obs in env.observation_space and obs.shape == (4, 8, environments.NUM_FEATURES + 1)
        results.append([obs] + [env.step(a)[0] for a in actions])
        env.close()
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert envs[0].metadata["observation_is_frame_window"]


def test_bad_actions_are_clear_errors():
    env = TradingVectorEnv(synthetic_market("ou", 300, seed=0), num_envs=3, window=8)
    env.reset(seed=0)
    for bad in ([0, 1], [0, 1, 3], [0, -1, 2], [0.0, 1.0, 2.0]):
        with pytest.raises(ValueError, match="actions"):
            env.step(np.asarray(bad))


def test_make_vec_uses_the_vector_env():
    env = gym.make_vec(environments.ENV_ID, num_envs=3, vectorization_mode="vector_entry_point",
                       window=8, episode_length=16)
    obs, _ = env.reset(seed=0)
    assert isinstance(env.unwrapped, TradingVectorEnv) and obs.shape[0] == 3
    env.close()


def test_pickled_envs_continue_identically():
    """Envs may be shipped to worker processes (Ray) or deep-copied mid-episode."""
    market = synthetic_market("gbm", 300, seed=0)
    vector = TradingVectorEnv(market, num_envs=3, window=8, episode_length=16)
    single = TradingEnv(market, window=8, episode_length=16)
    vector.reset(seed=0)
    single.reset(seed=0)
    copies = [pickle.loads(pickle.dumps(env)) for env in (vector, single)]
    actions = np.random.default_rng(2).integers(0, 3, (30, 3))
    for batch in actions:
        np.testing.assert_array_equal(vector.step(batch)[0], copies[0].step(batch)[0])
    for action in actions[:10, 0]:
        np.testing.assert_array_equal(single.step(action)[0], copies[1].step(action)[0])
