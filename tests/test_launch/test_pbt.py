"""--pbt_every (launch/run/pbt.py): a round's exploit and explore by hand, its determinism, the
settings history the chosen evaluation's settings come from, and the exploit of the compiled
state (a tiny anakin run with rounds, end to end: tests/test_launch/test_sweep.py)."""

import json
import math

import numpy as np
import pytest

from launch.run.pbt import PERTURB, Population

SETTINGS = [{"learning_rate": lr, "target_update_period": period}
            for lr in (1e-4, 1e-3) for period in (10, 40)]


def test_a_round_replaces_the_lowest_with_perturbed_copies_of_the_highest():
    population = Population(SETTINGS, every=2, fraction=0.25, seed=7)
    assert population.num_replaced == 1 and not population.due(1) and population.due(2)
    sources = population.round(100, [0.5, 2.0, math.nan, 1.0])  # NaN ranks lowest
    assert sources.tolist() == [0, 1, 1, 3]  # member 2 takes the highest's (1) state
    copied = population.settings[2]
    for name, value in SETTINGS[1].items():
        low, high = population.bounds[name]
        assert copied[name] in {min(max(value * f, low), high) for f in PERTURB} or (
            copied[name] in {min(max(round(value * f), low), high) for f in PERTURB})
    assert isinstance(copied["target_update_period"], int)
    assert population.bounds == {"learning_rate": (1e-4, 1e-3), "target_update_period": (10, 40)}
    assert population.settings[:2] == SETTINGS[:2] and population.settings[3] == SETTINGS[3]
    (copy,) = population.lineage
    assert math.isnan(copy.pop("sharpe"))
    assert copy == {"round": 1, "learner_steps": 100, "member": 2, "copied": 1,
                    "source_sharpe": 2.0, "settings": copied}
    # Settings in force for member 2's evaluations: the old ones up to step 100, then the copy's.
    assert population.settings_at(2, 100) == SETTINGS[2]
    assert population.settings_at(2, 110) == copied
    section = population.section()
    assert section["rounds"] == 1 and section["replaced_per_round"] == 1
    json.dumps(section)


def test_rounds_are_deterministic_for_a_seed_and_stay_in_the_swept_range():
    def run(seed):
        population = Population(SETTINGS * 2, every=1, fraction=0.5, seed=seed)
        rng = np.random.default_rng(0)
        for step in range(1, 21):
            population.round(step * 10, rng.standard_normal(8).tolist())
        return population

    first, again, other = run(3), run(3), run(4)
    assert first.lineage == again.lineage and first.settings == again.settings
    assert first.lineage != other.lineage
    assert first.num_replaced == 4 and len(first.lineage) == 20 * 4
    for settings in first.settings:
        assert 1e-4 <= settings["learning_rate"] <= 1e-3
        assert 10 <= settings["target_update_period"] <= 40
    # The perturbation moved settings off the sweep's grid (explore), within its bounds.
    assert {s["learning_rate"] for s in first.settings} - {1e-4, 1e-3}


def test_the_exploit_copies_whole_member_states_and_refolds_the_copies_keys():
    from typing import NamedTuple

    import jax

    from launch.anakin.program import take_members

    class State(NamedTuple):
        params: jax.Array
        replay: jax.Array
        rng: jax.Array

    keys = np.asarray(jax.vmap(jax.random.PRNGKey)(np.arange(3)))
    state = State(np.arange(3.0)[:, None] * np.ones((3, 2)), np.arange(12).reshape(3, 4), keys)
    taken = jax.device_get(jax.jit(take_members)(state, np.array([0, 0, 2], np.int32), np.uint32(1)))
    np.testing.assert_array_equal(taken.params, [[0, 0], [0, 0], [2, 2]])
    np.testing.assert_array_equal(taken.replay, [[0, 1, 2, 3], [0, 1, 2, 3], [8, 9, 10, 11]])
    np.testing.assert_array_equal(taken.rng[[0, 2]], keys[[0, 2]])  # kept members: unchanged
    np.testing.assert_array_equal(taken.rng[1], jax.random.fold_in(keys[0], 1))
    assert not np.array_equal(taken.rng[1], keys[0])


def test_a_population_needs_two_members():
    with pytest.raises(ValueError, match=">= 2 members"):
        Population(SETTINGS[:1], every=1, fraction=0.25, seed=0)
