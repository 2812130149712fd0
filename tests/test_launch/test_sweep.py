"""--sweep (launch/run/sweep.py): the parser's grids, lists and one-line errors, the members'
traced settings (the agent's hyperparameters: a different learning rate diverges, the same one
does not), the choice and trial count, and one tiny anakin run of a sweep end to end (with
population-based training's rounds)."""

import dataclasses
import json
import math
import os

import jax
import numpy as np
import pytest

from agents import specs, testing
from agents.apex_dqn import builder as apex_builder
from agents.apex_dqn import config as apex_config_module
from agents.config_checks import parse_overrides
from launch.run import sweep
from launch.run.sweep import SweepError, make_sweep, parse_grids

CONFIG = apex_config_module.make_config("small")


def make(text, num_seeds=1, **config):
    base = dataclasses.replace(CONFIG, **config)
    return make_sweep(
        text, seed=5, num_seeds=num_seeds, config=base,
        convert=lambda name, value: parse_overrides(f"{name}={value}", apex_config_module.Config)[name],
        check=lambda settings: apex_config_module.make_config("small", **settings),
        env_defaults={"risk_aversion": 24.0}, env_scale={"risk_aversion": 2.0})


def test_a_grid_is_every_combination_and_a_list_joins_grids():
    grid = make("learning_rate=1e-4,3e-4;risk_aversion=12,24", num_seeds=2)
    assert grid.names == ("learning_rate", "risk_aversion")
    assert [(s["learning_rate"], s["risk_aversion"]) for s in grid.settings] == [
        (1e-4, 12.0), (1e-4, 24.0), (3e-4, 12.0), (3e-4, 24.0)]
    assert grid.num_members == 8
    # Member m: setting m // seeds, seed --seed + m % seeds.
    assert grid.member(5) == {"member": 5, "seed": 6, "settings": {"learning_rate": 3e-4, "risk_aversion": 12.0}}
    listed = make("learning_rate=1e-4;discount=0.9|learning_rate=3e-4")
    # A setting a grid leaves out keeps the run's own value (the small preset's discount).
    assert listed.settings == ({"learning_rate": 1e-4, "discount": 0.9},
                               {"learning_rate": 3e-4, "discount": CONFIG.discount})
    assert parse_grids(" discount = 0.5 , 0.7 ") == [{"discount": ["0.5", "0.7"]}]


@pytest.mark.parametrize("text, message", [
    ("learning_rate", "'learning_rate' is not name=value"),
    ("learning_rate=1e-4,", "is not name=value"),
    ("discount=0.5;discount=0.7", "discount is given twice in one grid"),
    ("discount=0.5|discount=0.5", "is given twice"),
    ("learning_rate=-1", "learning_rate"),
    ("discount=fast", "discount=fast"),
    ("risk_aversion=-1", "risk_aversion=-1: expected a number >= 0"),
    ("risk_aversion=nan", "risk_aversion=nan: expected a number >= 0"),
    ("gamma=0.9", "unknown setting 'gamma'"),
])
def test_a_bad_sweep_is_one_line_naming_the_flag_and_value(text, message):
    with pytest.raises(SweepError) as error:
        make(text)
    assert str(error.value).startswith(f"--sweep={text}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_member_values_scale_the_learning_rate_and_refuse_a_shape():
    grid = make("learning_rate=1.5e-4,6e-4;risk_aversion=12", num_seeds=2)
    defaults = {"learning_rate_scale": 1.0, "discount": 0.8}  # an agent's AnakinAgent.hyperparameters
    agent, env = grid.member_values(defaults, CONFIG)
    np.testing.assert_allclose(agent["learning_rate_scale"], [0.5, 0.5, 2.0, 2.0])  # small: 3e-4
    np.testing.assert_allclose(env["risk_aversion"], [24.0] * 4)  # x the env's rescaling
    with pytest.raises(SweepError, match=r"batch_size changes array shapes .* settings taken per member: "
                                         r"discount, learning_rate, risk_aversion; run one program per batch_size"):
        make("batch_size=64,128").member_values(defaults, CONFIG)


def test_members_train_with_their_own_traced_learning_rate():
    """Three members of one vmapped cycle from one key: the same learning rate gives the same
    parameters bit for bit, another diverges; the config's values passed as traced ones give
    what the compiled-in constants give."""
    config = apex_builder.make_config(
        hidden_sizes=(8,), batch_size=8, n_step=3, discount=0.5, max_replay_size=40, min_replay_size=20,
        target_update_period=2, anakin_num_envs=2, anakin_rollout_steps=10, anakin_updates_per_cycle=2)
    agent = apex_builder.make_anakin(config, specs.make_environment_spec(testing.CountingEnv()),
                                     testing.make_counting_functional_env(), None)
    assert set(agent.hyperparameters) >= {"learning_rate_scale", "discount", "target_update_period",
                                          "priority_exponent", "epsilon_base", "epsilon_exponent"}
    env_params = testing.counting_env_params(5, True)
    keys = jax.numpy.stack([jax.random.PRNGKey(0)] * 3)
    states = jax.vmap(agent.init, in_axes=(0, None))(keys, env_params)
    values = {name: jax.numpy.full((3,), value, jax.numpy.float32) for name, value in agent.hyperparameters.items()}
    values["learning_rate_scale"] = jax.numpy.asarray([1.0, 1.0, 10.0])
    step = jax.jit(jax.vmap(agent.train_step, in_axes=(0, None, 0)))
    plain = jax.jit(agent.train_step)
    single = jax.tree.map(lambda x: x[0], states)
    for _ in range(4):
        states, _ = step(states, env_params, values)
        single, _ = plain(single, env_params)
    assert int(states.learner.step[0]) > 0
    params = [jax.tree.leaves(jax.tree.map(lambda x: np.asarray(x[m]), states.learner.params)) for m in range(3)]
    for same, other in zip(params[0], params[1]):
        np.testing.assert_array_equal(same, other)
    assert any(not np.allclose(a, b) for a, b in zip(params[0], params[2]))
    for traced, constant in zip(params[0], jax.tree.leaves(single.learner.params)):
        np.testing.assert_allclose(traced, np.asarray(constant), rtol=1e-4, atol=1e-6)


def test_the_chosen_member_and_the_trials_it_was_chosen_among():
    grid = make("discount=0.5,0.7", num_seeds=2)
    best = [{"sharpe": 1.0, "learner_steps": 10}, None, {"sharpe": 2.0, "learner_steps": 20},
            {"sharpe": 2.0, "learner_steps": 10}]
    assert sweep.choose(best) == 2  # the highest; ties: the first; None never wins
    curves = [(10, [1.0, -1.0, 0.5, 2.0]), (20, [0.0, -2.0, 2.0, 1.0])]
    section = sweep.section(grid, best, curves, 2, flat_candidate=True)
    assert section["num_trials"] == 9  # 4 members x 2 evaluations, + flat
    sharpes = [1.0, 0.0, -1.0, -2.0, 0.5, 2.0, 2.0, 1.0]
    assert section["validation_sharpe_variance"] == pytest.approx(np.var(sharpes, ddof=1))
    assert section["chosen_settings"] == {"discount": 0.7}
    assert section["members"][3] == {"member": 3, "seed": 6, "settings": {"discount": 0.7},
                                     "validation_curve": [[10, 2.0], [20, 1.0]], "best_sharpe": 2.0,
                                     "learner_steps": 10}
    assert not any("test" in key for member in section["members"] for key in member)


def test_the_tested_members_deflated_sharpe_counts_the_sweeps_trials():
    from environments.evaluation.significance import significance

    rng = np.random.default_rng(0)
    values = [np.cumprod(np.r_[1.0, 1 + 0.002 + 0.01 * rng.standard_normal(500)]) for _ in range(3)]
    test = {"periods_per_year": 252.0, "_results": [{"portfolio_values": v} for v in values]}

    def swept(num_trials, curve_sharpes):
        return {"num_trials": num_trials,
                "members": [{"validation_curve": [[10 * (i + 1), s] for i, s in enumerate(curve_sharpes)]}]}

    one = sweep.deflated_test(test, swept(1, [1.0, 1.0]))  # V = 0, N = 1: the PSR against 0
    returns = values[1][1:] / values[1][:-1] - 1
    assert one["deflated_sharpe_by_market"][1] == pytest.approx(significance(returns)["psr_vs_zero"])
    assert one["trials_sharpe_variance"] == 0.0
    many = sweep.deflated_test(test, swept(40, [0.0, 2.0, -1.0, 1.5]))
    assert many["num_trials"] == 40
    assert many["trials_sharpe_variance"] == pytest.approx(np.var([0.0, 2.0, -1.0, 1.5], ddof=1) / 252)
    assert all(m < o for m, o in zip(many["deflated_sharpe_by_market"], one["deflated_sharpe_by_market"]))
    assert many["deflated_sharpe"] == pytest.approx(np.median(many["deflated_sharpe_by_market"]))


@pytest.mark.e2e
def test_a_sweep_trains_its_members_in_one_program_and_tests_the_chosen_one(tmp_path):
    """With population-based training (--pbt_every=1, launch/run/pbt.py): one run covers both,
    and a second run of the same flags and seed repeats it."""
    import subprocess
    import sys

    from test_launch_anakin import TINY_ANAKIN
    from test_launch_apex import APEX, REPO_ROOT, SUMMARY_KEYS, _env, read_metrics, read_summary

    workdir, again = str(tmp_path / "run"), str(tmp_path / "again")
    text = "learning_rate=1e-4,1e-3;risk_aversion=0,24"
    # The run, and a second one with the same flags and seed, side by side (each compiles mostly
    # on one core): the second must repeat the first (checked at the end).
    runs = [subprocess.Popen([sys.executable, APEX, *TINY_ANAKIN, f"--sweep={text}", "--pbt_every=1",
                              "--max_learner_steps=30", f"--workdir={folder}"], cwd=REPO_ROOT, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for folder in (workdir, again)]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (_, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
    summary = read_summary(workdir)
    assert set(summary) == SUMMARY_KEYS | {"sweep"}  # no per-seed test figures: "seeds" is absent
    swept = summary["sweep"]
    assert swept["num_settings"] == swept["num_members"] == 4 and len(swept["members"]) == 4
    chosen = swept["members"][swept["chosen_member"]]
    assert chosen["best_sharpe"] == max(m["best_sharpe"] for m in swept["members"])
    assert summary["validation"]["best_sharpe"] == chosen["best_sharpe"]
    assert [m["settings"] for m in swept["members"]] == [
        {"learning_rate": lr, "risk_aversion": kappa} for lr in (1e-4, 1e-3) for kappa in (0.0, 24.0)]
    assert all([step for step, _ in m["validation_curve"]] == [10, 20, 30] for m in swept["members"])
    assert swept["num_trials"] == 4 * 3 + 1 and swept["validation_sharpe_variance"] > 0
    assert summary["test"]["num_markets"] == 8 and math.isfinite(summary["test"]["sharpe"])
    assert "sharpe_by_seed" not in summary["test"]  # one member tested
    # The tested member's deflated Sharpe counts the sweep's trials (sweep.deflated_test).
    assert summary["test"]["num_trials"] == swept["num_trials"]
    assert 0.0 <= summary["test"]["deflated_sharpe"] <= 1.0
    assert len(summary["test"]["deflated_sharpe_by_market"]) == 8
    assert [r["node"] for r in read_metrics(workdir)].count("test") == 1
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "best"))) == [f"seed_{m}" for m in range(4)]
    with open(os.path.join(workdir, "flags.txt")) as file:
        assert f"--sweep={text}" in file.read()
    json.dumps(summary)  # plain JSON

    # Population-based training: rounds after the evaluations of 10 and 20 (none once the run
    # stops), each replacing the lowest member by a perturbed copy of the highest.
    pbt = swept["pbt"]
    assert pbt["rounds"] == 2 and pbt["replaced_per_round"] == 1
    assert [copy["learner_steps"] for copy in pbt["lineage"]] == [10, 20]
    curves = {m["member"]: dict(m["validation_curve"]) for m in swept["members"]}
    for copy in pbt["lineage"]:
        step, member, source = copy["learner_steps"], copy["member"], copy["copied"]
        assert copy["sharpe"] == curves[member][step] and copy["source_sharpe"] == curves[source][step]
        assert curves[source][step] == max(sharpes[step] for sharpes in curves.values())
        assert curves[member][step] == min(sharpes[step] for sharpes in curves.values())
        assert 1e-4 <= copy["settings"]["learning_rate"] <= 1e-3
        assert 0 <= copy["settings"]["risk_aversion"] <= 24
    for member in swept["members"]:  # its initial settings, then one entry per copy it took
        copies = [c for c in pbt["lineage"] if c["member"] == member["member"]]
        assert member["settings_history"] == [[0, member["settings"]]] + [
            [c["learner_steps"], c["settings"]] for c in copies]
    in_force = [s for since, s in chosen["settings_history"] if since < chosen["learner_steps"]]
    assert swept["chosen_settings"] == in_force[-1]

    # Same flags and seed, same sweep: every member's curve, the rounds, the pick and its test.
    repeated = read_summary(again)
    assert repeated["sweep"] == swept
    timing = ("eval_s",)
    assert {k: v for k, v in repeated["test"].items() if k not in timing} == {
        k: v for k, v in summary["test"].items() if k not in timing}
    assert [r["pbt/round"] for r in read_metrics(workdir) if r["node"] == "pbt"] == [1, 2]
