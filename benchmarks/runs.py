"""Shared by the learning and scaling benchmarks: run `launch/apex.py` as a user would (a
subprocess), read back what the run wrote, and the reference policies they compare with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Market seeds from here on are kept for reported figures (benchmarks/learning.py,
# walk_forward.py): no tuning tool draws a market from them (docs/results.md, "Protocol").
REPORT_SEEDS_START = 1000
# What a sealed test record keeps: how the run selected and annualized, no figure.
SEALED_TEST_KEYS = ("policy", "selected_by", "learner_steps", "flat_threshold", "num_markets",
                    "periods_per_year", "annualization")

# The OU generator's defaults (environments.data.synthetic.ou_market); the rule below knows them.
OU_MEAN_REVERSION = 0.05
OU_VOLATILITY = 0.01
OU_MEAN_PRICE = 100.0

@dataclasses.dataclass
class Run:
    """What one `launch/apex.py` run left in its workdir (or one seed of an anakin run of
    several seeds: see `for_seed`)."""

    workdir: pathlib.Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]  # metrics.jsonl, in order
    command_start: float | None = None  # time.time() when the command was started
    best_dir: pathlib.Path | None = None  # the selected parameters (default: checkpoints/best)

    def __post_init__(self):
        if self.best_dir is None:
            self.best_dir = self.workdir / "checkpoints" / "best"

    def for_seed(self, index: int) -> "Run":
        """Seed `index` of an anakin --num_seeds run, as if it had run alone: its validation
        and test in the summary, its Sharpe in the evaluator's records, its best parameters."""
        seeds = self.summary.get("seeds") or []
        if len(seeds) <= 1:
            return self
        seed = seeds[index]
        summary = dict(self.summary, seed=seed["seed"], validation=seed["validation"],
                       test=seed["test"])
        records = []
        for record in self.records:
            if record["node"] == "evaluator":
                record = dict(record)
                for key in [k for k in record if k.endswith("_by_seed")]:
                    record[key[: -len("_by_seed")]] = record[key][index]
            records.append(record)
        return Run(self.workdir, summary, records, self.command_start,
                   self.workdir / "checkpoints" / "best" / f"seed_{index}")

    def first_step_time(self) -> float | None:
        """time.time() of the first learner update: anakin's summary has it; the learner node
        logs a record right after its first step."""
        first = self.summary.get("launch", {}).get("first_step_time")
        if first:
            return first
        for record in self.node_records("learner"):
            if record.get("learner/learner_steps", 0) > (self.summary.get("restored_from_step") or 0):
                return record["time"]
        return None

    def sharpe_reached(self, threshold: float) -> dict[str, Any] | None:
        """The first evaluator record with validation Sharpe >= `threshold`, or None."""
        for record in self.node_records("evaluator"):
            if float(record.get("evaluator/sharpe", float("-inf"))) >= threshold:
                return record
        return None

    def seconds_to_sharpe_from(self, threshold: float, origin: str) -> float | None:
        """Seconds to the first validation Sharpe >= `threshold`, counted from the command's
        start (origin "start": process start-up and compilation included) or from the first
        learner update (origin "first_step")."""
        record = self.sharpe_reached(threshold)
        since = self.command_start if origin == "start" else self.first_step_time()
        return None if record is None or since is None else record["time"] - since

    def best_validation(self) -> tuple[float | None, float | None, int | None]:
        """(best validation Sharpe, seconds from the command's start, learner step) of the
        first evaluation that reached the run's best."""
        records = self.node_records("evaluator")
        if not records:
            return None, None, None
        best = max(records, key=lambda r: float(r["evaluator/sharpe"]))
        seconds = best["time"] - self.command_start if self.command_start else None
        return float(best["evaluator/sharpe"]), seconds, int(best["evaluator/learner_steps"])

    def node_records(self, prefix: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record["node"].startswith(prefix)]

    def eval_curve(self, key: str = "sharpe") -> list[tuple[float, int, float]]:
        """(seconds since the recorder started, learner step, validation `key`) of every
        evaluation; key="test_sharpe" reads the test curve of a --report_test_curve run."""
        return [(r["elapsed_s"], int(r["evaluator/learner_steps"]), float(r[f"evaluator/{key}"]))
                for r in self.node_records("evaluator") if f"evaluator/{key}" in r]

    def episode_return_curve(self) -> list[tuple[float, float]]:
        """(seconds, mean training episode return) from every actor record that has one."""
        points = []
        for record in self.node_records("actor_"):
            key = f"{record['node']}/episode_return"
            if key in record:
                points.append((record["elapsed_s"], float(record[key])))
        return points

    def seconds_to_sharpe(self, threshold: float) -> float | None:
        """Seconds from the start of the run to the first validation Sharpe >= `threshold`."""
        for seconds, _, sharpe in self.eval_curve():
            if sharpe >= threshold:
                return seconds
        return None


def run_apex(workdir: pathlib.Path, flags: Sequence[str], timeout_s: float) -> Run:
    """Runs launch/apex.py with `flags` into `workdir` (which must not hold a run yet)."""
    workdir = pathlib.Path(workdir)
    if (workdir / "summary.json").exists():
        raise FileExistsError(f"{workdir} already holds a run; pass another --out")
    command = [sys.executable, str(REPO_ROOT / "launch" / "apex.py"), f"--workdir={workdir}", *flags]
    print("$", " ".join(command[1:]), flush=True)
    start = time.monotonic()
    command_start = time.time()
    log_path = workdir.parent / f"{workdir.name}.log"
    workdir.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   timeout=timeout_s, check=False)
    if completed.returncode != 0:
        tail = log_path.read_text().splitlines()[-20:]
        raise RuntimeError(f"launch/apex.py exited {completed.returncode} (log: {log_path}):\n"
                           + "\n".join(tail))
    summary = json.loads((workdir / "summary.json").read_text())
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    print(f"  done in {time.monotonic() - start:.0f} s: {summary['learner_steps']} learner steps, "
          f"{summary['env_steps']} env steps", flush=True)
    return Run(workdir, summary, records, command_start)


def fold_embargo(agents: list[str], embargo: int, folds: int, apex_flags: list[str]) -> int:
    """The embargo every run gets: `embargo`, or with -1 the largest target horizon of `agents`
    (as apex.py resolves -1 for one agent, with the agent settings in `apex_flags`), so that
    every agent and baseline is walked through the same folds."""
    if embargo != -1:
        return embargo
    import types

    from launch.run import setup

    settings = {"agent_preset": "small", "agent_config": ""}  # apex.py's defaults
    for word in apex_flags:
        name, _, value = word.removeprefix("--").partition("=")
        if name in settings:
            settings[name] = value
    horizons = []
    for agent in agents:
        flags_of_one = types.SimpleNamespace(
            agent=agent, folds=folds, fold=0, embargo=-1, fold_test_bars=0,
            fold_validation_bars=0, fold_train_bars=0, **settings)
        horizons.append(setup.check_folds(flags_of_one))  # launch.run.setup's resolution of -1
    return max(horizons)


def check_one_geometry(fold_runs: dict[str, list[list[Run]]]) -> None:
    """Every run of a fold, whatever its agent or seed, cut the same market into the same
    parts (sizes, embargo, window) and traded it with the same env settings; RuntimeError
    naming the first run that did not. fold_runs[agent][k]: the runs of fold k."""
    for k in range(len(next(iter(fold_runs.values())))):
        first = None
        for agent, per_fold in fold_runs.items():
            for run in per_fold[k]:
                summary = run.summary
                market = {key: value for key, value in summary["market"].items() if key != "seed"}
                if first is None:
                    first = (market, summary["env"], run.workdir)
                elif (market, summary["env"]) != first[:2]:
                    raise RuntimeError(
                        f"fold {k}: {run.workdir} ({agent}) was cut or traded "
                        f"differently from {first[2]}: {market} {summary['env']} against "
                        f"{first[0]} {first[1]}; pass the same --embargo and --apex_flags")


def seal_test(run: Run, by: str) -> Run:
    """The run with its test figures removed, in memory and in its workdir, for a tool that
    chooses settings and must not show test (issue 26): summary.json's test records keep
    SEALED_TEST_KEYS only, metrics.jsonl loses its test records and test_* keys, and
    eval/test_equity.png, the TensorBoard events and the log's lines about test are deleted."""
    import shutil

    def sealed(test: dict) -> dict:
        return {"sealed_by": by, **{key: test[key] for key in SEALED_TEST_KEYS if key in test}}

    summary = dict(run.summary, test=sealed(run.summary.get("test") or {}))
    if "seeds" in summary:
        summary["seeds"] = [dict(seed, test=sealed(seed.get("test") or {}))
                            for seed in summary["seeds"]]
    records = [{key: value for key, value in record.items() if "test_" not in key}
               for record in run.records if record["node"] != "test"]
    (run.workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run.workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run.workdir / "eval" / "test_equity.png").unlink(missing_ok=True)
    shutil.rmtree(run.workdir / "tensorboard", ignore_errors=True)  # holds the test scalars
    log = run.workdir.parent / f"{run.workdir.name}.log"
    if log.exists():
        log.write_text("".join(line for line in log.read_text().splitlines(keepends=True)
                               if "test" not in line.lower()))
    return dataclasses.replace(run, summary=summary, records=records)


def greedy_policy(run: Run, env) -> Callable:
    """policy(obs) -> action of the parameters a finished run selected on validation (those
    its test evaluation used)."""
    from agents.registry import get_builder
    from launch.run import checkpoints

    builder = get_builder(run.summary["agent"])
    config = builder.make_config(**run.summary["agent_config"])  # as the run resolved it
    spec = builder.make_environment_spec(env)
    policy = builder.make_eval_policy(config, spec)
    params = checkpoints.load_best_params(str(run.best_dir))
    return lambda obs: int(np.asarray(policy(params, obs[None]))[0])


@dataclasses.dataclass
class SeedRun:
    """One seed's training of one fold: its run, where its selection is kept, its trials (best
    validation Sharpe, every validation evaluation's Sharpe per market) and its test record
    (whose "policy" says whether the run selected the agent or flat)."""

    run: Run
    best_dir: pathlib.Path
    trials: Any  # environments.evaluation.trials.SeedTrials
    test: dict

    @classmethod
    def of(cls, run: Run, index: int, num_seeds: int) -> "SeedRun":
        from environments.evaluation.trials import SeedTrials

        best = run.workdir / "checkpoints" / "best"
        records = [{key.removeprefix("evaluator/"): value for key, value in record.items()}
                   for record in run.node_records("evaluator")]
        if num_seeds == 1:
            return cls(run, best, SeedTrials(run.summary["validation"].get("best_sharpe"),
                                             [r["sharpe_by_market"] for r in records]),
                       run.summary["test"])
        # an anakin run of several seeds (launch/anakin/driver.py): best/seed_<k>, *_by_seed
        by_market = []
        for record in (r for r in records if "sharpe_by_seed" in r):
            if "sharpe_by_market_by_seed" in record:
                by_market.append(record["sharpe_by_market_by_seed"][index])
            else:  # a log without each seed's markets: exact for one market only
                by_market.append([record["sharpe_by_seed"][index]] * record["num_markets"])
                if record["num_markets"] > 1:
                    print(f"warning: {run.workdir}: no per-seed Sharpe per market; V uses the "
                          "seed's median over markets, which understates it")
        seed = run.summary["seeds"][index]
        return cls(run, best / f"seed_{index}",
                   SeedTrials(seed["validation"].get("best_sharpe"), by_market), seed["test"])

    @property
    def selected_flat(self) -> bool:
        return self.test.get("policy", "agent") == "flat"

    @property
    def flat_candidate(self) -> bool:
        return self.test.get("flat_threshold") is not None

    def policy(self, env):
        """policy(obs) -> action of this seed's selected parameters (greedy_policy)."""
        return greedy_policy(dataclasses.replace(self.run, best_dir=self.best_dir), env)


def random_policy(num_actions: int, seed: int) -> Callable:
    """Uniformly random actions (seeded)."""
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(num_actions))


def mean_reversion_rule(env, threshold: float = 0.5) -> Callable:
    """Knows the OU generator's parameters: z = (log close - log mean) / stationary std;
    long below -threshold, short above +threshold, flat between.

    It walks the eval split in order (one call per bar from the env's first step), so it must
    be used with a fresh `run_episode` on `env`.
    """
    trading_env = env.unwrapped
    positions = list(trading_env.positions)
    long, short, flat = positions.index(1.0), positions.index(-1.0), positions.index(0.0)
    stationary_std = OU_VOLATILITY / np.sqrt(1.0 - (1.0 - OU_MEAN_REVERSION) ** 2)
    z_scores = (np.log(trading_env.market.close) - np.log(OU_MEAN_PRICE)) / stationary_std  # [T]
    state = {"bar": trading_env.window}  # an eval episode starts at bar `window`

    def act(obs: np.ndarray) -> int:
        z = z_scores[state["bar"]]
        state["bar"] += 1
        return long if z < -threshold else short if z > threshold else flat

    return act


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Prints (and returns) a markdown table."""
    cells = [[fmt(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
