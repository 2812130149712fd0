"""Prioritized sampling and importance weights, on a real Reverb table."""

import numpy as np
import pytest
reverb = pytest.importorskip("reverb")  # requirements.txt's stack only (BUILD.md)

from agents import adders, replay, specs, testing
from agents.apex_dqn import losses

ALPHA = 0.6
LAYOUT = adders.TransitionLayout.from_spec(specs.make_environment_spec(testing.CountingEnv()), n_step=1)


@pytest.fixture(scope="module")
def server():
    server = reverb.Server([replay.make_prioritized_table("prioritized", LAYOUT, 100, priority_exponent=ALPHA)])
    yield server
    server.stop()


@pytest.fixture
def client(server):
    client = reverb.Client(f"localhost:{server.port}")
    client.reset("prioritized")
    return client


def test_sampling_frequencies_follow_priority_to_the_alpha(client):
    # Three one-step transitions (actions 0, 1, 2) with priorities 1, 4, 16.
    adder = adders.NStepAdder(client, "prioritized", LAYOUT, num_envs=1, discount=0.9)
    env = testing.CountingEnv(episode_length=3)
    adder.add_first(env.reset()[0][None])
    for action, priority in zip(range(3), [1.0, 4.0, 16.0]):
        observation, reward, terminated, truncated, _ = env.step(action)
        adder.add(np.array([action]), np.array([reward]), observation[None], np.array([terminated]), np.array([truncated]))
        adder.write(np.array([[priority]]))
    adder.close()

    expected = np.array([1.0, 4.0, 16.0]) ** ALPHA
    expected /= expected.sum()  # [0.1148, 0.2638, 0.6214]
    batch = next(replay.sample_batches(client.server_address, "prioritized", batch_size=20000))
    frequencies = np.bincount(batch.data["action"], minlength=3) / 20000
    # 0.02 is 5.8 binomial standard deviations (p = 0.62: std 0.0034), so a chance failure is
    # ~1e-8; alpha = 1 instead of 0.6 would be off by 0.14.
    np.testing.assert_allclose(frequencies, expected, atol=0.02)
    # The reported probabilities are exactly p_i^alpha / sum_k p_k^alpha.
    np.testing.assert_allclose(batch.probabilities, expected[batch.data["action"]], rtol=1e-6)
    assert np.all(batch.table_size == 3)


def test_importance_weights_match_the_formula():
    # N = 4, P = [0.1, 0.2, 0.3, 0.4], beta = 0.5: w = (N P)^-0.5 = [1.5811, 1.1180, 0.9129, 0.7906], / max.
    weights = losses.importance_weights(np.array([0.1, 0.2, 0.3, 0.4]), np.full(4, 4.0), beta=0.5)
    np.testing.assert_allclose(weights, [1.0, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.5], rtol=1e-6)


def test_rate_limiter_is_min_size_by_default_and_sample_to_insert_ratio_on_request():
    limiter = replay.make_prioritized_table("t", LAYOUT, 100, 0.6, min_size_to_sample=10).info.rate_limiter_info
    assert (limiter.min_size_to_sample, limiter.max_diff) == (10, np.finfo(np.float64).max)
    table = replay.make_prioritized_table("t", LAYOUT, 100, 0.6, min_size_to_sample=10, samples_per_insert=4.0)
    limiter = table.info.rate_limiter_info
    # error buffer = max(2 * 4, 10 * 4 * 0.1) = 8 samples around 10 * 4.
    assert (limiter.samples_per_insert, limiter.min_diff, limiter.max_diff) == (4.0, 32.0, 48.0)


def test_bad_table_sizes_are_named():
    with pytest.raises(ValueError, match=r"min_size_to_sample \(200\) <= max_size \(100\)"):
        replay.make_prioritized_table("t", LAYOUT, 100, 0.6, min_size_to_sample=200)
