"""The actor node: a TradingVectorEnv on the training markets stepped by the builder's actor,
with its seed and its view of the learner's variables."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from agents import core
from agents.registry import get_builder
from environments import EnvFactory
from launch.run.recorder import LOG_EVERY_S

log = logging.getLogger(__name__)


def actor_seed(seed: int, actor_id: int, incarnation: int) -> int:
    """The seed of actor `actor_id`'s exploration and episodes in its `incarnation`-th process
    (0 first, 1 after a restart, ...): distinct for every (run seed, actor, incarnation)."""
    entropy = [int(seed) % 2**32, int(actor_id), int(incarnation)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % 2**31)


class VariableSourceClient(core.VariableSource):
    """The learner as actors see it: `get_variables` whether it is local or in another process.

    Counts the parameter fetches (`param_syncs`) of the actor that owns it.
    """

    def __init__(self, learner: Any):
        self._learner = learner
        self.param_syncs = 0

    def get_variables(self, names: Sequence[str]) -> list[Any]:
        values = self._learner.get_variables(list(names))
        if "params" in names:
            self.param_syncs += 1
        return values


class ActorNode:
    """One actor: a TradingVectorEnv on the training markets stepped by the builder's actor.

    Its seed (exploration and episode starts) comes from the run seed, its actor id and its
    incarnation (how many processes of this actor the recorder has seen start), so actors draw
    different random numbers and a restarted actor does not repeat its predecessor's. Logs its
    env steps under its node label and process id, so steps of a restarted process are told
    apart from those of the one it replaced.
    """

    def __init__(
        self,
        agent: str,
        config: Any,
        spec: Any,
        learner: Any,
        replay: Any,
        recorder: Any,
        actor_id: int,
        num_actors: int,
        seed: int,
        envs: EnvFactory,
        envs_per_actor: int,
    ):
        from agents.environment_loop import EnvironmentLoop

        builder = get_builder(agent)
        self._label = f"actor_{actor_id}"
        self._learner = learner
        self._recorder = recorder
        self._stop = threading.Event()
        self.incarnation = int(recorder.register(self._label))
        self.seed = actor_seed(seed, actor_id, self.incarnation)
        self._env = envs.train_vector(envs_per_actor)
        self._variable_source = VariableSourceClient(learner)
        self._actor = builder.make_actor(
            config, spec, self._variable_source, replay.address(), actor_id, num_actors, self.seed
        )
        self._loop = EnvironmentLoop(
            self._env, self._actor, label=self._label, should_stop=self._stop, logger=self._log,
            log_every_s=LOG_EVERY_S, seed=self.seed,
        )

    def _log(self, metrics: Mapping[str, Any]) -> None:
        record = dict(metrics)
        record["pid"] = os.getpid()
        record["incarnation"] = self.incarnation
        record["param_syncs"] = self._variable_source.param_syncs
        version = record.get(f"{self._label}/param_version")
        if version is not None:
            learner_version = int(self._learner.get_variables(["version"])[0])
            record["param_lag"] = max(0, learner_version - int(version))
        self._recorder.write(self._label, record, step=record.get(f"{self._label}/env_steps"))

    def run(self) -> None:
        try:
            self._loop.run()
        except Exception:
            if self._stop.is_set():
                return  # the replay was closed under a blocked insert: we are stopping.
            raise

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        try:
            self._actor.close()  # flushes its replay writer
        except Exception as error:  # noqa: BLE001 - the replay may be closed already.
            log.warning("%s: closing the actor failed (was the replay closed first?): %s", self._label, error)
        self._env.close()
