"""The in-graph prioritized replay (agents/jax_replay.py): FIFO blocks, holes, proportional
sampling, priority write-back and the importance weights the loss takes from a sample."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import jax_replay
from agents.apex_dqn import losses


def replay_with(priorities, capacity=8, block_size=2, exponent=1.0):
    state = jax_replay.init({"x": jnp.zeros([], jnp.float32)}, capacity, block_size=block_size)
    block = len(priorities)
    return jax_replay.add(state, {"x": jnp.arange(block, dtype=jnp.float32)}, jnp.asarray(priorities, jnp.float32),
                          exponent)


def test_add_writes_blocks_oldest_first_and_counts_only_items():
    state = replay_with([1.0, 0.0, 2.0, 3.0])  # slot 1 is a hole
    assert int(state.size) == 3 and int(state.insert_index) == 4
    state = jax_replay.add(state, {"x": jnp.full(4, 10.0)}, jnp.array([1.0, 1.0, 0.0, 1.0]), 1.0)
    assert int(state.size) == 6 and int(state.insert_index) == 0
    state = jax_replay.add(state, {"x": jnp.full(4, 20.0)}, jnp.array([0.0, 5.0, 5.0, 5.0]), 1.0)
    # The first block (3 items) was overwritten by 3 items: 6 held; the ring is back at slot 4.
    assert int(state.size) == 6 and int(state.insert_index) == 4
    np.testing.assert_array_equal(state.items["x"], [20, 20, 20, 20, 10, 10, 10, 10])
    np.testing.assert_array_equal(state.leaves, [0, 5, 5, 5, 1, 1, 0, 1])


def test_a_block_must_divide_the_capacity():
    with pytest.raises(ValueError, match="not a multiple of the 3 items"):
        replay_with([1.0, 1.0, 1.0])


def test_probabilities_are_p_to_the_alpha_over_their_sum_and_holes_are_never_sampled():
    # p = [1, 0, 4, 9, 0, 0, 0, 16], alpha = 0.5: p^alpha = [1, 0, 2, 3, 0, 0, 0, 4], sum 10.
    state = jax_replay.init({"x": jnp.zeros([])}, 8, block_size=2)
    state = jax_replay.add(state, {"x": jnp.arange(8.0)}, jnp.array([1.0, 0, 4, 9, 0, 0, 0, 16]), 0.5)
    sample = jax.jit(lambda k: jax_replay.sample(state, k, 20_000, block_size=2))(jax.random.PRNGKey(0))
    expected = np.array([0.1, 0, 0.2, 0.3, 0, 0, 0, 0.4])
    np.testing.assert_allclose(sample.probabilities, expected[np.asarray(sample.indices)], rtol=1e-6)
    np.testing.assert_array_equal(sample.items["x"], np.asarray(sample.indices, np.float32))
    frequencies = np.bincount(np.asarray(sample.indices), minlength=8) / 20_000
    np.testing.assert_allclose(frequencies, expected, atol=0.015)  # 3+ standard errors at n = 20k
    assert int(sample.size) == 4


def test_set_priorities_rewrites_the_sampled_slots_and_the_last_duplicate_wins():
    state = replay_with([1.0, 1.0, 1.0, 1.0], capacity=4, block_size=2)
    state = jax_replay.set_priorities(state, jnp.array([2, 0, 2]), jnp.array([9.0, 4.0, 16.0]), 0.5)
    np.testing.assert_allclose(state.leaves, [2.0, 1.0, 4.0, 1.0])  # slot 2: 16^0.5, not 9^0.5


def test_importance_weights_of_a_sample_against_hand_computed_values():
    # Four items of p = 1, 2, 3, 4 with alpha = 1: P = 0.1 .. 0.4, N = 4, beta = 0.5:
    # w_i = (N P_i)^-0.5 = [1/sqrt(0.4), 1/sqrt(0.8), 1/sqrt(1.2), 1/sqrt(1.6)], over max (the first).
    state = replay_with([1.0, 2.0, 3.0, 4.0], capacity=4, block_size=2)
    sample = jax_replay.sample(state, jax.random.PRNGKey(1), 64, block_size=2)
    weights = losses.importance_weights(sample.probabilities, jnp.full(64, sample.size, jnp.float32), beta=0.5)
    by_slot = np.sqrt(0.4) / np.sqrt(np.array([0.4, 0.8, 1.2, 1.6]))
    np.testing.assert_allclose(weights, by_slot[np.asarray(sample.indices)] / by_slot[np.asarray(sample.indices)].max(),
                               rtol=1e-6)
    assert set(np.asarray(sample.indices).tolist()) == {0, 1, 2, 3}  # all four drawn in 64 (seeded)
