"""V-trace (agents/impala/losses.py, written as rlax writes it) against the paper's definition and rlax."""

import numpy as np
import pytest

from agents.impala import losses


def vtrace_by_definition(values, rewards, discounts, rhos, rho_bar, c_bar, lambda_, pg_rho_bar):
    """Espeholt et al. 2018, eq. 1, summed term by term (no recursion), with c_i = lambda min(c_bar, rho_i).

    Returns (v_s - V(x_s), rho_pg_s (r_s + gamma_s v_{s+1} - V(x_s))) for s = 0 .. T-2, with
    v_{T-1} = V(x_{T-1}) (lambda = 1 for the advantage, as in the paper).
    """
    learned = len(rewards)
    targets = np.zeros(learned + 1)
    targets[learned] = values[learned]
    for s in range(learned):
        total = values[s]
        for t in range(s, learned):
            weight = 1.0
            for i in range(s, t):
                weight *= discounts[i] * lambda_ * min(c_bar, rhos[i])
            delta = min(rho_bar, rhos[t]) * (rewards[t] + discounts[t] * values[t + 1] - values[t])
            total += weight * delta
        targets[s] = total
    errors = targets[:-1] - values[:-1]
    advantages = np.array([min(pg_rho_bar, rhos[s]) * (rewards[s] + discounts[s] * targets[s + 1] - values[s])
                           for s in range(learned)])
    return errors, advantages


def random_sequence(rng, length, with_episode_end):
    values = rng.normal(size=length).astype(np.float32)
    rewards = rng.normal(size=length - 1).astype(np.float32)
    discounts = np.full(length - 1, 0.9, np.float32)
    if with_episode_end:
        discounts[rng.integers(0, length - 1, size=2)] = 0.0  # terminations inside the sequence
    rhos = np.exp(rng.normal(scale=0.8, size=length - 1)).astype(np.float32)  # spans both sides of 1
    return values, rewards, discounts, rhos


@pytest.mark.parametrize("with_episode_end", [False, True])
@pytest.mark.parametrize("rho_bar, pg_rho_bar, lambda_", [(1.0, 1.0, 1.0), (0.5, 2.0, 1.0), (2.0, 1.0, 0.8)])
def test_vtrace_equals_the_papers_sum_on_random_sequences(with_episode_end, rho_bar, pg_rho_bar, lambda_):
    rng = np.random.default_rng(7)
    for _ in range(5):
        values, rewards, discounts, rhos = random_sequence(rng, 12, with_episode_end)
        out = losses.vtrace_targets(values, rewards, discounts, rhos, rho_bar, pg_rho_bar, lambda_)
        # rlax truncates the traces at c-bar = 1 (c_i = lambda min(1, rho_i)), as the paper's runs do.
        errors, advantages = vtrace_by_definition(values, rewards, discounts, rhos, rho_bar, 1.0, lambda_, pg_rho_bar)
        np.testing.assert_allclose(out.errors, errors, rtol=1e-4, atol=1e-5)
        if lambda_ == 1.0:
            np.testing.assert_allclose(out.pg_advantage, advantages, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("termination", [None, 4])
def test_on_policy_vtrace_is_the_n_step_bootstrapped_return(termination):
    rng = np.random.default_rng(3)
    gamma, length = 0.8, 9
    values = rng.normal(size=length).astype(np.float32)
    rewards = rng.normal(size=length - 1).astype(np.float32)
    discounts = np.full(length - 1, gamma, np.float32)
    if termination is not None:
        discounts[termination] = 0.0
    out = losses.vtrace_targets(values, rewards, discounts, np.ones(length - 1, np.float32), 1.0, 1.0, 1.0)
    for s in range(length - 1):
        end = length - 1 if termination is None or s > termination else termination + 1
        n_step_return = sum(gamma ** (t - s) * rewards[t] for t in range(s, end))
        if end == length - 1:
            n_step_return += gamma ** (end - s) * values[end]  # bootstrapped from the last row
        assert out.errors[s] + values[s] == pytest.approx(n_step_return, rel=1e-5, abs=1e-5)


def test_three_step_case_by_hand():
    # V = [1, 2, 3, 4], r = [1, 0, 2], gamma = 0.5, rho = [2, 0.5, 1]; rho-bar = c-bar = 1:
    # clipped rho = c = [1, 0.5, 1]
    # delta = [1 (1 + 0.5*2 - 1), 0.5 (0 + 0.5*3 - 2) = -0.25, 1 (2 + 0.5*4 - 3) = 1]
    # v_2 = 3 + 1 = 4;  v_1 = 2 - 0.25 + 0.5*0.5*(4 - 3) = 2;  v_0 = 1 + 1 + 0.5*1*(2 - 2) = 2
    # advantages: 1*(1 + 0.5*2 - 1) = 1,  0.5*(0 + 0.5*4 - 2) = 0,  1*(2 + 0.5*4 - 3) = 1
    out = losses.vtrace_targets(
        np.array([1.0, 2.0, 3.0, 4.0], np.float32), np.array([1.0, 0.0, 2.0], np.float32),
        np.full(3, 0.5, np.float32), np.array([2.0, 0.5, 1.0], np.float32), 1.0, 1.0, 1.0)
    np.testing.assert_allclose(out.errors + np.array([1.0, 2.0, 3.0]), [2.0, 2.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(out.pg_advantage, [1.0, 0.0, 1.0], atol=1e-6)


def test_a_final_observation_row_bootstraps_a_truncated_episode_and_nothing_leaks_across():
    # Rows: x0, x1 (last step of an episode cut by a time limit: discount 1), x2 its final
    # observation (valid False: rho 0), then x3, x4 of the next episode.
    gamma = 0.9
    values = np.array([0.5, 1.0, 2.0, 7.0, -3.0], np.float32)
    rewards = np.array([0.1, 0.2, 0.0, 5.0], np.float32)
    discounts = np.array([gamma, gamma, 0.0, gamma], np.float32)
    rhos = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
    out = losses.vtrace_targets(values, rewards, discounts, rhos, 1.0, 1.0, 1.0)
    targets = np.asarray(out.errors) + values[:-1]
    assert targets[1] == pytest.approx(0.2 + gamma * 2.0)  # r_1 + gamma V(final observation)
    assert targets[0] == pytest.approx(0.1 + gamma * (0.2 + gamma * 2.0))
    assert targets[2] == pytest.approx(2.0) and out.pg_advantage[2] == 0.0  # no target, no gradient
    changed = losses.vtrace_targets(values * np.array([1, 1, 1, 3, 3], np.float32), rewards * np.array([1, 1, 1, -2], np.float32),
                                      discounts, rhos, 1.0, 1.0, 1.0)
    np.testing.assert_allclose(np.asarray(changed.errors)[:3], np.asarray(out.errors)[:3], atol=1e-6)


@pytest.mark.parametrize("rho_bar, pg_rho_bar, lambda_", [(1.0, 1.0, 1.0), (0.5, 2.0, 0.8)])
def test_vtrace_equals_rlax_values_and_gradients(rho_bar, pg_rho_bar, lambda_):
    # agents/impala/losses.py writes V-trace itself (rlax loads TensorFlow); rlax is the reference.
    import jax
    rlax = pytest.importorskip("rlax")  # requirements.txt only: rlax loads TensorFlow

    values, rewards, discounts, rhos = random_sequence(np.random.default_rng(11), 10, with_episode_end=True)

    def ours(v):
        out = losses.vtrace_targets(v, rewards, discounts, rhos, rho_bar, pg_rho_bar, lambda_)
        return out, jax.numpy.sum(out.errors ** 2 + out.pg_advantage)

    def theirs(v):
        out = rlax.vtrace_td_error_and_advantage(v[:-1], v[1:], rewards, discounts, rhos, lambda_=lambda_,
                                                 clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar)
        return out, jax.numpy.sum(out.errors ** 2 + out.pg_advantage)

    out, _ = ours(values)
    reference, _ = theirs(values)
    for field in ("errors", "pg_advantage", "q_estimate"):
        np.testing.assert_allclose(getattr(out, field), getattr(reference, field), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda v: ours(v)[1])(values), jax.grad(lambda v: theirs(v)[1])(values),
                               rtol=1e-6, atol=1e-6)
