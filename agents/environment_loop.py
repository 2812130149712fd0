"""Runs an actor on a gymnasium VectorEnv (next-step autoreset) and reports namespaced metrics."""

import contextlib
import threading
import time
from typing import Callable

import gymnasium as gym
import numpy as np

from agents import core

Logger = Callable[[dict[str, float]], None]


class EnvironmentLoop(core.Worker):
    """Steps B envs with one actor until told to stop or until a step limit.

    Per vector step: actions = actor.select_action(obs); env.step; actor.observe for the envs
    that made a real step; actor.observe_first for envs that the step only reset (gymnasium
    1.0's next-step autoreset); actor.update(). Counts env steps (real transitions) and
    finished episodes; every `log_every_s` seconds gives the logger
    `<label>/env_steps`, `<label>/env_steps_per_s`, `<label>/episodes`,
    `<label>/episode_return` (mean over episodes finished since the last report) and
    `<label>/param_version` when the actor has one.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        actor: core.Actor,
        *,
        label: str = "actor",
        should_stop: threading.Event | Callable[[], bool] | None = None,
        logger: Logger | None = None,
        log_every_s: float = 10.0,
        seed: int | None = None,
    ):
        self._env = env
        self._actor = actor
        self._label = label
        if isinstance(should_stop, threading.Event):
            should_stop = should_stop.is_set
        self._should_stop = should_stop or (lambda: False)
        self._logger = logger
        self._log_every_s = log_every_s
        self._seed = seed
        self.env_steps = 0
        self.episodes = 0
        self.metrics: dict[str, float] = {}

    def run(self, num_env_steps: int | None = None) -> dict[str, float]:
        """Runs until should_stop() or until num_env_steps more env steps; returns the last metrics."""
        env, actor = self._env, self._actor
        target = None if num_env_steps is None else self.env_steps + num_env_steps
        observation, _ = env.reset(seed=self._seed)
        actor.observe_first(observation)
        self._finished_returns: list[float] = []  # episode returns since the last report
        self._last_log_time, self._last_log_steps = time.monotonic(), self.env_steps
        try:
            self._loop(env, actor, observation, target)
        except BaseException:
            # What the actor did is reported also when it raised (e.g. its replay closed under
            # a blocked insert while the program stops); the original error is the one raised.
            with contextlib.suppress(Exception):
                self._report_since_last_log()
            raise
        self._report_since_last_log()
        return self.metrics

    def _loop(self, env, actor, observation, target) -> None:
        num_envs = observation.shape[0]
        resetting = np.zeros(num_envs, bool)  # envs whose next step only resets them
        episode_returns = np.zeros(num_envs, np.float64)
        while not self._should_stop() and (target is None or self.env_steps < target):
            actions = actor.select_action(observation)
            next_observation, reward, terminated, truncated, _ = env.step(actions)
            stepped = ~resetting
            actor.observe(actions, reward, next_observation, terminated, truncated, env_mask=stepped)
            if resetting.any():
                actor.observe_first(next_observation, env_mask=resetting)
            episode_returns += np.where(stepped, reward, 0.0)
            resetting = stepped & (np.asarray(terminated) | np.asarray(truncated))
            self._finished_returns.extend(episode_returns[resetting].tolist())
            episode_returns[resetting] = 0.0
            self.episodes += int(resetting.sum())
            self.env_steps += int(stepped.sum())
            observation = next_observation
            actor.update()
            if time.monotonic() - self._last_log_time >= self._log_every_s:
                self._report_since_last_log()

    def _report_since_last_log(self) -> None:
        now = time.monotonic()
        self._report(now - self._last_log_time, self.env_steps - self._last_log_steps, self._finished_returns)
        self._finished_returns = []
        self._last_log_time, self._last_log_steps = now, self.env_steps

    def _report(self, elapsed_s: float, new_env_steps: int, finished_returns: list[float]) -> None:
        label = self._label
        metrics = {
            f"{label}/env_steps": float(self.env_steps),
            f"{label}/env_steps_per_s": new_env_steps / max(elapsed_s, 1e-9),
            f"{label}/episodes": float(self.episodes),
        }
        if finished_returns:
            metrics[f"{label}/episode_return"] = float(np.mean(finished_returns))
        version = getattr(self._actor, "param_version", None)
        if version is not None:
            metrics[f"{label}/param_version"] = float(version)
        self.metrics = metrics
        if self._logger is not None:
            self._logger(metrics)
