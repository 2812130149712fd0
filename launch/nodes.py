"""The nodes of a distributed actor-learner run: replay, learner, actors, evaluator.

Each node only calls the agent's builder (looked up by name in agents/registry.py) and the
environments API; none knows how it was launched. Clients of other nodes arrive as
constructor arguments (the objects themselves under local_mt, Ray clients otherwise).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from agents import core
from agents.registry import get_builder
from environments import MarketSource
from launch import checkpoints
from launch.program import node_host

LOG_EVERY_S = 2.0  # seconds between metric records of one node

log = logging.getLogger("launch.nodes")


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


class ReplayNode:
    """The Reverb server with the builder's tables.

    When the builder says its replay is worth keeping (`REPLAY_CHECKPOINTED`), the tables are
    checkpointed into `checkpoint_dir` at close, and Reverb's checkpointer loads the newest
    checkpoint found there when the server starts, which is how --restore brings the replay
    contents back. Otherwise (an on-policy queue) the server starts empty and keeps nothing.
    """

    def __init__(self, agent: str, config: Any, spec: Any, checkpoint_dir: str):
        import reverb

        builder = get_builder(agent)
        tables = builder.make_replay_tables(config, spec)
        self._checkpointed = bool(getattr(builder, "REPLAY_CHECKPOINTED", True))
        checkpointer = (reverb.checkpointers.DefaultCheckpointer(path=checkpoint_dir)
                        if self._checkpointed else None)
        self._server = reverb.Server(tables, port=None, checkpointer=checkpointer)
        self._client = self._server.localhost_client()
        self._address = f"{node_host()}:{self._server.port}"
        self._closed = False

    def address(self) -> str:
        """host:port of the server, reachable from the other nodes."""
        return self._address

    def size(self) -> int:
        """Items now in all tables."""
        if self._closed:
            return self._final_size
        return int(sum(info.current_size for info in self._client.server_info().values()))

    def close(self) -> None:
        """Checkpoints the tables, then stops the server (unblocking any waiting client)."""
        if self._closed:
            return
        self._final_size = self.size()
        # A closed-early replay (see Launched.stop) may still take inserts while it checkpoints
        # (a learner's prefetch can let a rate-limited actor through): checkpoint again until
        # the item count before and after agree, so replay_items is what the checkpoint holds.
        for _ in range(5) if self._checkpointed else ():
            self._client.checkpoint()
            size = self.size()
            if size == self._final_size:
                break
            self._final_size = size
        self._closed = True
        self._server.stop()


class LearnerNode:
    """Steps the builder's learner; serves its variables; checkpoints every N steps and at the end."""

    def __init__(
        self,
        agent: str,
        config: Any,
        spec: Any,
        replay: Any,
        recorder: Any,
        seed: int,
        checkpoint_dir: str,
        max_learner_steps: int = 0,
        checkpoint_every: int = 1000,
        restore: bool = False,
    ):
        self._learner = get_builder(agent).make_learner(config, spec, replay.address(), seed)
        self._recorder = recorder
        self._checkpoint_dir = checkpoint_dir
        self._max_steps = max_learner_steps
        self._checkpoint_every = checkpoint_every
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._params_served = 0
        self._restored_step = 0
        if restore:
            self._restored_step, state = checkpoints.load_latest(checkpoint_dir, self._learner.save())
            self._learner.restore(state)
        self._steps = self._restored_step
        self._saved_step = self._restored_step if restore else -1

    # Served to other nodes while run() goes on (the learner's get_variables is thread-safe).
    def get_variables(self, names: Sequence[str]) -> list[Any]:
        if "params" in names:
            with self._lock:
                self._params_served += 1
        return self._learner.get_variables(list(names))

    def learner_steps(self) -> int:
        return self._steps

    def run(self) -> None:
        pid = os.getpid()
        last_log = time.monotonic()
        steps_at_last_log = self._steps
        metrics: Mapping[str, Any] = {}
        while not self._stop.is_set():
            if self._max_steps and self._steps >= self._max_steps:
                break
            try:
                metrics = self._learner.step()
            except Exception:
                if self._stop.is_set():
                    break  # the replay was closed under a sampling learner: we are stopping.
                raise
            self._steps += 1
            if self._checkpoint_every and self._steps % self._checkpoint_every == 0:
                self._save()
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                self._log(metrics, (self._steps - steps_at_last_log) / (now - last_log), pid)
                last_log, steps_at_last_log = now, self._steps
        self._log(metrics, None, pid)

    def _log(self, metrics: Mapping[str, Any], steps_per_s: float | None, pid: int) -> None:
        record = {key: value for key, value in metrics.items()}
        record.update(learner_steps=self._steps, params_served=self._params_served, pid=pid)
        if steps_per_s is not None:
            record["learner_steps_per_s"] = steps_per_s
        self._recorder.write("learner", record, step=self._steps)

    def _save(self) -> None:
        checkpoints.save(self._checkpoint_dir, self._steps, self._learner.save())
        self._saved_step = self._steps

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Writes the final checkpoint (unless this step is saved already), then closes the
        learner (its own threads and pending work)."""
        if self._saved_step != self._steps:
            self._save()
        try:
            self._learner.close()
        except Exception as error:  # noqa: BLE001 - e.g. a priority update to a closed replay
            log.warning("learner: closing the learner failed (was the replay closed first, "
                        "see Launched.stop?): %s", error)


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
        market: MarketSource,
        envs_per_actor: int,
        env_kwargs: Mapping[str, Any],
    ):
        from agents.environment_loop import EnvironmentLoop
        from environments import TradingVectorEnv

        builder = get_builder(agent)
        self._label = f"actor_{actor_id}"
        self._learner = learner
        self._recorder = recorder
        self._stop = threading.Event()
        self.incarnation = int(recorder.register(self._label))
        self.seed = actor_seed(seed, actor_id, self.incarnation)
        self._env = TradingVectorEnv(list(market.split("train")), num_envs=envs_per_actor,
                                     mode="train", **env_kwargs)
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


class EvaluatorNode:
    """Model selection on validation data, and one final evaluation on test data.

    Every `eval_every` learner steps it runs the greedy policy over the validation markets
    (one batched policy call per bar for all of them) and logs the median trading metrics
    with buy-and-hold and flat on the same markets. The parameters with the best validation
    Sharpe so far are kept in `best_dir` (`params.msgpack` and `best.json`, written
    atomically; read back on --restore). `evaluate_test` evaluates those parameters once on
    the test markets: no test figure is computed before it, unless `report_test_curve` asks
    for test metrics beside each validation evaluation, for plots only (they are logged under
    `evaluator/test_*` and never read by the selection).
    """

    def __init__(
        self,
        agent: str,
        config: Any,
        spec: Any,
        learner: Any,
        recorder: Any,
        market: MarketSource,
        env_kwargs: Mapping[str, Any],
        eval_every: int,
        eval_dir: str,
        best_dir: str,
        periods_per_year: float | None = None,
        report_test_curve: bool = False,
        poll_s: float = 1.0,
    ):
        from environments import TradingEnv

        self._policy = get_builder(agent).make_eval_policy(config, spec)
        self._envs = {part: [TradingEnv(m, mode="eval", **env_kwargs) for m in market.split(part)]
                      for part in ("validation", "test")}
        self._learner = learner
        self._recorder = recorder
        self._eval_every = eval_every
        self._eval_dir = eval_dir
        self._best_dir = best_dir
        self._periods_per_year = periods_per_year
        self._report_test_curve = report_test_curve
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one evaluation at a time (run loop or final)
        self._baselines: dict[str, dict[str, Any]] = {}  # part -> reference metrics
        self._last: dict[str, Any] | None = None
        self._best = checkpoints.load_best_metadata(best_dir)  # None, or best.json's contents
        self._evaluations = 0

    def run(self) -> None:
        next_step = None
        while not self._stop.wait(self._poll_s):
            (version,) = self._learner.get_variables(["version"])
            version = int(version)
            if next_step is None:  # a restored learner starts past 0.
                next_step = (version // self._eval_every + 1) * self._eval_every
            if version >= next_step:
                self.evaluate()
                next_step = (version // self._eval_every + 1) * self._eval_every

    def best(self) -> dict[str, Any] | None:
        """best.json: learner_steps and validation metrics of the kept parameters."""
        return None if self._best is None else dict(self._best)

    def evaluate(self) -> dict[str, Any]:
        """Evaluates the learner's newest parameters on validation (unless done already) and
        keeps them if their validation Sharpe is the best so far."""
        with self._lock:
            params, version = self._learner.get_variables(["params", "version"])
            version = int(version)
            if self._last is not None and self._last["learner_steps"] == version:
                return self._last
            path = os.path.join(self._eval_dir, f"validation_equity_{version}.png")
            record = self._evaluate(params, "validation", path)
            record["learner_steps"] = version
            self._evaluations += 1
            if self._best is None or record["sharpe"] > self._best["sharpe"]:
                self._best = {key: record[key] for key in (
                    "learner_steps", "sharpe", "total_return", "max_drawdown",
                    "buy_and_hold_sharpe", "num_markets")}
                checkpoints.save_best(self._best_dir, params, self._best)
            record.update(best_sharpe=self._best["sharpe"],
                          best_learner_steps=self._best["learner_steps"],
                          evaluations=self._evaluations)
            if self._report_test_curve:  # reported only; nothing reads it back
                test = self._evaluate(params, "test", None)
                record.update({f"test_{key}": test[key] for key in (
                    "sharpe", "total_return", "max_drawdown", "buy_and_hold_sharpe")})
            self._recorder.write("evaluator", record, step=version)
            self._last = record
            return record

    def evaluate_test(self) -> dict[str, Any]:
        """Evaluates the kept (best validation) parameters once on the test markets; the
        newest parameters when no validation evaluation was made."""
        with self._lock:
            if self._best is not None:
                params = checkpoints.load_best_params(self._best_dir)
                step, selected_by = self._best["learner_steps"], "best validation sharpe"
            else:
                params, step = self._learner.get_variables(["params", "version"])
                step, selected_by = int(step), "newest (no validation evaluation)"
            record = self._evaluate(params, "test", os.path.join(self._eval_dir, "test_equity.png"))
            record.update(learner_steps=step, selected_by=selected_by)
            self._recorder.write("test", record, step=step)
            return record

    def _evaluate(self, params: Any, part: str, plot_path: str | None) -> dict[str, Any]:
        from environments import median_metrics, run_episodes
        from environments.metrics import buy_and_hold, flat, plot_equity

        envs = self._envs[part]
        start = time.monotonic()

        def act(observations: np.ndarray) -> np.ndarray:  # [M, window, F + 1] -> [M]
            return np.asarray(self._policy(params, observations))

        results = run_episodes(envs, act, periods_per_year=self._periods_per_year)
        if part not in self._baselines:  # the same for every evaluation
            holds = [buy_and_hold(env, self._periods_per_year) for env in envs]
            flats = [flat(env, self._periods_per_year) for env in envs]
            self._baselines[part] = {"buy_and_hold": holds, "flat": flats}
        baselines = self._baselines[part]
        agent, hold = median_metrics(results), median_metrics(baselines["buy_and_hold"])
        record = {name: agent[name] for name in (
            "total_return", "annualized_return", "sharpe", "sortino", "max_drawdown",
            "turnover", "hit_rate")}
        record.update(
            buy_and_hold_return=hold["total_return"], buy_and_hold_sharpe=hold["sharpe"],
            buy_and_hold_max_drawdown=hold["max_drawdown"],
            flat_return=median_metrics(baselines["flat"])["total_return"],
            num_markets=len(envs), sharpe_by_market=[r["sharpe"] for r in results],
            periods_per_year=results[0]["periods_per_year"],
            annualization=results[0]["annualization"], eval_s=time.monotonic() - start,
        )
        if plot_path is not None:
            curves = {"agent": results[0]["portfolio_values"],
                      "buy_and_hold": baselines["buy_and_hold"][0]["portfolio_values"],
                      "flat": baselines["flat"][0]["portfolio_values"]}
            suffix = f" (market 1 of {len(envs)})" if len(envs) > 1 else ""
            plot_equity(plot_path, curves, timestamps=results[0]["timestamps"],
                        title=f"{part.capitalize()} equity on {envs[0].market.source}{suffix}")
            record["equity_plot"] = plot_path
        return record

    def stop(self) -> None:
        self._stop.set()
