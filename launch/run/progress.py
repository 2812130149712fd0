"""What a run shows its user: the format of the launcher's log lines, the live progress line
(rich), and the report printed when it ends."""

from __future__ import annotations

import collections
import logging
import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

PLAIN_EVERY_S = 10.0  # without a terminal: one plain line this often
RATE_WINDOW_S = 10.0  # rates are measured over about this many seconds (nodes log every 2 s)


def configure_logging(level: int = logging.INFO) -> None:
    """One plain line per message on stderr for the launcher's own messages (the loggers
    under "launch")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("launch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _format(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _percent(fraction: float | None, signed: bool = True) -> str:
    """0.123 -> '+12.3%' (a return or a drawdown given as a fraction)."""
    if fraction is None:
        return "-"
    return f"{100 * fraction:{'+' if signed else ''},.1f}%"


class ProgressLine:
    """learner step, env steps, env steps/s, learner steps/s, replay size, param lag (where
    actors lag the learner: `param_lag`), validation Sharpe (last and best)."""

    def __init__(self, max_seconds: float, param_lag: bool = False):
        self._max_seconds = max_seconds
        self._param_lag = param_lag
        self._console = Console(file=sys.stdout)
        self._live: Live | None = None
        self._samples: collections.deque = collections.deque()  # (elapsed, env steps, learner steps)
        self._last_plain = 0.0

    def __enter__(self) -> "ProgressLine":
        if self._console.is_terminal:
            self._live = Live(Text("starting..."), console=self._console, refresh_per_second=2,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)

    def update(self, elapsed: float, env_steps: int, learner_steps: int,
               validation: dict[str, Any], replay_items: int | None = None,
               param_lag: float | None = None) -> None:
        """`validation`: the newest validation record (its sharpe and best_sharpe)."""
        samples = self._samples
        samples.append((elapsed, env_steps, learner_steps))
        while len(samples) > 2 and elapsed - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        dt = elapsed - samples[0][0]
        env_rate = (env_steps - samples[0][1]) / dt if dt > 0 else 0.0
        learner_rate = (learner_steps - samples[0][2]) / dt if dt > 0 else 0.0
        limit = f"/{self._max_seconds:.0f}" if self._max_seconds else ""
        line = (
            f"[{elapsed:5.0f}{limit} s] learner step {learner_steps:,} "
            f"({learner_rate:,.1f}/s) | env steps {env_steps:,} ({env_rate:,.0f}/s) | "
            f"replay {_format(replay_items, 0)} | "
            + (f"param lag {_format(param_lag)} | " if self._param_lag else "")
            + f"validation sharpe {_format(validation.get('sharpe'), 2)} (best "
            f"{_format(validation.get('best_sharpe'), 2)})"
        )
        if self._live is not None:
            self._live.update(Text(line))
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = time.monotonic()
            print(line, flush=True)


def _selection(summary: dict[str, Any]) -> str:
    validation, test = summary["validation"], summary["test"]
    if "learner_steps_by_seed" in validation:
        sharpes = ", ".join(_format(v, 2) for v in validation["best_sharpe_by_seed"])
        line = (f"  selected on validation, each seed on its own: learner steps "
                f"{validation['learner_steps_by_seed']} (validation sharpe {sharpes}; median "
                f"{_format(validation.get('best_sharpe'), 2)})")
        flats = [s for s, policy in enumerate(test.get("policy_by_seed") or []) if policy == "flat"]
        if flats:
            line += (f"; flat for seed{'s' if len(flats) > 1 else ''} "
                     f"{', '.join(str(summary['seed'] + s) for s in flats)}, whose best did not beat "
                     f"flat by the margin (needed > {_format(test.get('flat_threshold'), 2)}, "
                     "--flat_margin)")
        return line
    line = (f"  selected on validation: learner step {validation.get('learner_steps')} (validation "
            f"sharpe {_format(validation.get('best_sharpe'), 2)})")
    if test.get("policy") == "flat":
        line = (f"  selected on validation: flat, as the agent's best (learner step "
                f"{validation.get('learner_steps')}, validation sharpe "
                f"{_format(validation.get('best_sharpe'), 2)}) did not beat flat's sharpe by the margin "
                f"(needed > {_format(test.get('flat_threshold'), 2)}, --flat_margin)")
    return line


def final_report(summary: dict[str, Any]) -> str:
    ev = summary["test"]
    markets = ev.get("num_markets") or 1
    where = f"the median of {markets} test markets" if markets > 1 else "the test split"
    if "sharpe_by_seed" in ev:
        where += f", the median of {len(ev['sharpe_by_seed'])} seeds"
    years = ev.get("years")
    over = f" over {years:.1f} years" if years else ""
    launch = summary["launch"]
    if "num_actors" in launch:  # the distributed program
        shape = f"{launch['num_actors']} actors"
        restarts = f", actor restarts {launch['actor_restarts']}"
    else:
        seeds = summary["num_seeds"]
        shape, restarts = f"{seeds} seed{'s' if seeds > 1 else ''}", ""
        if summary.get("sweep"):  # --sweep: its settings times the seeds, in one program
            swept = summary["sweep"]
            shape = f"{swept['num_members']} members: {swept['num_settings']} settings x {shape}"
    one_over_n, hold = "", "buy and hold"  # a portfolio's: its basket, and 1/N rebalanced every bar
    if ev.get("equal_weight_sharpe") is not None:
        hold = "the basket bought and held"
        one_over_n = (f"; 1/N: return {_percent(ev.get('equal_weight_return'))}, sharpe "
                      f"{_format(ev.get('equal_weight_sharpe'), 2)}")
    return "\n".join([
        f"run finished ({summary['stop_reason']}) in {summary['wall_s']:.0f} s "
        f"[{summary['launch_type']}, {shape}]",
        f"  learner steps {summary['learner_steps']:,} ({summary['learner_steps_per_s']:.1f}/s), "
        f"env steps {summary['env_steps']:,} ({summary['env_steps_per_s']:,.0f}/s), "
        f"replay items {_format(summary['replay_items'], 0)}{restarts}",
        _selection(summary),
        f"  test ({where}, once): total return {_percent(ev.get('total_return'))}{over}, sharpe "
        f"{_format(ev.get('sharpe'), 2)}, max drawdown {_percent(ev.get('max_drawdown'), False)} "
        f"({hold}: return {_percent(ev.get('buy_and_hold_return'))}, sharpe "
        f"{_format(ev.get('buy_and_hold_sharpe'), 2)}{one_over_n})",
        f"  annualization: {summary.get('annualization')}",
        f"  results: {summary['workdir']} (summary.json, metrics.jsonl, tensorboard/, eval/, checkpoints/)",
    ])
