"""A toy agent that exists only in the tests: proof that launch/ needs nothing of a given agent.

Run as a script it registers itself as --agent=toy (in this process only) and runs
launch/apex.py's main with the given flags. The agent is a bandit estimator: actors take
uniformly random actions and write (action, reward) items to a uniform table; the learner
moves its estimate of each action's mean reward towards the batch means; the greedy policy
takes the action with the highest estimate in every state.
"""

import dataclasses
import os
import sys
import threading
from typing import Any

import numpy as np

if __name__ == "__main__":  # run as a script from anywhere: the repository's packages first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from agents import core  # noqa: E402
from agents.config_checks import from_preset  # noqa: E402


@dataclasses.dataclass
class Config:
    learning_rate: float = 0.1  # step towards each batch's mean reward per action
    batch_size: int = 16
    max_size: int = 10_000
    table_name: str = "rewards"
    variable_update_period: int = 10

    def __post_init__(self):
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"toy config: learning_rate={self.learning_rate!r}: expected a number in (0, 1]")


PRESETS = {"small": {}}
REPLAY_CHECKPOINTED = True


def make_config(preset: str = "small", **overrides: Any) -> Config:
    return from_preset("toy", Config, PRESETS, preset, overrides)


def make_environment_spec(env: Any) -> Any:
    from agents import specs

    return specs.make_environment_spec(env)


def _signature() -> dict:
    import tensorflow as tf

    return {"action": tf.TensorSpec([], tf.int32), "reward": tf.TensorSpec([], tf.float32)}


def make_replay_tables(config: Config, spec: Any) -> list:
    import reverb

    return [reverb.Table(name=config.table_name, sampler=reverb.selectors.Uniform(),
                         remover=reverb.selectors.Fifo(), max_size=config.max_size,
                         rate_limiter=reverb.rate_limiters.MinSize(config.batch_size),
                         signature=_signature())]


class BanditLearner(core.Learner):
    def __init__(self, config: Config, spec: Any, replay_address: str):
        from agents import replay

        self._iterator = replay.sample_batches(replay_address, config.table_name, config.batch_size, 1)
        self._learning_rate = config.learning_rate
        self._params = {"mean_reward": np.zeros(spec.num_actions, np.float32)}
        self._version = 0
        self._lock = threading.Lock()

    def step(self) -> dict[str, float]:
        batch = next(self._iterator)
        estimate = self._params["mean_reward"].copy()
        for action in np.unique(batch.data["action"]):
            rewards = batch.data["reward"][batch.data["action"] == action]
            estimate[action] += self._learning_rate * (rewards.mean() - estimate[action])
        with self._lock:
            self._params, self._version = {"mean_reward": estimate}, self._version + 1
        return {"learner/steps": float(self._version), "learner/best_estimate": float(estimate.max())}

    def get_variables(self, names: list[str]) -> list[Any]:
        with self._lock:
            values = {"params": self._params, "version": self._version}
        return [values[name] for name in names]

    def save(self) -> dict[str, Any]:
        return {"params": self._params, "version": self._version}

    def restore(self, state: dict[str, Any]) -> None:
        self._params, self._version = state["params"], int(state["version"])


def make_learner(config: Config, spec: Any, replay_address: str, seed: int) -> BanditLearner:
    return BanditLearner(config, spec, replay_address)


class RandomActor(core.Actor):
    def __init__(self, config: Config, spec: Any, variable_source: core.VariableSource,
                 replay_address: str, seed: int):
        import reverb

        from agents.variable_client import VariableClient

        self._client = reverb.Client(replay_address)
        self._table = config.table_name
        self._writer = self._client.trajectory_writer(num_keep_alive_refs=1)
        self._variable_client = VariableClient(variable_source, "params", config.variable_update_period)
        self._rng = np.random.default_rng(seed)
        self._num_actions = spec.num_actions

    @property
    def param_version(self) -> int:
        return self._variable_client.version

    def select_action(self, observation: np.ndarray) -> np.ndarray:
        return self._rng.integers(0, self._num_actions, size=observation.shape[0]).astype(np.int32)

    def observe_first(self, observation: np.ndarray, env_mask: np.ndarray | None = None) -> None:
        pass

    def observe(self, action, reward, next_observation, terminated, truncated, env_mask=None) -> None:
        mask = np.ones(len(action), bool) if env_mask is None else np.asarray(env_mask, bool)
        for b in np.flatnonzero(mask):
            self._writer.append({"action": np.int32(action[b]), "reward": np.float32(reward[b])})
            self._writer.create_item(self._table, 1.0, {"action": self._writer.history["action"][-1],
                                                        "reward": self._writer.history["reward"][-1]})
        self._writer.flush(block_until_num_items=8)

    def update(self, wait: bool = False) -> None:
        self._variable_client.update(wait)

    def close(self) -> None:
        self._writer.close()
        self._variable_client.close()


def make_actor(config: Config, spec: Any, variable_source: core.VariableSource, replay_address: str,
               actor_id: int, num_actors: int, seed: int) -> RandomActor:
    return RandomActor(config, spec, variable_source, replay_address, seed)


def make_eval_policy(config: Config, spec: Any):
    def policy(params: Any, observation: np.ndarray) -> np.ndarray:
        best = int(np.argmax(np.asarray(params["mean_reward"])))
        return np.full(observation.shape[0], best, np.int32)

    return policy


if __name__ == "__main__":
    from absl import app

    from agents import registry
    from launch import apex

    registry.AGENTS["toy"] = sys.modules[__name__]  # this process only: nothing in agents/ names it
    app.run(apex.main, flags_parser=apex.parse_flags)
