"""Every hyper-parameter of the Ape-X DQN agent, with the paper's defaults, and named presets."""

import dataclasses

from agents.config_checks import NetworkSettings, check_ranges, from_preset
from agents.config_checks import integer as _integer
from agents.config_checks import number as _number

# The env's risk aversion (kappa) this agent trains with unless --risk_aversion says otherwise:
# chosen on validation Sharpe of the default market (apex_dqn under anakin, 5 seeds, 0 to 64:
# 24 best; benchmarks/results/compare_risk_aversion.md, 2026-12-04).
RISK_AVERSION = 24.0


@dataclasses.dataclass
class ApexDQNConfig(NetworkSettings):
    """Ape-X DQN settings.

    Defaults from Horgan et al. 2018, "Distributed Prioritized Experience Replay" (Ape-X),
    Appendix C, unless the comment names another source. The network's settings (hidden_sizes
    and the torso) are NetworkSettings' (agents/config_checks.py), shared with every agent.
    Every value is checked when the config is made: a bad one raises ValueError naming the
    setting, the value and the range.
    """

    # Returns and targets.
    n_step: int = 3  # Ape-X: 3-step returns.
    discount: float = 0.99  # Ape-X.
    target_update_period: int = 2500  # Ape-X: target network copied every 2500 learner updates.
    huber_delta: float = 1.0  # DQN (Mnih et al. 2015): Huber loss with delta 1.
    # ours: rewards are multiplied by this before they are stored (Atari DQN clips to [-1, 1]
    # instead). Log-growth rewards are ~1e-2 per step, far below the network's initial outputs
    # and the Huber delta; e.g. 100 puts returns in percent. The greedy policy is unchanged.
    # launch/run/setup.py multiplies it by 1% / the training markets' per-step volatility (issue 30).
    reward_scale: float = 1.0

    # Prioritized replay.
    priority_exponent: float = 0.6  # Ape-X: alpha = 0.6.
    importance_sampling_exponent: float = 0.4  # Ape-X: beta = 0.4.
    priority_epsilon: float = 1e-3  # Schaul et al. 2016: p = |td| + eps keeps td-0 items sampled; 1e-3 ours, reward units.
    max_replay_size: int = 2_000_000  # Ape-X: capacity 2M transitions, FIFO eviction.
    min_replay_size: int = 50_000  # Ape-X: learning starts at 50k transitions.
    samples_per_insert: float | None = None  # Ape-X: actors and learner are not rate-limited.
    replay_table_name: str = "priority_table"  # Acme's name for the prioritized table.

    # Learner.
    batch_size: int = 512  # Ape-X: batches of 512.
    learning_rate: float = 0.00025 / 4  # Ape-X (and Rainbow's Adam learning rate).
    adam_eps: float = 1.5e-4  # Rainbow (Hessel et al. 2018): Adam epsilon.
    max_gradient_norm: float = 40.0  # Ape-X: gradients clipped to norm 40.
    prefetch_batches: int = 4  # ours: batches sampled ahead of the learner.

    # Actors.
    epsilon_base: float = 0.4  # Ape-X: eps_i = 0.4^(1 + 7 i / (N - 1)).
    epsilon_exponent: float = 7.0  # Ape-X: the 7 in the ladder above.
    variable_update_period: int = 400  # Ape-X: actors fetch parameters every 400 env frames.


    # Anakin (--lp_launch_type=anakin: env, acting, replay and updates in one compiled cycle per
    # device; the replay holds max_replay_size items rounded down to whole cycles, and learning
    # starts at min_replay_size). Issue 17's measurement loop; the small preset's are tuned.
    anakin_num_envs: int = 256  # issue 17: envs stepped together on each device.
    anakin_rollout_steps: int = 16  # issue 17: steps of every env per cycle.
    anakin_updates_per_cycle: int = 8  # issue 17: updates of batch_size items (per device) per cycle.

    def __post_init__(self):
        check_ranges("apex_dqn", self, _RANGES)
        self.check_network("apex_dqn")


_RANGES = {
    "n_step": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "discount": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "target_update_period": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "huber_delta": (lambda v: _number(v) and v > 0, "a number > 0"),
    "reward_scale": (lambda v: _number(v) and v > 0, "a number > 0"),
    "priority_exponent": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "importance_sampling_exponent": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "priority_epsilon": (lambda v: _number(v) and v > 0, "a number > 0 (0 would never resample a td-0 item)"),
    "max_replay_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "min_replay_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1 (and <= max_replay_size)"),
    "samples_per_insert": (lambda v: v is None or (_number(v) and v > 0), "None or a number > 0"),
    "replay_table_name": (lambda v: isinstance(v, str) and v != "", "a non-empty name"),
    "batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    "adam_eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "max_gradient_norm": (lambda v: _number(v) and v > 0, "a number > 0"),
    "prefetch_batches": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "epsilon_base": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "epsilon_exponent": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "variable_update_period": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "anakin_num_envs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "anakin_rollout_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "anakin_updates_per_cycle": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}


# Named settings, applied on top of the paper's defaults (ApexDQNConfig()).
PRESETS = {
    # Ape-X as published: sized for hundreds of actors and a GPU learner (a 2M replay, learning
    # from 50k items, 512x512 layers, batches of 512). Use it on a GPU machine with many actors.
    "apex_paper": {},
    # Learns a synthetic market within minutes on 2 CPU cores (launch/apex.py's default):
    # rewards of ~1e-2 per step scaled to ~1, a short horizon, a small network that updates
    # fast on a CPU, learning from 2k items, and ~16 samples per inserted item, so that
    # actors cannot take the CPU the learner needs (docs/agents.md: "Rate limiting").
    "small": dict(
        reward_scale=100.0, discount=0.8, hidden_sizes=(32, 32), batch_size=128,
        learning_rate=3e-4, target_update_period=500, min_replay_size=2000,
        max_replay_size=100_000, samples_per_insert=16.0,
        # Under anakin: 64 envs x 16 steps, then 32 updates a cycle (1 update per 32 env steps
        # instead of 512), chosen on validation Sharpe among 7 sizes (docs/anakin.md).
        anakin_num_envs=64, anakin_updates_per_cycle=32,
    ),
}


Config = ApexDQNConfig


def make_config(preset: str = "apex_paper", **overrides) -> ApexDQNConfig:
    """The named preset (PRESETS; "apex_paper" is the dataclass's defaults) with `overrides`
    applied; an unknown name or a value out of range is a ValueError."""
    config = from_preset("apex_dqn", ApexDQNConfig, PRESETS, preset, overrides)
    if config.min_replay_size > config.max_replay_size:
        raise ValueError(f"apex_dqn config: min_replay_size={config.min_replay_size} is above "
                         f"max_replay_size={config.max_replay_size}")
    return config
