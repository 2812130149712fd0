"""--lp_launch_type=anakin: the env, acting, replay and updates of an agent in one compiled
training cycle on this host's devices (Podracer's Anakin), for any agent whose builder offers
make_anakin; `--num_seeds` agents at once (vmap), each selected on validation, tested once.

`pmap` over jax.local_devices() (axis "device": each device its own envs and replay shard,
gradients averaged) of `vmap` over seeds (their own parameters, replay, envs, exploration).
The workdir gets what the other launch types write (launch/distributed/driver.py): metrics.jsonl and
TensorBoard (launch/run/recorder.py), eval PNGs, learner checkpoints (the whole training state, so
--restore continues it exactly), best parameters per seed, and summary.json.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from launch.anakin import evaluation as anakin_eval
from launch.distributed.engine import catch_signals
from launch.run import checkpoints, progress, summary
from launch.run.recorder import LOG_EVERY_S, Recorder
from launch.run.setup import Setup, UsageError

log = logging.getLogger(__name__)
AXIS = "device"  # the pmap axis name the agent averages its gradients over
VIEW_EVERY_S = 0.5  # progress line updates (a cycle takes milliseconds)


class Program:
    """The compiled functions of one Anakin run: init, train_step, counters, policy params,
    all as pmap(vmap(...)) over [devices, seeds]."""

    def __init__(self, setup: Setup):
        import jax

        from agents import core
        from environments.envs.jittable import JaxTradingEnv

        self.devices = jax.local_devices()
        self.env = JaxTradingEnv(setup.envs.train_setup())
        if not hasattr(setup.builder, "make_anakin"):
            raise UsageError(f"--agent={setup.agent} has no make_anakin in its builder: it cannot "
                             "run under --lp_launch_type=anakin (use local_mt or local_mp)")
        # One device: jit, with a device axis of 1 kept by vmap (a one-device pmap made the
        # Ape-X cycle 25-35% slower, BUILD.md); pmap and gradients averaged from 2 devices on.
        many = len(self.devices) > 1
        try:
            agent = setup.builder.make_anakin(setup.config, setup.spec,
                                              core.FunctionalEnv(self.env.reset, self.env.step, self.env.observation_ref,
                                                                 self.env.observation_from_ref),
                                              AXIS if many else None)
        except ValueError as error:
            raise UsageError(f"--lp_launch_type=anakin --agent={setup.agent}: {error}") from None
        self.agent = agent

        def per_seed(fn: Any, donate: bool = False) -> Any:  # [devices, seeds, ...] in and out
            seeds = jax.vmap(fn, in_axes=(0, None))
            if many:
                return jax.pmap(seeds, axis_name=AXIS, in_axes=(0, None),
                                donate_argnums=(0,) if donate else ())
            return jax.jit(jax.vmap(seeds, in_axes=(0, None)), donate_argnums=(0,) if donate else ())

        self.init = per_seed(agent.init)
        self.train_step = per_seed(agent.train_step, donate=True)
        counters = jax.vmap(lambda state: (agent.learner_steps(state), agent.env_steps(state)))
        self.counters = jax.pmap(counters) if many else jax.jit(jax.vmap(counters))  # [D, S]
        # The policy parameters [D, S, ...] of every device (identical on every device); with one
        # device [S, ...], sliced inside jit so that the rest of the state (the replay) is not copied.
        seed_params = jax.vmap(agent.policy_params)
        self.policy_params = (jax.pmap(seed_params) if many else
                              jax.jit(lambda state: seed_params(jax.tree.map(lambda x: x[0], state))))
        self._many = many
        seeds = np.arange(setup.seed, setup.seed + setup.num_seeds)
        keys = jax.vmap(jax.random.PRNGKey)(seeds)  # [S, 2]: the same parameters on every device
        self.keys = np.broadcast_to(np.asarray(keys), (len(self.devices),) + keys.shape)

    def compile(self, splits: list[anakin_eval.SplitEvaluator]) -> None:
        """Compiles the cycle, the initialisation, the counters and the walks of `splits` before
        training. Tracing holds the interpreter lock and XLA's compilation does not, so this
        thread traces and lowers, the cycle first (the longest), while a pool compiles what is
        lowered: a cold start waits for the cycle's tracing and compilation, not for the sum of
        them all. The splits' baselines (Python) run while the cycle compiles."""
        from concurrent import futures

        import jax

        state = jax.eval_shape(self.init, self.keys, self.env.params)  # [D, S, ...] shapes
        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            done = [pool.submit(self.train_step.lower(state, self.env.params).compile),
                    pool.submit(self.init.lower(self.keys, self.env.params).compile)]
            done += [pool.submit(fn.lower(state).compile) for fn in (self.counters, self.policy_params)]
            params = jax.eval_shape(self.policy_params, state)
            if self._many:
                params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), params)
            for split in splits:
                split.compile(params)
                split.references  # noqa: B018  (computed once, kept)
            for future in done:
                future.result()

    def seed_params(self, state: Any) -> Any:
        """[S] policy parameters as host arrays (device 0's: identical on every device), which
        outlive `state`'s buffers (the next cycle reuses them)."""
        import jax

        params = self.policy_params(state)
        return jax.device_get(jax.tree.map(lambda x: x[0], params) if self._many else params)


def run(setup: Setup) -> int:
    """Trains to the first limit (or Ctrl-C, SIGTERM), selects each seed on validation, tests
    the selections once; writes the summary; returns the exit code."""
    import jax

    # On a CPU a computation then runs in the thread that calls it, so that the validations'
    # thread evaluates while the main thread trains (with asynchronous dispatch, the default,
    # the two would queue one behind the other). Read when the backend starts: before Program.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    start = time.monotonic()
    program = Program(setup)
    policy = setup.builder.make_eval_policy(setup.config, setup.spec)
    splits = {part: anakin_eval.SplitEvaluator(part, setup.envs, policy, setup.periods_per_year)
              for part in ("validation", "test")}
    run = Run(setup.eval_every)
    # A Ctrl-C or SIGTERM from here on (compiling included) stops the run after its next cycle,
    # which then writes its checkpoints and summary as at any limit.
    with catch_signals(run.received):
        log.info("compiling the training cycle, its initialisation and the evaluation")
        compile_start = time.monotonic()
        program.compile([splits["validation"], *([splits["test"]] if setup.report_test_curve else [])])
        run.compile_s = time.monotonic() - compile_start
        log.info("compiled in %.1f s (%d device(s), %d seed(s))", run.compile_s,
                 len(program.devices), setup.num_seeds)
        eval_dir = os.path.join(setup.workdir, "eval")
        os.makedirs(eval_dir, exist_ok=True)
        recorder = Recorder(setup.workdir)
        selection = anakin_eval.Selection(anakin_eval.best_dirs(setup.workdir, setup.num_seeds))
        validations = anakin_eval.Validations(splits["validation"], selection, recorder, eval_dir,
                                              splits["test"] if setup.report_test_curve else None)
        try:
            state = _train(setup, program, run, validations, recorder)
            if run.saved_step != run.learner_steps:
                checkpoints.save(setup.learner_dir, run.learner_steps, jax.device_get(state))
            # The final parameters compete on validation, then each seed's selection is tested once.
            if validations.submitted_step != run.learner_steps:
                validations.submit(run.learner_steps, program.seed_params(state), final=True)
            validations.finish()
            tests = _test(splits["test"], selection, setup.num_seeds, jax)
            splits["test"].plot(os.path.join(eval_dir, "test_equity.png"), tests)
            test_record = anakin_eval.median_record(tests)
            recorder.write("test", test_record, step=run.learner_steps)
        finally:
            validations.close()
            recorder.close()
    return _finish(setup, run, start, selection, validations.last_records, tests, test_record,
                   len(program.devices))


def _train(setup: Setup, program: Program, run: "Run", validations: anakin_eval.Validations,
           recorder: Recorder) -> Any:
    """The training loop, from the initial (or restored) state to the first limit or signal;
    submits the evaluations, writes the learner checkpoints and records; returns the state."""
    import jax

    state = program.init(program.keys, program.env.params)
    if setup.restore:
        run.restored_step, state = _restore(setup, state, len(program.devices))
        run.saved_step = run.learner_steps = run.restored_step
        run.next_eval = (run.restored_step // setup.eval_every + 1) * setup.eval_every

    def log_learner(step_metrics: dict) -> None:
        metrics = {key: float(np.median(value))  # the median over devices and seeds
                   for key, value in jax.device_get(step_metrics).items()}
        recorder.write("learner", {**metrics, "learner_steps": run.learner_steps,
                                   "env_steps": run.env_steps, "pid": os.getpid()},
                       step=run.learner_steps)

    last_log = last_view = 0.0
    with progress.ProgressLine(setup.max_seconds) as view:
        running_since = time.monotonic()
        while True:
            state, step_metrics = program.train_step(state, program.env.params)
            learner, envs = jax.device_get(program.counters(state))  # [D, S] each
            run.learner_steps, run.env_steps = int(learner[0, 0]), int(envs.sum())
            if run.first_step_time is None and run.learner_steps > run.restored_step:
                run.first_step_time = time.time()  # the first update is done
            if run.learner_steps >= run.next_eval:  # on the validations' thread
                validations.submit(run.learner_steps, program.seed_params(state))
                run.next_eval = (run.learner_steps // setup.eval_every + 1) * setup.eval_every
            if (setup.checkpoint_every and run.learner_steps // setup.checkpoint_every
                    > max(run.saved_step, 0) // setup.checkpoint_every):
                checkpoints.save(setup.learner_dir, run.learner_steps, jax.device_get(state))
                run.saved_step = run.learner_steps
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                log_learner(step_metrics)
                last_log = now
            if now - last_view >= VIEW_EVERY_S:
                run.replay_items = _replay_items(step_metrics, jax)
                view.update(now - running_since, {
                    "env_steps": run.env_steps, "learner_steps": run.learner_steps,
                    "replay_items": run.replay_items, "mean_param_lag": 0.0,
                    "eval": validations.last_record}, run.restored_step)
                last_view = now
            run.reason = _limit(setup, run.learner_steps, run.env_steps // setup.num_seeds,
                                now - running_since, run.received)
            if run.reason:
                break
    run.run_s = time.monotonic() - running_since
    run.replay_items = _replay_items(step_metrics, jax)
    log.info("stopping: %s", run.reason)
    log_learner(step_metrics)
    return state


class Run:
    """The counters and timings of the training loop."""

    def __init__(self, eval_every: int):
        self.restored_step = 0
        self.saved_step = -1
        self.learner_steps = 0  # each seed's (the seeds step together)
        self.env_steps = 0  # all seeds, all devices
        self.next_eval = eval_every
        self.compile_s: float | None = None
        self.first_step_time: float | None = None
        self.replay_items: int | None = None  # in one seed's in-graph replay, all devices
        self.run_s = 0.0
        self.reason: str | None = None
        self.received: list[str] = []  # SIGINT / SIGTERM caught (launch.distributed.engine.catch_signals)


def _restore(setup: Setup, initial: Any, num_devices: int) -> tuple[int, Any]:
    """(step, train_state) of the newest learner checkpoint, placed on the devices as the
    `initial` state is (so as the compiled cycle expects); UsageError when its shapes do not
    fit this run ([devices, seeds, ...]: the same --num_seeds, devices and agent settings)."""
    import jax

    template = jax.device_get(initial)
    try:
        step, host_state = checkpoints.load_latest(setup.learner_dir, template)
    except ValueError as error:
        leaf = jax.tree.leaves(template)[0]
        raise UsageError(f"--restore: {error} (this run: [devices, seeds] = [{num_devices}, "
                         f"{setup.num_seeds}] leading every array, the first {np.shape(leaf)}); "
                         "continue it with the flags it was written with") from None
    return step, jax.device_put(host_state, jax.tree.map(lambda x: x.sharding, initial))


def _limit(setup: Setup, learner_steps: int, env_steps: int, elapsed: float,
           received: list[str]) -> str | None:
    if received:
        return f"interrupted ({received[0]})"
    if setup.max_learner_steps and learner_steps >= setup.max_learner_steps:
        return f"limit: max_learner_steps={setup.max_learner_steps}"
    if setup.max_env_steps and env_steps >= setup.max_env_steps:
        return f"limit: max_env_steps={setup.max_env_steps}"
    if setup.max_seconds and elapsed >= setup.max_seconds:
        return f"limit: max_seconds={setup.max_seconds:g}"
    return None


def _test(split: anakin_eval.SplitEvaluator, selection: anakin_eval.Selection, num_seeds: int,
          jax: Any) -> list[dict[str, Any]]:
    """Each seed's selected parameters on the test markets, once."""
    params = [selection.params(s) for s in range(num_seeds)]
    tests = split.evaluate(jax.tree.map(lambda *leaves: np.stack(leaves), *params))  # [S, ...]
    for s, record in enumerate(tests):
        record.update(learner_steps=selection.best[s]["learner_steps"],
                      selected_by="best validation sharpe")
    return tests


def _finish(setup: Setup, run: Run, start: float, selection: anakin_eval.Selection,
            last_records: list[dict], tests: list[dict], test_record: dict, num_devices: int) -> int:
    seeds = []
    for s in range(setup.num_seeds):
        final = anakin_eval.loggable(last_records[s]) if last_records else {}
        seeds.append({"seed": setup.seed + s,
                      "validation": summary.validation_metrics(selection.best[s] or {}, final, {}),
                      "test": summary.test_metrics(anakin_eval.loggable(tests[s]))})
    validation = {key: _median([seed["validation"][key] for seed in seeds])
                  for key in seeds[0]["validation"]}
    test_metrics = summary.test_metrics(test_record)
    if setup.num_seeds > 1:
        test_metrics["sharpe_by_seed"] = [seed["test"]["sharpe"] for seed in seeds]
        validation["best_sharpe_by_seed"] = [seed["validation"]["best_sharpe"] for seed in seeds]
        validation["learner_steps_by_seed"] = [seed["validation"]["learner_steps"] for seed in seeds]
    run_s = run.run_s
    return summary.finish(setup, {
        **summary.common(setup, "anakin", run.reason),
        "num_actors": 0,  # no actor nodes: each device steps its envs in the compiled cycle
        "envs_per_actor": None,
        "num_seeds": setup.num_seeds,
        "num_devices": num_devices,
        "env_steps": run.env_steps,  # all seeds, all devices
        "learner_steps": run.learner_steps,  # each seed's
        "restored_from_step": run.restored_step if setup.restore else None,
        "restored_replay_items": None,
        "wall_s": round(time.monotonic() - start, 2),
        "run_s": round(run_s, 2),
        "compile_s": round(run.compile_s, 2),  # compiling the cycle, init and evaluation, before training
        "first_step_time": run.first_step_time,  # time.time() after the cycle of the first update
        "env_steps_per_s": run.env_steps / run_s if run_s > 0 else 0.0,
        "learner_steps_per_s": (run.learner_steps - run.restored_step) / run_s if run_s > 0 else 0.0,
        "replay_items": run.replay_items,  # in each seed's in-graph replay (None: it has none)
        "actor_pids": [],
        "env_steps_by_actor_process": {},
        "actor_restarts": 0,
        "node_pids": {"anakin": [os.getpid()]},
        "param_syncs": 0,
        "mean_param_lag": 0.0,  # acting always uses the newest parameters
        "validation": validation,
        "test": test_metrics,
        "eval": test_metrics,  # the test result, under its older name
        "seeds": seeds,
        "errors": [],
        "workdir": setup.workdir,
    })


def _replay_items(step_metrics: dict, jax: Any) -> int | None:
    """Items in one seed's in-graph replay, over all devices (an agent without a replay, such as
    IMPALA's rollouts, reports no `replay_size`: None). The seeds' replays fill alike."""
    if "replay_size" not in step_metrics:
        return None
    return int(np.asarray(jax.device_get(step_metrics["replay_size"]))[:, 0].sum())


def _median(values: list[Any]) -> Any:
    """The median of numbers (an int when they all are and it is whole); else the first."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        return values[0] if values else None
    median = float(np.median(numbers))
    return int(median) if all(isinstance(v, int) for v in numbers) and median.is_integer() else median
