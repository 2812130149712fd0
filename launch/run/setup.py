"""The run setup: every flag checked, the market loaded and the envs of each split built, before
any process starts or any agent code (jax, Reverb) is imported."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import math
import os
from typing import Any

from launch.run.limits import Limits


# The per-step volatility that reward_scale and --risk_aversion are quoted for: the default
# market's (daily bars moving ~1%), on which they were tuned. A market whose bars move less
# (hourly bars: ~0.1%) has proportionally smaller rewards, and so a variance penalty and value
# gaps that vanish next to the costs and the Q-values' noise (issue 30): both are rescaled to the
# training markets' own volatility, so that one set of defaults means the same at any bar size.
REFERENCE_VOLATILITY = 0.01


class UsageError(ValueError):
    """A flag value that cannot work; the message names the flag and what was expected."""


@dataclasses.dataclass
class Setup:
    """What a launch type needs to run: the checked flags and what was built from them."""

    launch_type: str  # local_mt, local_mp, ray or anakin
    ray_address: str | None
    agent: str
    agent_preset: str
    builder: Any  # the agent's builder module (agents.core.AgentBuilder)
    config: Any  # the agent's config dataclass
    spec: Any  # agents.specs.EnvironmentSpec of the training env
    data: str
    envs: Any  # environments.EnvFactory: the run's markets and the one EnvConfig of its envs
    workdir: str
    periods_per_year: float | None  # None: inferred from each market's bars
    annualization: str  # how the test split is annualized, for the user
    seed: int
    num_seeds: int
    num_actors: int
    envs_per_actor: int
    limits: Any  # launch.run.limits.Limits: the first one reached stops the run
    eval_every: int
    checkpoint_every: int
    restore: bool
    report_test_curve: bool
    flat_margin: float | None  # flat's margin in the selection (selection.py); None: no flat
    flags_text: str  # every flag's value, as flags.txt keeps them
    return_volatility: float = REFERENCE_VOLATILITY  # std of the training markets' step returns
    sweep: Any = None  # launch.run.sweep.Sweep of --sweep (anakin); None: no sweep
    pbt_every: int = 0  # population-based training every this many evaluations; 0: off
    pbt_fraction: float = 0.25  # the members replaced in each round (launch/run/pbt.py)

    @property
    def learner_dir(self) -> str:
        return os.path.join(self.workdir, "checkpoints", "learner")


def make_setup(flags: Any) -> Setup:
    """Validates every flag (loading the data and building the envs of each split); raises
    UsageError naming the flag, its value and what was expected."""
    counts = {"num_actors": 1, "envs_per_actor": 1, "window": 1, "episode_length": 1,
              "eval_every": 1, "synthetic_steps": 2, "synthetic_paths": 1, "validation_paths": 1,
              "test_paths": 1, "max_learner_steps": 0, "max_env_steps": 0, "checkpoint_every": 0,
              "num_seeds": 1}
    for name, minimum in counts.items():
        if getattr(flags, name) < minimum:
            raise UsageError(f"--{name}={getattr(flags, name)}: expected an integer >= {minimum}")
    if flags.risk_aversion is None:  # the agent's own kappa; flags.txt and summary show it
        flags.risk_aversion = _agent_risk_aversion(flags)
    if not (flags.max_seconds >= 0 and math.isfinite(flags.max_seconds)):
        raise UsageError(f"--max_seconds={flags.max_seconds}: expected a number >= 0")
    if not (0 < flags.train_fraction < 1 and 0 < flags.validation_fraction < 1
            and flags.train_fraction + flags.validation_fraction < 1):
        raise UsageError(f"--train_fraction={flags.train_fraction} "
                         f"--validation_fraction={flags.validation_fraction}: expected two numbers "
                         "in (0, 1) whose sum is < 1 (the rest is the test split)")
    if not (flags.flat_margin >= 0 and math.isfinite(flags.flat_margin)):
        raise UsageError(f"--flat_margin={flags.flat_margin}: expected a number >= 0 (standard "
                         "errors of the validation Sharpe; --noflat_candidate: no flat candidate)")
    if not (flags.periods_per_year >= 0 and math.isfinite(flags.periods_per_year)):
        raise UsageError(f"--periods_per_year={flags.periods_per_year}: expected a number > 0, "
                         "or 0 to infer it from the data")
    if flags.lp_launch_type == "ray" and not flags.ray_address:
        raise UsageError("--lp_launch_type=ray needs --ray_address=HOST:PORT of a running Ray cluster")
    if flags.ray_address and flags.lp_launch_type != "ray":
        raise UsageError(f"--ray_address is only used with --lp_launch_type=ray "
                         f"(got --lp_launch_type={flags.lp_launch_type})")
    if flags.sweep and flags.lp_launch_type != "anakin":
        raise UsageError(f"--sweep={flags.sweep}: many settings in one program need "
                         f"--lp_launch_type=anakin (got --lp_launch_type={flags.lp_launch_type})")
    if flags.pbt_every < 0 or (flags.pbt_every and not flags.sweep):
        raise UsageError(f"--pbt_every={flags.pbt_every}: expected 0 (off) or, with --sweep, a "
                         "number of validation evaluations >= 1 between rounds")
    if not 0 < flags.pbt_fraction <= 0.5:
        raise UsageError(f"--pbt_fraction={flags.pbt_fraction}: expected a number in (0, 0.5]")
    if flags.pbt_every and flags.restore:
        raise UsageError(f"--pbt_every={flags.pbt_every} --restore: a population's changed "
                         "settings are not in its checkpoints; start a new run")
    if flags.num_seeds != 1 and flags.lp_launch_type != "anakin":
        raise UsageError(f"--num_seeds={flags.num_seeds}: several seeds in one program need "
                         f"--lp_launch_type=anakin (got --lp_launch_type={flags.lp_launch_type}); "
                         "run the other launch types once per --seed")
    try:
        positions = [float(p) for p in flags.positions]
    except ValueError:
        raise UsageError(f"--positions={','.join(flags.positions)}: expected numbers separated "
                         "by commas, e.g. -1,0,1") from None
    workdir = _check_workdir(flags)
    embargo = check_folds(flags)

    # Data and envs first (numpy only); the agent's builder (jax, reverb) is imported last.
    from environments.evaluation.metrics import infer_periods_per_year

    envs, train_env, volatility, units, test_timestamps = _envs(flags, positions, embargo)
    if flags.periods_per_year:
        periods_per_year = flags.periods_per_year
        annualization = f"{flags.periods_per_year:g} periods per year (--periods_per_year)"
    else:
        periods_per_year = None
        annualization = (f"{infer_periods_per_year(test_timestamps)[1]} periods per "
                         "year, inferred from the bars (override: --periods_per_year)")
    builder, config = _agent(flags)  # jax, TensorFlow and Reverb load here, after the checks
    if hasattr(config, "reward_scale"):
        config = dataclasses.replace(config, reward_scale=config.reward_scale * units)
    spec = builder.make_environment_spec(train_env)
    train_env.close()
    sweep = _check_sweep(flags, config, units)
    if flags.pbt_every and sweep.num_members < 2:
        raise UsageError(f"--pbt_every={flags.pbt_every} --sweep={flags.sweep} "
                         f"--num_seeds={flags.num_seeds}: a population needs >= 2 members")
    _check_launch_packages(flags.lp_launch_type)  # the flags' own errors first
    return Setup(
        launch_type=flags.lp_launch_type, ray_address=flags.ray_address, agent=flags.agent,
        agent_preset=flags.agent_preset, builder=builder, config=config, spec=spec,
        data=flags.data, envs=envs, workdir=workdir,
        periods_per_year=periods_per_year, annualization=annualization, seed=flags.seed,
        num_seeds=flags.num_seeds, num_actors=flags.num_actors,
        envs_per_actor=flags.envs_per_actor,
        limits=Limits(flags.max_learner_steps, flags.max_env_steps, flags.max_seconds),
        eval_every=flags.eval_every, checkpoint_every=flags.checkpoint_every,
        restore=flags.restore, report_test_curve=flags.report_test_curve,
        flat_margin=flags.flat_margin if flags.flat_candidate else None,
        flags_text=flags.flags_into_string(), return_volatility=volatility, sweep=sweep,
        pbt_every=flags.pbt_every, pbt_fraction=flags.pbt_fraction,
    )


def _envs(flags: Any, positions: list[float], embargo: int) -> tuple[Any, Any, float, float, Any]:
    """(the run's env factory, a training env for the agent's spec, the training markets' step
    volatility, the rewards' rescaling 1% / that volatility, the test part's timestamps),
    loading the data and building every part's envs; UsageError naming the flags."""
    from environments import EnvFactory, MarketDataError, MarketSource
    from environments.data.panel_source import is_panel_source

    if is_panel_source(flags.data):
        return _panel_envs(flags, positions, embargo)

    market = MarketSource(
        flags.data, flags.date_format, flags.synthetic_steps, flags.synthetic_paths,
        flags.validation_paths, flags.test_paths, flags.seed, flags.train_fraction,
        flags.validation_fraction, flags.data_cache, folds=flags.folds, fold=flags.fold,
        fold_test_bars=flags.fold_test_bars, fold_validation_bars=flags.fold_validation_bars,
        fold_train_bars=flags.fold_train_bars, embargo=embargo,
        lookback=flags.window if flags.folds else 0)
    fold_flags = ("folds", "fold", "fold_test_bars", "fold_validation_bars", "fold_train_bars",
                  "embargo") if flags.folds else ()
    data_flags = " ".join([f"--data={flags.data}",
                           *(f"--{name}={getattr(flags, name)}" for name in fold_flags)])
    try:
        splits = market.load()
    except FileNotFoundError as error:
        raise UsageError(f"--data={flags.data}: {error.strerror}") from None
    except (MarketDataError, ValueError) as error:
        raise UsageError(f"{data_flags}: {error}") from None
    volatility = return_volatility(splits.train)
    units = REFERENCE_VOLATILITY / volatility if volatility > 0 else 1.0  # rewards' rescaling
    try:
        envs = EnvFactory(market, _env_config(flags, positions, units))
        train_env = envs.train_vector(num_envs=1)
        for part in ("validation", "test"):
            envs.eval_setups(part)
    except (MarketDataError, ValueError) as error:
        raise UsageError(f"{_env_flags(flags)}: {error}") from None
    return envs, train_env, volatility, units, splits.test[0].timestamps


def _panel_envs(flags: Any, positions: list[float], embargo: int) -> tuple[Any, Any, float, float, Any]:
    """_envs of a portfolio (--data=panel:<path> or synthetic:panel; docs/portfolios.md)."""
    import numpy as np

    from environments import MarketDataError
    from environments.data.panel_source import PanelSource, panel_path
    from environments.envs.portfolio_factory import PanelFactory

    try:
        source = PanelSource(
            panel_path(flags.data), flags.train_fraction, flags.validation_fraction,
            flags.date_format, flags.data_cache, synthetic_instruments=flags.synthetic_instruments,
            synthetic_steps=flags.synthetic_steps, seed=flags.seed, folds=flags.folds,
            fold=flags.fold, fold_test_bars=flags.fold_test_bars,
            fold_validation_bars=flags.fold_validation_bars, fold_train_bars=flags.fold_train_bars,
            embargo=embargo, lookback=flags.window if flags.folds else 0)
        splits = source.load()
    except FileNotFoundError as error:
        raise UsageError(f"--data={flags.data}: {error.strerror}") from None
    except (MarketDataError, ValueError) as error:
        raise UsageError(f"--data={flags.data}: {error}") from None
    train = splits.train
    volatility = float(np.std(train.step_returns[train.can_hold]))
    units = REFERENCE_VOLATILITY / volatility if volatility > 0 else 1.0
    try:
        envs = PanelFactory(source, _env_config(flags, positions, units))
        train_env = envs.train_env()
        for part in ("validation", "test"):
            envs.eval_env(part)
    except (MarketDataError, ValueError) as error:
        raise UsageError(f"{_env_flags(flags)}: {error}") from None
    return envs, train_env, volatility, units, splits.test.timestamps


def _env_config(flags: Any, positions: list[float], units: float) -> Any:
    """The EnvConfig of the run's envs (single instruments and portfolios): kappa in the
    rescaled rewards' units; a bad value is kept as given, for EnvConfig to report."""
    from environments import EnvConfig

    return EnvConfig(
        window=flags.window, positions=tuple(positions), commission_bps=flags.commission_bps,
        spread_bps=flags.spread_bps, borrow_bps_per_step=flags.borrow_bps_per_step,
        episode_length=flags.episode_length,
        risk_aversion=flags.risk_aversion * units if flags.risk_aversion >= 0
        else flags.risk_aversion)


def _env_flags(flags: Any) -> str:
    """The flags an EnvConfig is built from, as a UsageError names them."""
    names = ("window", "episode_length", "commission_bps", "spread_bps", "borrow_bps_per_step",
             "risk_aversion")
    return " ".join([*(f"--{name}={getattr(flags, name)}" for name in names),
                     f"--positions={','.join(flags.positions)}", f"--data={flags.data}"])


def return_volatility(markets: Any) -> float:
    """The standard deviation of the close-to-close step returns of `markets`, all together."""
    import numpy as np

    return float(np.std(np.concatenate([np.diff(m.close) / m.close[:-1] for m in markets])))


# What each launch type imports beyond the compiled path's stack (jax, flax, optax, numpy): the
# replay node is a Reverb server (Reverb loads TensorFlow), and Ray runs local_mp's and ray's nodes.
LAUNCH_PACKAGES = {"local_mt": ("reverb", "tensorflow"), "local_mp": ("reverb", "tensorflow", "ray"),
                   "ray": ("reverb", "tensorflow", "ray"), "anakin": ()}


def _check_launch_packages(launch_type: str) -> None:
    """UsageError when a package the launch type needs is not installed: requirements-today.txt's
    stack (no Reverb, TensorFlow or Ray) runs --lp_launch_type=anakin only (BUILD.md)."""
    missing = [name for name in LAUNCH_PACKAGES.get(launch_type, ())
               if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--lp_launch_type={launch_type} needs {', '.join(missing)}, not installed "
                         "in this Python (pip install -r requirements.txt, on Python 3.11); "
                         "--lp_launch_type=anakin runs without them")


def _check_sweep(flags: Any, config: Any, units: float) -> Any:
    """--sweep checked (launch/run/sweep.py): each setting's config fields through the agent's
    make_config with the preset and --agent_config; None without --sweep."""
    if not flags.sweep:
        return None
    from agents.config_checks import parse_overrides
    from agents.registry import get_config_module
    from launch.run import sweep

    module = get_config_module(flags.agent)
    overrides = parse_overrides(flags.agent_config, module.Config)
    try:
        return sweep.make_sweep(
            flags.sweep, seed=flags.seed, num_seeds=flags.num_seeds, config=config,
            convert=lambda name, text: parse_overrides(f"{name}={text}", module.Config)[name],
            check=lambda settings: module.make_config(preset=flags.agent_preset, **{**overrides, **settings}),
            env_defaults={"risk_aversion": flags.risk_aversion}, env_scale={"risk_aversion": units})
    except sweep.SweepError as error:
        raise UsageError(str(error)) from None


def _check_workdir(flags: Any) -> str:
    workdir = os.path.abspath(flags.workdir or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{flags.agent}"))
    learner_dir = os.path.join(workdir, "checkpoints", "learner")
    if flags.restore:
        from launch.run import checkpoints

        if not flags.workdir:
            raise UsageError("--restore needs --workdir, the folder of the run to continue")
        if not checkpoints.checkpoint_steps(learner_dir):
            raise UsageError(f"--restore: no learner checkpoint in {learner_dir}")
    elif os.path.isdir(workdir) and os.listdir(workdir):
        raise UsageError(f"--workdir={workdir} is not empty; pass --restore to continue that run "
                         f"or choose a new folder")
    return workdir


def check_folds(flags: Any) -> int:
    """Checks the walk-forward flags; returns the embargo in bars (0 without --folds)."""
    sizes = ("fold_test_bars", "fold_validation_bars", "fold_train_bars")
    if flags.folds < 0:
        raise UsageError(f"--folds={flags.folds}: expected an integer >= 0 (0: one split)")
    if not flags.folds:
        for name in ("fold", *sizes):
            if getattr(flags, name):
                raise UsageError(f"--{name}={getattr(flags, name)} needs --folds=K (K >= 1)")
        if flags.embargo != -1:
            raise UsageError(f"--embargo={flags.embargo} needs --folds=K (K >= 1)")
        return 0
    if not 0 <= flags.fold < flags.folds:
        raise UsageError(f"--fold={flags.fold}: expected an integer in [0, {flags.folds - 1}] "
                         f"(--folds={flags.folds}, 0 = the earliest)")
    for name in sizes:
        if getattr(flags, name) < 0:
            raise UsageError(f"--{name}={getattr(flags, name)}: expected an integer >= 0 "
                             "(0: the default)")
    config = _agent_config(flags)  # jax-free
    # the bars a learning target reaches ahead of its step
    horizon = getattr(config, "n_step", None) or getattr(config, "sequence_length", 2) - 1
    if flags.embargo == -1:
        return int(horizon)
    if flags.embargo < horizon:
        raise UsageError(f"--embargo={flags.embargo}: expected at least the agent's target "
                         f"horizon, {horizon} bars (-1: that horizon)")
    return flags.embargo


def _agent_risk_aversion(flags: Any) -> float:
    """The kappa agent --agent was tuned with (its config module's RISK_AVERSION; 0 without)."""
    from agents.registry import get_config_module

    try:
        return float(getattr(get_config_module(flags.agent), "RISK_AVERSION", 0.0))
    except ValueError as error:
        raise UsageError(str(error)) from None


def _agent(flags: Any) -> tuple[Any, Any]:
    """The agent's builder and its config (preset + --agent_config overrides), checked."""
    from agents.registry import get_builder

    config = _agent_config(flags)
    return get_builder(flags.agent), config


def _agent_config(flags: Any) -> Any:
    """The agent's config (preset + --agent_config overrides), checked; imports no builder."""
    from agents.config_checks import ConfigError, parse_overrides
    from agents.registry import get_config_module

    try:
        agent_config = get_config_module(flags.agent)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        overrides = parse_overrides(flags.agent_config, agent_config.Config)
    except ConfigError as error:
        raise UsageError(f"--agent_config: {error}") from None
    try:
        config = agent_config.make_config(preset=flags.agent_preset, **overrides)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--agent_preset={flags.agent_preset} --agent_config="
                         f"{flags.agent_config!r}: {error}") from None
    return config
