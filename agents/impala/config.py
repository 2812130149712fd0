"""Every hyper-parameter of the IMPALA agent, with the paper's defaults, and named presets."""

import dataclasses

from agents.config_checks import NetworkSettings, check_ranges, from_preset
from agents.config_checks import integer as _integer
from agents.config_checks import number as _number

# The env's risk aversion (kappa) this agent trains with unless --risk_aversion says otherwise.
# IMPALA's policy collapsed to flat under Ape-X's kappa 24 (entropy 0.97 -> 0.013 by step 7,500,
# every validation evaluation flat); with 0 it reached validation Sharpe 1.77 at 3,000 and 1.85
# at 10,000 steps (default market, seed 0's validation, 2026-12-05; docs/do_no_harm.md).
RISK_AVERSION = 0.0


@dataclasses.dataclass
class ImpalaConfig(NetworkSettings):
    """IMPALA settings.

    Defaults from Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance
    Weighted Actor-Learner Architectures", Table G.1 (Atari), unless the comment names another
    source. The network's settings (hidden_sizes and the torso) are NetworkSettings'
    (agents/config_checks.py), shared with every agent. Every value is checked when the config
    is made: a bad one raises ValueError naming the setting, the value and the range.
    """

    # Returns and V-trace.
    sequence_length: int = 20  # IMPALA: unroll length 20 (T rows, T - 1 learned; see sequence_adder).
    discount: float = 0.99  # IMPALA.
    clip_rho_threshold: float = 1.0  # IMPALA: rho-bar = 1 (truncation of the value target's weights).
    clip_pg_rho_threshold: float = 1.0  # IMPALA: rho-bar of the policy gradient's weights = 1.
    # IMPALA: lambda = 1. rlax's V-trace traces with c_s = lambda * min(1, rho_s), i.e. c-bar = 1.
    vtrace_lambda: float = 1.0
    # ours, as apex_dqn: rewards are multiplied by this before they are stored (IMPALA clips
    # Atari rewards to [-1, 1]); log-growth rewards are ~1e-2 per step. launch/run/setup.py
    # multiplies it by 1% / the training markets' per-step volatility.
    reward_scale: float = 1.0

    # Loss.
    baseline_cost: float = 0.5  # IMPALA: baseline loss scaling 0.5.
    entropy_cost: float = 0.01  # IMPALA: entropy regulariser 0.01 (Atari).

    # Learner.
    batch_size: int = 32  # IMPALA: 32 sequences per batch.
    learning_rate: float = 0.0006  # IMPALA: 0.0006 (annealed to 0 in the paper; constant here).
    rmsprop_decay: float = 0.99  # IMPALA: RMSProp decay 0.99, momentum 0.
    rmsprop_eps: float = 0.01  # IMPALA: RMSProp epsilon 0.01.
    max_gradient_norm: float = 40.0  # IMPALA: gradients clipped to norm 40.
    prefetch_batches: int = 1  # ours: sequences taken from the queue ahead of the learner.

    # Queue and actors.
    max_queue_size: int = 1024  # ours: sequences waiting for the learner; actors block beyond.
    queue_table_name: str = "queue"  # Acme's IMPALA table name.
    # IMPALA: an actor takes the latest parameters before each unroll, i.e. every T - 1 steps.
    variable_update_period: int = 19


    # Anakin (--lp_launch_type=anakin): each cycle steps anakin_num_envs envs per device
    # sequence_length - 1 times, then makes anakin_num_envs / batch_size updates of batch_size of
    # those sequences. Not yet tuned on validation Sharpe.
    anakin_num_envs: int = 64  # ours: envs stepped together on each device (a multiple of batch_size).

    def __post_init__(self):
        check_ranges("impala", self, _RANGES)
        self.check_network("impala")


_RANGES = {
    "anakin_num_envs": (lambda v: _integer(v) and v >= 1, "an integer >= 1 (a multiple of batch_size)"),
    "sequence_length": (lambda v: _integer(v) and v >= 2, "an integer >= 2 (one learned row and one bootstrap row)"),
    "discount": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "clip_rho_threshold": (lambda v: _number(v) and v > 0, "a number > 0"),
    "clip_pg_rho_threshold": (lambda v: _number(v) and v > 0, "a number > 0"),
    "vtrace_lambda": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "reward_scale": (lambda v: _number(v) and v > 0, "a number > 0"),
    "baseline_cost": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "entropy_cost": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    "rmsprop_decay": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "rmsprop_eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "max_gradient_norm": (lambda v: _number(v) and v > 0, "a number > 0"),
    "prefetch_batches": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "max_queue_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1 (and >= batch_size)"),
    "queue_table_name": (lambda v: isinstance(v, str) and v != "", "a non-empty name"),
    "variable_update_period": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}


# Named settings, applied on top of the paper's defaults (ImpalaConfig()).
PRESETS = {
    # IMPALA as published for Atari (with apex_dqn's 512x512 MLP in place of the conv net).
    "impala_paper": {},
    # A 2-core machine (launch/apex.py's default preset name): apex_dqn's small-machine reward
    # scale, horizon and network. The actors, not the learner, bound a 2-core run, so each
    # sequence is learned once in small batches of 8 at a higher rate. Chosen on validation
    # Sharpe (OU process, seed 0, `python launch/apex.py --agent=impala`, 240 s): batch 32 and
    # learning rate 6e-4 (the paper's) 1.64; batch 8 1.76; batch 8 and 2e-3 1.80.
    "small": dict(reward_scale=100.0, discount=0.8, hidden_sizes=(32, 32), batch_size=8,
                  learning_rate=2e-3),
}


Config = ImpalaConfig


def make_config(preset: str = "impala_paper", **overrides) -> ImpalaConfig:
    """The named preset (PRESETS; "impala_paper" is the dataclass's defaults) with `overrides`
    applied; an unknown name or a value out of range is a ValueError."""
    config = from_preset("impala", ImpalaConfig, PRESETS, preset, overrides)
    if config.max_queue_size < config.batch_size:
        raise ValueError(f"impala config: max_queue_size={config.max_queue_size} is below "
                         f"batch_size={config.batch_size}: the learner could never fill a batch")
    return config
