"""EnvironmentLoop on a next-step-autoreset vector env: what the actor is told, counts and stopping."""

import threading

import numpy as np

from agents import core, testing
from agents.environment_loop import EnvironmentLoop


class RecordingActor(core.Actor):
    """Always picks action 1 and records every call it gets."""

    def __init__(self):
        self.calls = []
        self.param_version = 4

    def select_action(self, observation):
        return np.ones(observation.shape[0], np.int64)

    def observe_first(self, observation, env_mask=None):
        mask = np.ones(observation.shape[0], bool) if env_mask is None else env_mask
        self.calls.append(("first", observation[:, 0].tolist(), mask.tolist()))

    def observe(self, action, reward, next_observation, terminated, truncated, env_mask=None):
        self.calls.append(("step", reward.tolist(), env_mask.tolist()))

    def update(self, wait=False):
        self.calls.append(("update",))


def test_autoreset_steps_are_masked_and_restart_episodes():
    env = testing.make_vector_env(testing.CountingEnv, num_envs=2, episode_length=2)
    actor = RecordingActor()
    logged = []
    loop = EnvironmentLoop(env, actor, label="actor_3", logger=logged.append, log_every_s=1e9)
    metrics = loop.run(num_env_steps=8)
    steps = [call for call in actor.calls if call[0] != "update"]
    assert steps == [
        ("first", [0.0, 0.0], [True, True]),
        ("step", [1.0, 1.0], [True, True]),
        ("step", [2.0, 2.0], [True, True]),  # both episodes end here
        ("step", [0.0, 0.0], [False, False]),  # the autoreset step: nothing to record...
        ("first", [0.0, 0.0], [True, True]),  # ...but new episodes start
        ("step", [1.0, 1.0], [True, True]),
        ("step", [2.0, 2.0], [True, True]),
    ]
    assert sum(call[0] == "update" for call in actor.calls) == 5  # once per vector step
    assert metrics["actor_3/env_steps"] == 8 and metrics["actor_3/episodes"] == 4
    assert metrics["actor_3/episode_return"] == 3.0  # 1 + 2
    assert metrics["actor_3/param_version"] == 4
    assert logged == [metrics]


def test_stops_when_the_event_is_set():
    env = testing.make_vector_env(testing.CountingEnv, num_envs=3, episode_length=5)
    stop = threading.Event()
    actor = RecordingActor()
    actor.update = lambda wait=False: stop.set() if len(actor.calls) == 4 else None  # first + 3 steps
    metrics = EnvironmentLoop(env, actor, should_stop=stop).run()
    assert len(actor.calls) == 4
    assert metrics["actor/env_steps"] == 3 * 3


def test_an_actor_that_raises_still_gets_its_steps_reported():
    """A stopping program closes the replay under a blocked actor, whose observe then raises:
    the steps it made must reach the logger (the run's summary counts them), and the error
    must be the one raised."""

    class FailingActor(RecordingActor):
        def observe(self, *args, **kwargs):
            if sum(call[0] == "step" for call in self.calls) == 3:
                raise RuntimeError("replay closed")
            super().observe(*args, **kwargs)

    reports = []
    env = testing.make_vector_env(testing.CountingEnv, num_envs=2, episode_length=10)
    loop = EnvironmentLoop(env, FailingActor(), label="actor_0", logger=reports.append, log_every_s=1e9)
    try:
        loop.run()
    except RuntimeError as error:
        assert str(error) == "replay closed"
    else:
        raise AssertionError("the actor's error was swallowed")
    assert reports and reports[-1]["actor_0/env_steps"] == 6.0  # 3 steps of 2 envs
