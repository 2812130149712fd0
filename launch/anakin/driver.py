"""--lp_launch_type=anakin: the env, acting, replay and updates of an agent in one compiled
training cycle on this host's devices (launch/anakin/program.py), for any agent whose builder
offers make_anakin; `--num_seeds` agents at once (vmap), each selected on validation and tested
once by the run layer (launch/run/selection.py). With --sweep (launch/run/sweep.py) the members
are each setting times the seeds, and only the member chosen on validation is tested.

The workdir gets what the other launch types write: metrics.jsonl and TensorBoard
(launch/run/recorder.py), eval PNGs, learner checkpoints (the whole training state, so
--restore continues it exactly), best parameters per seed, and summary.json.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from environments.envs.portfolio_factory import PanelFactory
from launch.anakin.evaluation import SplitEvaluator, Validations, model_selection, test_member
from launch.run.portfolio_evaluation import PortfolioSplitEvaluator
from launch.anakin.program import Program
from launch.run import checkpoints, pbt, progress, summary, sweep
from launch.run.limits import CheckpointCadence, catch_signals
from launch.run.recorder import LOG_EVERY_S, Recorder
from launch.run.selection import next_evaluation
from launch.run.setup import Setup, UsageError

log = logging.getLogger(__name__)
VIEW_EVERY_S = 0.5  # progress line updates (a cycle takes milliseconds)


class Run:
    """The counters and timings of the training loop."""

    def __init__(self, setup: Setup):
        self.restored_step = 0
        self.cadence = CheckpointCadence(setup.checkpoint_every)
        self.learner_steps = 0  # each seed's (the seeds step together)
        self.env_steps = 0  # all seeds, all devices
        self.next_eval = setup.eval_every
        self.compile_s: float | None = None
        self.first_step_time: float | None = None
        self.replay_items: int | None = None  # in one seed's in-graph replay, all devices
        self.run_s = 0.0
        self.reason: str | None = None
        self.received: list[str] = []  # SIGINT / SIGTERM caught (launch.run.limits.catch_signals)


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
    evaluator = PortfolioSplitEvaluator if isinstance(setup.envs, PanelFactory) else SplitEvaluator
    splits = {part: evaluator(part, setup.envs, policy, setup.periods_per_year)
              for part in ("validation", "test")}
    run = Run(setup)
    # A Ctrl-C or SIGTERM from here on (compiling included) stops the run after its next cycle,
    # which then writes its checkpoints and summary as at any limit.
    with catch_signals(run.received):
        log.info("compiling the training cycle, its initialisation and the evaluation")
        compile_start = time.monotonic()
        program.compile([splits["validation"], *([splits["test"]] if setup.report_test_curve else [])])
        run.compile_s = time.monotonic() - compile_start
        log.info("compiled in %.1f s (%d device(s), %d member(s))", run.compile_s,
                 len(program.devices), program.num_members)
        os.makedirs(os.path.join(setup.workdir, "eval"), exist_ok=True)
        recorder = Recorder(setup.workdir)
        selection = model_selection(setup.workdir, program.num_members, splits, recorder,
                                    setup.report_test_curve, setup.flat_margin)
        validations = Validations(selection)
        try:
            population = None
            if setup.pbt_every:
                population = pbt.Population(
                    [setup.sweep.member(m)["settings"] for m in range(program.num_members)],
                    setup.pbt_every, setup.pbt_fraction, setup.seed)
            state = _train(setup, program, run, validations, recorder, population)
            if run.cadence.due_at_end(run.learner_steps):
                checkpoints.save(setup.learner_dir, run.learner_steps, jax.device_get(state))
            # The final parameters compete on validation, then each seed's selection is tested once.
            if validations.submitted_step != run.learner_steps:
                validations.submit(run.learner_steps, program.seed_params(state), final=True)
            validations.finish()
            if setup.sweep is None:
                tests = selection.test()
            else:  # the member chosen on validation, alone
                chosen = sweep.choose(selection.best)
                best, final = selection.best[chosen], selection.last_records[chosen]
                swept = sweep.section(setup.sweep, selection.best, validations.curves, chosen,
                                      setup.flat_margin is not None, population)
                log.info("sweep: member %d of %d chosen on validation (%s, seed %d)", chosen,
                         program.num_members, swept["chosen_settings"], setup.sweep.member(chosen)["seed"])
                tests = test_member(selection, chosen)
        finally:
            validations.close()
            recorder.close()
    if setup.sweep is None:
        validation, test, seeds = summary.selection(setup, selection.best, selection.last_records, tests)
        swept = None
    else:
        validation, test, seeds = summary.validation_metrics(best, final), summary.test_metrics(tests[0]), None
        test.update(sweep.deflated_test(tests[0], swept))  # the chosen member's, its trials counted
    return summary.finish(setup, summary.build(
        setup, launch_type="anakin", stop_reason=run.reason,
        counts=summary.Counts(env_steps=run.env_steps, learner_steps=run.learner_steps,
                              restored_step=run.restored_step, replay_items=run.replay_items,
                              wall_s=time.monotonic() - start, run_s=run.run_s),
        validation=validation, test=test,
        launch={
            "num_devices": len(program.devices),
            "compile_s": round(run.compile_s, 2),  # compiling the cycle, init and evaluation, before training
            "first_step_time": run.first_step_time,  # time.time() after the cycle of the first update
            "pid": os.getpid(),
        },
        errors=[], seeds=seeds, sweep=swept))


def _train(setup: Setup, program: Program, run: Run, validations: Validations,
           recorder: Recorder, population: pbt.Population | None = None) -> Any:
    """The training loop, from the initial (or restored) state to the first limit or signal;
    submits the evaluations, writes the learner checkpoints and records, runs the population's
    rounds (--pbt_every); returns the state."""
    import jax

    state = program.init(program.keys, program.env.params)
    if setup.restore:
        run.restored_step, state = _restore(setup, state, len(program.devices))
        run.cadence.saved(run.restored_step)
        run.learner_steps = run.restored_step
        run.next_eval = next_evaluation(run.restored_step, setup.eval_every)

    def log_learner(step_metrics: dict) -> None:
        metrics = {key: float(np.median(value))  # the median over devices and seeds
                   for key, value in jax.device_get(step_metrics).items()}
        recorder.write("learner", {**metrics, "learner_steps": run.learner_steps,
                                   "env_steps": run.env_steps, "pid": os.getpid()},
                       step=run.learner_steps)

    last_log = last_view = 0.0
    evaluations = 0
    with progress.ProgressLine(setup.limits.max_seconds) as view:
        running_since = time.monotonic()
        while True:
            state, step_metrics = program.train_step(state, program.env.params)
            learner, envs = jax.device_get(program.counters(state))  # [D, S] each
            run.learner_steps, run.env_steps = int(learner[0, 0]), int(envs.sum())
            if run.first_step_time is None and run.learner_steps > run.restored_step:
                run.first_step_time = time.time()  # the first update is done
            evaluated = run.learner_steps >= run.next_eval
            if evaluated:  # on the validations' thread
                validations.submit(run.learner_steps, program.seed_params(state))
                run.next_eval = next_evaluation(run.learner_steps, setup.eval_every)
                evaluations += 1
            if run.cadence.due(run.learner_steps):
                checkpoints.save(setup.learner_dir, run.learner_steps, jax.device_get(state))
                run.cadence.saved(run.learner_steps)
            now = time.monotonic()
            if now - last_log >= LOG_EVERY_S:
                log_learner(step_metrics)
                last_log = now
            if now - last_view >= VIEW_EVERY_S:
                run.replay_items = _replay_items(step_metrics, jax)
                view.update(now - running_since, run.env_steps, run.learner_steps,
                            validations.selection.last_record, run.replay_items)
                last_view = now
            run.reason = setup.limits.reason(run.learner_steps, run.env_steps // program.num_members,
                                             now - running_since, run.received)
            if run.reason:
                break
            if evaluated and population is not None and population.due(evaluations):
                state = _population_round(setup, program, validations, population, state,
                                          run.learner_steps, recorder)
    run.run_s = time.monotonic() - running_since
    run.replay_items = _replay_items(step_metrics, jax)
    log.info("stopping: %s", run.reason)
    log_learner(step_metrics)
    return state


def _population_round(setup: Setup, program: Program, validations: Validations,
                      population: pbt.Population, state: Any, step: int, recorder: Recorder) -> Any:
    """Waits for the evaluation of `step`, then exploits and explores (launch/run/pbt.py):
    the state with the replaced members' copies, the program with their new settings."""
    validations.wait()
    evaluated_step, sharpes = validations.curves[-1]
    assert evaluated_step == step, (evaluated_step, step)
    sources = population.round(step, sharpes)
    state = program.exploit(state, sources, population.rounds)
    program.set_member_values(setup.sweep.values_of(
        population.settings, dict(program.agent.hyperparameters), setup.config))
    copies = {m: int(source) for m, source in enumerate(sources) if source != m}
    log.info("population round %d at learner step %d: member <- copied %s", population.rounds,
             step, copies)
    recorder.write("pbt", {"round": population.rounds, "learner_steps": step,
                           "copies": len(copies), "pid": os.getpid()}, step=step)
    return state


def _restore(setup: Setup, initial: Any, num_devices: int) -> tuple[int, Any]:
    """(step, train_state) of the newest learner checkpoint, placed on the devices as the
    `initial` state is (so as the compiled cycle expects); UsageError when its shapes do not
    fit this run ([devices, seeds, ...], the seeds axis holding every member of a --sweep: the
    same --num_seeds, --sweep, devices and agent settings)."""
    import jax

    template = jax.device_get(initial)
    try:
        step, host_state = checkpoints.load_latest(setup.learner_dir, template)
    except ValueError as error:
        leaf = jax.tree.leaves(template)[0]
        raise UsageError(f"--restore: {error} (this run: [devices, seeds] = [{num_devices}, "
                         f"{np.shape(leaf)[1]}] leading every array, the first {np.shape(leaf)}); "
                         "continue it with the flags it was written with") from None
    return step, jax.device_put(host_state, jax.tree.map(lambda x: x.sharding, initial))


def _replay_items(step_metrics: dict, jax: Any) -> int | None:
    """Items in one seed's in-graph replay, over all devices (an agent without a replay, such as
    IMPALA's rollouts, reports no `replay_size`: None). The seeds' replays fill alike."""
    if "replay_size" not in step_metrics:
        return None
    return int(np.asarray(jax.device_get(step_metrics["replay_size"]))[:, 0].sum())
