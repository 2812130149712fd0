"""--sweep: many settings of one agent trained as the members of one compiled program
(--lp_launch_type=anakin), each setting times --num_seeds, and the member validation picks.

    --sweep="learning_rate=1e-4,3e-4;risk_aversion=12,24"      a grid: 2 x 2 = 4 settings
    --sweep="learning_rate=1e-4;discount=0.9|learning_rate=3e-4"   a list of two grids: 2 settings

`,` separates the values of one setting, `;` the settings of a grid (every combination), `|`
the grids of a list (their settings one after the other). A setting a grid leaves out keeps the
run's own value (its flag or --agent_config). Member m trains setting m // num_seeds with seed
--seed + m % num_seeds: the settings share their seeds' initial parameters and markets.

Only settings that change no array shape can differ inside one program: the env's
`risk_aversion` (an EnvParams leaf, in the flag's units) and the agent's per-member
hyperparameters (agents.core.AnakinAgent.hyperparameters: a config field, or `<field>_scale`, a
factor on the config's value, e.g. learning_rate). Any other config field is refused, naming it.

Selection (the run layer's, launch/run/selection.py, over all members): each member keeps its
best validation evaluation, and the member with the highest best validation Sharpe is chosen
(ties: the first), as environments/evaluation/trials.py's select_seed picks among seeds; only
that member is tested. Its trials, for a deflated Sharpe: every validation evaluation of every
member, and flat where it is a candidate (trials.num_trials).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Sequence

import numpy as np

# Env settings a member may take: flag name -> EnvParams field (reward-only: evaluation unchanged).
ENV_SETTINGS = {"risk_aversion": "risk_aversion"}


class SweepError(ValueError):
    """A --sweep that cannot run; the message names the setting and value."""


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The checked --sweep: its settings (each a dict of the swept names' values, as given) and
    the seeds of each."""

    text: str
    names: tuple[str, ...]  # every swept name, in the order first given
    settings: tuple[dict[str, Any], ...]  # each setting's values of all `names` (run's own where left out)
    num_seeds: int
    seed: int
    env_scale: dict[str, float]  # EnvParams value = given value x this (risk_aversion's rescaling)

    @property
    def num_members(self) -> int:
        return len(self.settings) * self.num_seeds

    def member(self, m: int) -> dict[str, Any]:
        """Member m's seed and settings."""
        return {"member": m, "seed": self.seed + m % self.num_seeds,
                "settings": dict(self.settings[m // self.num_seeds])}

    def member_values(self, defaults: dict[str, float], config: Any) -> tuple[dict, dict]:
        """(agent, env): {name: float32 [members]} of the agent's per-member `defaults`
        (AnakinAgent.hyperparameters) and of the swept env settings. SweepError naming a swept
        config field the agent cannot take per member."""
        return self.values_of([self.member(m)["settings"] for m in range(self.num_members)],
                              defaults, config)

    def values_of(self, settings: Sequence[dict[str, Any]], defaults: dict[str, float],
                  config: Any) -> tuple[dict, dict]:
        """member_values of the members' `settings` (one dict of the swept names' values each, as
        given: population-based training changes them, launch/run/pbt.py)."""
        agent = {}
        for name in self.names:
            if name in ENV_SETTINGS:
                continue
            if name in defaults:
                agent[name] = [float(s[name]) for s in settings]
            elif f"{name}_scale" in defaults:
                base = float(getattr(config, name))
                agent[f"{name}_scale"] = [float(s[name]) / base for s in settings]
            else:
                raise SweepError(f"--sweep={self.text}: {name} changes array shapes or is built into "
                                 "the compiled program, so it cannot differ between members of one "
                                 f"program; settings taken per member: {', '.join(takes(defaults))}; "
                                 f"run one program per {name}")
        env = {ENV_SETTINGS[name]: [float(s[name]) * self.env_scale[name] for s in settings]
               for name in self.names if name in ENV_SETTINGS}
        return ({name: np.asarray(values, np.float32) for name, values in agent.items()},
                {name: np.asarray(values, np.float32) for name, values in env.items()})


def takes(defaults: dict[str, float]) -> list[str]:
    """The names --sweep accepts for an agent with these per-member `defaults`."""
    return sorted({name.removesuffix("_scale") for name in defaults} | set(ENV_SETTINGS))


def parse_grids(text: str) -> list[dict[str, list[str]]]:
    """The grids of `text`, syntax only: [{name: [value text, ...]}, ...]. SweepError naming
    the part that is not name=value,value."""
    grids = []
    for grid_text in text.split("|"):
        grid: dict[str, list[str]] = {}
        for part in grid_text.split(";"):
            name, sep, values = part.partition("=")
            name = name.strip()
            values = [v.strip() for v in values.split(",")]
            if not sep or not name.isidentifier() or not all(values):
                raise SweepError(f"--sweep={text}: {part.strip()!r} is not name=value[,value...] "
                                 "(grids: name=v1,v2;name2=v3, a list of grids: grid|grid)")
            if name in grid:
                raise SweepError(f"--sweep={text}: {name} is given twice in one grid")
            grid[name] = values
        grids.append(grid)
    return grids


def make_sweep(text: str, *, seed: int, num_seeds: int, config: Any,
               convert: Callable[[str, str], Any], check: Callable[[dict[str, Any]], None],
               env_defaults: dict[str, float], env_scale: dict[str, float]) -> Sweep:
    """The checked sweep of `text`. `convert(name, text) -> value` types a config field's value
    (ValueError: an unknown field or a bad value), `check(settings)` checks one setting's config
    fields together (ValueError); `env_defaults`/`env_scale`: the env settings' flag values and
    rescaling. SweepError naming the flag, the setting and its value."""
    grids = parse_grids(text)
    names = list(dict.fromkeys(name for grid in grids for name in grid))
    defaults = {name: env_defaults[name] if name in ENV_SETTINGS else getattr(config, name, None)
                for name in names}
    settings = []
    for grid in grids:
        typed = {}
        for name, values in grid.items():
            typed[name] = [_value(text, name, value, convert) for value in values]
        for combination in itertools.product(*typed.values()):
            settings.append({**defaults, **dict(zip(typed, combination))})
    for setting in settings:
        agent_part = {k: v for k, v in setting.items() if k not in ENV_SETTINGS}
        try:
            check(agent_part)
        except (TypeError, ValueError) as error:
            shown = ",".join(f"{k}={v}" for k, v in agent_part.items())
            raise SweepError(f"--sweep={text}: {shown}: {error}") from None
    seen = set()
    for setting in settings:
        key = tuple(sorted(setting.items()))
        if key in seen:
            raise SweepError(f"--sweep={text}: the setting {dict(key)} is given twice")
        seen.add(key)
    return Sweep(text, tuple(names), tuple(settings), num_seeds, seed, dict(env_scale))


def _value(text: str, name: str, value: str, convert: Callable[[str, str], Any]) -> Any:
    if name in ENV_SETTINGS:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise SweepError(f"--sweep={text}: {name}={value}: expected a number >= 0")
        return number
    try:
        return convert(name, value)
    except (TypeError, ValueError) as error:
        raise SweepError(f"--sweep={text}: {name}={value}: {error}") from None


def choose(best: Sequence[dict | None]) -> int:
    """The member with the highest best validation Sharpe (None: never evaluated, last; ties:
    the first), as trials.select_seed picks among seeds."""
    from environments.evaluation.trials import select_seed

    return select_seed([None if b is None else b["sharpe"] for b in best])


def section(sweep: Sweep, best: Sequence[dict | None], curves: Sequence[tuple[int, list[float]]],
            chosen: int, flat_candidate: bool, population: Any = None) -> dict[str, Any]:
    """summary.json's `sweep`: every member's settings, validation curve and selection (no test
    figure), the chosen member, the trials (every member's validation evaluations, + flat
    where a candidate) and the variance (ddof=1) of their validation Sharpes (annualized, each
    the median over the validation markets). With population-based training (`population`,
    launch/run/pbt.Population): each member's settings history, the rounds' lineage, and as
    chosen_settings those the chosen evaluation trained under."""
    from environments.evaluation.trials import SeedTrials, num_trials

    members = []
    for m, member_best in enumerate(best):
        curve = [[step, sharpes[m]] for step, sharpes in curves]
        members.append({**sweep.member(m), "validation_curve": curve,
                        "best_sharpe": None if member_best is None else member_best["sharpe"],
                        "learner_steps": None if member_best is None else member_best["learner_steps"]})
        if population is not None:
            members[-1]["settings_history"] = population.history[m]
    trials = [SeedTrials(m["best_sharpe"], [[sharpe] for _, sharpe in m["validation_curve"]]) for m in members]
    sharpes = [sharpe for m in members for _, sharpe in m["validation_curve"]]
    chosen_settings = dict(sweep.settings[chosen // sweep.num_seeds])
    if population is not None and best[chosen] is not None:
        chosen_settings = population.settings_at(chosen, best[chosen]["learner_steps"])
    result = {
        "text": sweep.text,
        "names": list(sweep.names),
        "num_settings": len(sweep.settings),
        "num_members": sweep.num_members,
        "chosen_member": chosen,
        "chosen_settings": chosen_settings,
        "selected_by": "highest best validation sharpe over all members",
        "num_trials": num_trials([trials], flat_candidate),
        "validation_sharpe_variance": float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else None,
        "members": members,
    }
    if population is not None:
        result["pbt"] = population.section()
    return result


def deflated_test(test: dict[str, Any], swept: dict[str, Any]) -> dict[str, Any]:
    """What the chosen member's test record (with its per-market `_results`) says once its
    trials are counted: the deflated Sharpe ratio (Bailey and Lopez de Prado 2014) of each test
    market's per-step returns, for N = swept["num_trials"] and V = the per-period variance of
    the trials' validation Sharpes (environments/evaluation/trials.py), and their median over
    the markets. Read with the test, never to choose (it is a test figure)."""
    from environments.evaluation.metrics import step_returns
    from environments.evaluation.significance import significance
    from environments.evaluation.trials import per_period_variance

    sharpes = [sharpe for member in swept["members"] for _, sharpe in member["validation_curve"]]
    variance = per_period_variance(sharpes, test["periods_per_year"])
    dsrs = [significance(step_returns(result["portfolio_values"]), None, swept["num_trials"],
                         variance)["dsr"] for result in test["_results"]]
    return {"deflated_sharpe": float(np.median(dsrs)), "deflated_sharpe_by_market": dsrs,
            "num_trials": swept["num_trials"], "trials_sharpe_variance": variance}
