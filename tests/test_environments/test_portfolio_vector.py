"""The numpy vector portfolio env: env i seeded with seed + i steps as a PortfolioEnv reset with
that seed (episode ends, NEXT_STEP autoresets and a bankruptcy included), and its errors."""

import numpy as np
import pytest

from environments import EnvConfig
from environments.data.panel import PanelData
from environments.data.synthetic_panel import synthetic_panel
from environments.envs.portfolio_gym import PortfolioEnv
from environments.envs.portfolio_vector import PortfolioVectorEnv


def test_each_env_steps_as_portfolio_env_across_episodes():
    panel, _ = synthetic_panel(num_instruments=3, num_steps=80, seed=5)
    config = EnvConfig(window=3, episode_length=7, risk_aversion=2.0)
    vector = PortfolioVectorEnv(panel, config, num_envs=4)
    singles = [PortfolioEnv(panel, config) for _ in range(4)]
    obs, _ = vector.reset(seed=10)
    single_obs = [env.reset(seed=10 + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    assert obs.shape == (4, 3, 3, len(panel.feature_names) + 2) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    resetting = np.zeros(4, bool)
    episodes_ended = 0
    for _ in range(30):  # 30 steps of 7-step episodes: every env ends and restarts 3 times
        actions = rng.integers(0, 3, (4, 3))
        obs, reward, terminated, truncated, info = vector.step(actions)
        for i, env in enumerate(singles):
            if resetting[i]:  # the vector env ignored this action and reset env i
                expected, _ = env.reset()
                assert reward[i] == 0 and not terminated[i] and not truncated[i]
            else:
                expected, r, term, trunc, single_info = env.step(actions[i])
                assert reward[i] == pytest.approx(r, abs=1e-12)
                assert (terminated[i], truncated[i]) == (term, trunc)
                assert info["portfolio_value"][i] == pytest.approx(single_info["portfolio_value"], abs=1e-12)
                np.testing.assert_allclose(info["weights"][i], single_info["weights"], atol=1e-15)
                assert info["forced_closes"][i] == single_info["forced_closes"]
            np.testing.assert_array_equal(obs[i], expected)
        resetting = terminated | truncated
        episodes_ended += int(resetting.sum())
    assert episodes_ended >= 12


def test_a_bankrupt_env_terminates_and_restarts():
    # one instrument that loses 60% in a bar, held long at 2x: the portfolio is bankrupt
    close = np.array([[100.0], [100.0], [100.0], [40.0], [40.0], [40.0], [40.0]])
    stamps = np.datetime64("2020-01-01", "ns") + np.arange(7) * np.timedelta64(1, "D")
    panel = PanelData(stamps, close, ("A",))
    config = EnvConfig(window=1, positions=(-2.0, 0.0, 2.0), episode_length=4)
    vector = PortfolioVectorEnv(panel, config, num_envs=1, mode="eval")
    vector.reset(seed=0)
    _, _, terminated, _, info = vector.step(np.array([[2]]))  # bar 1 -> 2: flat price
    assert not terminated[0]
    _, _, terminated, truncated, info = vector.step(np.array([[2]]))  # 2 -> 3: -60% at 2x
    assert terminated[0] and not truncated[0] and info["portfolio_value"][0] == 0.0
    obs, reward, terminated, _, info = vector.step(np.array([[2]]))  # the autoreset
    assert reward[0] == 0 and not terminated[0] and info["portfolio_value"][0] == 1.0
    assert info["step_index"][0] == 1


def test_bad_actions_are_refused_with_the_expected_shape():
    panel, _ = synthetic_panel(num_instruments=2, num_steps=40, seed=1)
    vector = PortfolioVectorEnv(panel, EnvConfig(window=2, episode_length=8), num_envs=3)
    vector.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 2\), got int64 \(3,\)"):
        vector.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        vector.step(np.full((3, 2), 3))
