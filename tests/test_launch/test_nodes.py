"""The evaluator's model selection and the actors' seeds, on the real nodes without Ray.

The evaluator is driven by a constant-action agent registered only here: each parameter
version names one action, so which version wins on validation and which would win on test
are known by construction.
"""

import json
import types

import numpy as np
import pytest

from agents.registry import AGENTS
from environments import EnvConfig, EnvFactory, MarketSource
from launch.distributed import nodes
from launch.run.recorder import Recorder

LONG, SHORT = 2, 0  # actions of positions (-1, 0, 1)


def constant_action_builder():
    def make_eval_policy(config, spec):
        return lambda params, obs: np.full(len(obs), int(params["action"]), np.int32)

    return types.SimpleNamespace(make_eval_policy=make_eval_policy)


def write_csv(path, closes):
    dates = np.datetime64("2020-01-01") + np.arange(len(closes))
    with open(path, "w") as file:
        file.write("date,open,high,low,close\n")
        for date, close in zip(dates, map(float, closes)):  # numpy 2's scalar repr is not a number
            file.write(f"{date},{close!r},{close * 1.01!r},{close * 0.99!r},{close!r}\n")


class Learner:
    """The variables a learner would serve: one parameter version at a time."""

    def __init__(self, action: int, version: int):
        self.set(action, version)

    def set(self, action: int, version: int) -> None:
        self._variables = {"params": {"action": np.int32(action)}, "version": version}

    def get_variables(self, names):
        return [self._variables[name] for name in names]


def make_evaluator(learner, source, run_dir):
    return nodes.EvaluatorNode(
        "constant_action", config=None, spec=None, learner=learner,
        recorder=Recorder(str(run_dir)), envs=EnvFactory(source, EnvConfig(window=2)),
        eval_every=10, workdir=str(run_dir))


@pytest.fixture
def evaluator(tmp_path, monkeypatch):
    # 300 daily bars: a noisy walk (train, 180), a noisy rise (validation, 60), a noisy fall (test, 60).
    rng = np.random.default_rng(0)
    drift = np.concatenate([np.zeros(180), np.full(60, 0.004), np.full(60, -0.004)])
    closes = 100.0 * np.exp(np.cumsum(drift + 0.002 * rng.standard_normal(300)))
    path = tmp_path / "bars.csv"
    write_csv(path, closes)
    monkeypatch.setitem(AGENTS, "constant_action", constant_action_builder())
    learner = Learner(LONG, version=10)
    return make_evaluator(learner, MarketSource(str(path)), tmp_path / "run"), learner


def test_the_test_evaluation_uses_the_best_validation_step_not_the_best_test_step(evaluator):
    node, learner = evaluator
    long_on_validation = node.evaluate()  # version 10: long, which gains on the rising validation
    learner.set(SHORT, version=20)
    short_on_validation = node.evaluate()  # version 20: short, which would gain on the falling test
    assert long_on_validation["sharpe"] > 1.0 > -1.0 > short_on_validation["sharpe"]
    assert node.best()["learner_steps"] == 10
    assert short_on_validation["best_learner_steps"] == 10
    assert "test_sharpe" not in short_on_validation  # no test figure during training

    test = node.evaluate_test()
    assert test["learner_steps"] == 10 and test["selected_by"] == "best validation sharpe"
    assert test["sharpe"] < -1.0  # long on the falling test split: the validation choice, kept
    assert test["sharpe"] == pytest.approx(test["sharpe_by_market"][0])
    assert test["buy_and_hold_sharpe"] == pytest.approx(test["sharpe"], abs=0.2)


def test_the_best_parameters_survive_a_new_evaluator(evaluator, tmp_path):
    node, learner = evaluator
    node.evaluate()
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "best.json").read_text())
    assert best["learner_steps"] == 10
    # A restored run's evaluator starts from the kept best, and tests the kept parameters.
    learner.set(SHORT, version=30)
    again = make_evaluator(learner, MarketSource(str(tmp_path / "bars.csv")), tmp_path / "run")
    assert again.best()["learner_steps"] == 10
    assert again.evaluate_test()["learner_steps"] == 10


def test_actor_seeds_differ_by_actor_and_by_incarnation():
    seeds = {nodes.actor_seed(0, actor, incarnation) for actor in range(4) for incarnation in range(3)}
    assert len(seeds) == 12
    assert nodes.actor_seed(0, 1, 0) == nodes.actor_seed(0, 1, 0)
    assert nodes.actor_seed(1, 1, 0) != nodes.actor_seed(0, 1, 0)


def test_recorder_counts_incarnations_per_node(tmp_path):
    recorder = Recorder(str(tmp_path))
    assert [recorder.register("actor_0") for _ in range(3)] == [0, 1, 2]
    assert recorder.register("actor_1") == 0
    recorder.close()


@pytest.mark.reverb
def test_actors_with_their_seeds_draw_different_exploration():
    import jax
    import reverb

    from agents import specs, testing
    from agents.apex_dqn import builder

    spec = specs.make_environment_spec(testing.CountingEnv())
    # epsilon 1 for every actor of the ladder: every action explores
    config = builder.make_config(hidden_sizes=(8,), epsilon_base=1.0)
    server = reverb.Server(builder.make_replay_tables(config, spec))
    try:
        params = builder.make_networks(config, spec).init(jax.random.PRNGKey(0))
        source = testing.StaticVariableSource({"params": params, "version": 0})
        observation = np.zeros((64, *spec.observation_shape), np.float32)

        def first_actions(actor_id, incarnation):
            actor = builder.make_actor(config, spec, source, f"localhost:{server.port}", actor_id,
                                       2, seed=nodes.actor_seed(0, actor_id, incarnation))
            actions = np.asarray(actor.select_action(observation)).copy()
            actor.close()
            return actions

        draws = [first_actions(0, 0), first_actions(1, 0), first_actions(0, 1)]
        assert not np.array_equal(draws[0], draws[1])  # two actors
        assert not np.array_equal(draws[0], draws[2])  # an actor and its restarted process
        np.testing.assert_array_equal(draws[0], first_actions(0, 0))  # seeded
    finally:
        server.stop()


class ToyLearner:
    """A learner of the toy agents below: counts its steps, records that it was closed."""

    closed = 0

    def __init__(self):
        self.version = 0

    def step(self):
        self.version += 1
        return {"learner/steps": float(self.version)}

    def get_variables(self, names):
        return [{"action": np.int32(LONG)} if name == "params" else self.version for name in names]

    def save(self):
        return {"version": np.int64(self.version)}

    def restore(self, state):
        self.version = int(state["version"])

    def close(self):
        ToyLearner.closed += 1


def toy_builder(checkpointed: bool):
    import reverb

    def make_replay_tables(config, spec):
        return [reverb.Table.queue("queue", max_size=100)]

    return types.SimpleNamespace(
        REPLAY_CHECKPOINTED=checkpointed, make_replay_tables=make_replay_tables,
        make_learner=lambda config, spec, address, seed: ToyLearner())


@pytest.mark.reverb
@pytest.mark.parametrize("checkpointed", [True, False])
def test_the_replay_is_kept_across_a_restore_only_when_the_builder_says_so(tmp_path, monkeypatch,
                                                                         checkpointed):
    import reverb

    monkeypatch.setitem(AGENTS, "toy", toy_builder(checkpointed))
    directory = str(tmp_path / "replay")
    first = nodes.ReplayNode("toy", None, None, checkpoint_dir=directory)
    client = reverb.Client(first.address())
    client.insert(np.float32(1.0), {"queue": 1.0})
    client.insert(np.float32(2.0), {"queue": 1.0})
    assert first.size() == 2
    first.close()
    again = nodes.ReplayNode("toy", None, None, checkpoint_dir=directory)
    assert again.size() == (2 if checkpointed else 0)
    again.close()


@pytest.mark.reverb
def test_closing_the_learner_node_closes_the_learner_after_its_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(AGENTS, "toy", toy_builder(True))
    replay = types.SimpleNamespace(address=lambda: "localhost:1")
    recorder = Recorder(str(tmp_path / "run"))
    learner = nodes.LearnerNode("toy", None, None, replay=replay, recorder=recorder, seed=0,
                                checkpoint_dir=str(tmp_path / "learner"), max_learner_steps=3)
    learner.run()
    closed = ToyLearner.closed
    learner.close()
    assert ToyLearner.closed == closed + 1
    assert (tmp_path / "learner" / "learner_3.msgpack").exists()
    recorder.close()
