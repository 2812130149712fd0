"""TradingEnv: hand-computed accounting, episodes, observations and the gymnasium checker."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import environments
from environments import NUM_FEATURES, MarketDataError, TradingEnv, synthetic_market

SHORT, FLAT, LONG = 0, 1, 2
# closes: returns from bar 1 on are -10%, 0%, +10%
CLOSES = [100.0, 110.0, 99.0, 99.0, 108.9]


def run(env, actions):
    env.reset(seed=0)
    return [env.step(a) for a in actions]


def test_pnl_without_costs(make_market):
    env = TradingEnv(make_market(CLOSES), window=1, mode="eval", commission_bps=0.0,
                     spread_bps=0.0, borrow_bps_per_step=0.0)
    steps = run(env, [SHORT, FLAT, LONG])
    values = [info["portfolio_value"] for *_, info in steps]
    np.testing.assert_allclose(values, [1.1, 1.1, 1.21], rtol=1e-12)
    np.testing.assert_allclose([s[1] for s in steps], np.log([1.1, 1.0, 1.1]), rtol=1e-12)
    assert [s[2] for s in steps] == [False, False, True]  # terminated at the last bar
    assert [s[3] for s in steps] == [False, False, False]
    assert [info["position"] for *_, info in steps] == [-1.0, 0.0, 1.0]


def test_pnl_with_commission_spread_and_borrow(make_market):
    # cost per unit traded = (10 + 5) bps = 0.0015; borrow 2 bps per step short = 0.0002
    env = TradingEnv(make_market(CLOSES), window=1, mode="eval", commission_bps=10.0,
                     spread_bps=5.0, borrow_bps_per_step=2.0)
    steps = run(env, [SHORT, FLAT, LONG])
    growths = [1.1 - 0.0015 - 0.0002, 1.0 - 0.0015, 1.1 - 0.0015]
    values = np.cumprod(growths)
    np.testing.assert_allclose([i["portfolio_value"] for *_, i in steps], values, rtol=1e-12)
    np.testing.assert_allclose([s[1] for s in steps], np.log(growths), rtol=1e-12)
    np.testing.assert_allclose([i["cost"] for *_, i in steps],
                               [0.0017, 1.0983 * 0.0015, 1.0983 * 0.9985 * 0.0015], rtol=1e-12)
    assert all(i["traded"] for *_, i in steps)


def test_short_held_pays_borrow_every_step_and_no_commission(make_market):
    env = TradingEnv(make_market(CLOSES), window=1, mode="eval", commission_bps=10.0,
                     spread_bps=5.0, borrow_bps_per_step=2.0)
    steps = run(env, [SHORT, SHORT, SHORT])
    growths = [1.1 - 0.0017, 1.0 - 0.0002, 0.9 - 0.0002]
    np.testing.assert_allclose([i["portfolio_value"] for *_, i in steps], np.cumprod(growths),
                               rtol=1e-12)
    assert [i["traded"] for *_, i in steps] == [True, False, False]


def test_leveraged_positions_scale_returns(make_market):
    env = TradingEnv(make_market(CLOSES), window=1, mode="eval", positions=(0.0, 2.0),
                     commission_bps=0.0, spread_bps=0.0, borrow_bps_per_step=0.0)
    steps = run(env, [1, 0, 1])
    np.testing.assert_allclose([i["portfolio_value"] for *_, i in steps], [0.8, 0.8, 0.96],
                               rtol=1e-12)


def test_bankruptcy_terminates(make_market):
    env = TradingEnv(make_market([100.0, 100.0, 250.0, 250.0]), window=1, mode="eval")
    env.reset()
    _, reward, terminated, _, info = env.step(SHORT)  # price +150% against a short
    assert terminated and info["portfolio_value"] == 0.0 and reward == pytest.approx(np.log(1e-6))


def test_observation_is_a_window_of_frames_with_held_positions():
    env = TradingEnv(synthetic_market("gbm", 400, seed=1), window=4, episode_length=50)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (4, NUM_FEATURES + 1) and obs.dtype == np.float32
    assert (obs[:, -1] == 0).all()
    held = [0.0]
    for action in [LONG, LONG, SHORT, FLAT, SHORT]:
        new_obs, *_ = env.step(action)
        np.testing.assert_array_equal(new_obs[:-1], obs[1:])
        held.append(env.positions[action])
        np.testing.assert_array_equal(new_obs[-len(held[-4:]):, -1], held[-4:])
        assert new_obs is not obs
        obs = new_obs


def test_train_episode_truncates_after_episode_length_and_seed_fixes_start():
    env = TradingEnv(synthetic_market("ou", 300, seed=0), window=8, episode_length=10)
    starts = set()
    for seed in range(5):
        _, info = env.reset(seed=seed)
        starts.add(info["step_index"])
        assert env.reset(seed=seed)[1]["step_index"] == info["step_index"]
        flags = [env.step(FLAT)[2:4] for _ in range(10)]
        assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
    assert len(starts) > 1
    with pytest.raises(RuntimeError):
        env.step(FLAT)


def test_eval_walks_the_whole_market_once():
    market = synthetic_market("ou", 100, seed=0)
    env = TradingEnv(market, window=8, mode="eval")
    _, info = env.reset()
    assert info["step_index"] == 8
    count, done = 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(LONG)
        done, count = terminated or truncated, count + 1
    assert terminated and info["step_index"] == len(market) - 1 and count == len(market) - 9


def test_too_short_market_is_a_clear_error(make_market):
    with pytest.raises(MarketDataError, match="needs at least 43 rows"):
        TradingEnv(make_market(np.linspace(100, 110, 40)), window=32, episode_length=10)
    with pytest.raises(MarketDataError, match="evaluation with window=32"):
        TradingEnv(make_market(np.linspace(100, 110, 33)), window=32, mode="eval")


def test_bad_settings_are_clear_errors(make_market):
    market = make_market(np.linspace(100, 110, 60))
    with pytest.raises(ValueError, match="mode"):
        TradingEnv(market, window=4, mode="test")
    with pytest.raises(ValueError, match="commission_bps"):
        TradingEnv(market, window=4, commission_bps=-1.0)
    with pytest.raises(ValueError, match="distinct"):
        TradingEnv(market, window=4, positions=(1.0, 1.0))
    env = TradingEnv(market, window=4, episode_length=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside Discrete"):
        env.step(3)


@pytest.mark.filterwarnings("ignore:.*infinity")  # unbounded Box: features are unbounded
def test_check_env_passes_and_id_is_registered():
    env = TradingEnv(synthetic_market("regime", 300, seed=0), window=8, episode_length=20)
    check_env(env, skip_render_check=True)
    made = gym.make(environments.ENV_ID, window=8, episode_length=20)
    assert made.unwrapped.metadata["observation_is_frame_window"]
    obs, _ = made.reset(seed=0)
    assert obs in made.observation_space
    made.close()
