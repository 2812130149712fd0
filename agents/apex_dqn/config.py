"""Every hyper-parameter of the Ape-X DQN agent, with the paper's defaults."""

import dataclasses


@dataclasses.dataclass
class ApexDQNConfig:
    """Ape-X DQN settings.

    Defaults from Horgan et al. 2018, "Distributed Prioritized Experience Replay" (Ape-X),
    Appendix C, unless the comment names another source.
    """

    # Returns and targets.
    n_step: int = 3  # Ape-X: 3-step returns.
    discount: float = 0.99  # Ape-X.
    target_update_period: int = 2500  # Ape-X: target network copied every 2500 learner updates.
    huber_delta: float = 1.0  # DQN (Mnih et al. 2015): Huber loss with delta 1.
    # ours: rewards are multiplied by this before they are stored (Atari DQN clips to [-1, 1]
    # instead). Log-growth rewards are ~1e-2 per step, far below the network's initial outputs
    # and the Huber delta; e.g. 100 puts returns in percent. The greedy policy is unchanged.
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

    # Network.
    hidden_sizes: tuple[int, ...] = (512, 512)  # ours: MLP torso + dueling heads of 512 (Ape-X's head width).
