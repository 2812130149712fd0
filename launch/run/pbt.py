"""--pbt_every=K: population-based training of a --sweep's members (Jaderberg et al. 2017,
"Population Based Training of Neural Networks"), inside the one compiled program.

Every K-th validation evaluation, once it is done (training waits for it, so that the same
flags make the same rounds), a round ranks the members by that evaluation's validation Sharpe
(each the median over the validation markets; NaN ranks lowest; of equal Sharpes the later
member ranks lower):

- **exploit**: each of the n = max(1, floor(--pbt_fraction x M)) lowest members takes the whole
  training state (parameters, optimizer and target, replay, envs) of a member drawn uniformly
  from the n highest; its random key is then folded with the round, so it does not replay its
  source's exploration;
- **explore**: the copy's settings are its source's, each swept setting multiplied by 0.8 or
  1.25 (a fair draw per setting) and clipped to the range the sweep gave that setting (an
  integer setting rounded), so a perturbation never leaves what the researcher swept.

The draws come from numpy's generator seeded with (--seed, round): a run is deterministic for a
seed. Selection is unchanged: every validation evaluation of every member is a candidate (and
a trial). A member's `settings_history` records the settings it trained under from each step
on, and `lineage` every copy: so the chosen evaluation's settings are known (those in force
before its step) even after its member was replaced.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

PERTURB = (0.8, 1.25)


class Population:
    """The members' current settings and their history under population-based training."""

    def __init__(self, settings: Sequence[dict[str, Any]], every: int, fraction: float, seed: int):
        if len(settings) < 2:
            raise ValueError(f"population-based training needs >= 2 members, got {len(settings)}")
        self.every, self.fraction, self.seed = every, fraction, seed
        self.settings = [dict(s) for s in settings]
        names = list(self.settings[0])
        self.bounds = {name: (min(s[name] for s in settings), max(s[name] for s in settings))
                       for name in names}
        self.integer = {name: all(isinstance(s[name], int) and not isinstance(s[name], bool)
                                  for s in settings) for name in names}
        self.history: list[list[list[Any]]] = [[[0, dict(s)]] for s in self.settings]
        self.lineage: list[dict[str, Any]] = []
        self.rounds = 0

    @property
    def num_replaced(self) -> int:
        return max(1, math.floor(self.fraction * len(self.settings)))

    def due(self, evaluations: int) -> bool:
        """Whether the evaluation numbered `evaluations` (1, 2, ...) ends with a round."""
        return evaluations % self.every == 0

    def round(self, step: int, sharpes: Sequence[float]) -> np.ndarray:
        """One exploit-and-explore round after the evaluation of learner step `step` with these
        validation Sharpes [M]; returns each member's source (itself where kept) and updates
        the settings, history and lineage."""
        if len(sharpes) != len(self.settings):
            raise ValueError(f"{len(sharpes)} Sharpes for {len(self.settings)} members")
        self.rounds += 1
        rng = np.random.default_rng([self.seed, self.rounds])
        keys = [-math.inf if not math.isfinite(s) else float(s) for s in sharpes]
        order = sorted(range(len(keys)), key=lambda m: (keys[m], -m))  # lowest first
        n = self.num_replaced
        low, high = order[:n], order[-n:]
        sources = np.arange(len(keys))
        for member in low:
            source = int(high[rng.integers(len(high))])
            sources[member] = source
            settings = {name: self._perturbed(name, value, rng)
                        for name, value in self.settings[source].items()}
            self.settings[member] = settings
            self.history[member].append([step, dict(settings)])
            self.lineage.append({"round": self.rounds, "learner_steps": step, "member": member,
                                 "copied": source, "sharpe": sharpes[member],
                                 "source_sharpe": sharpes[source], "settings": dict(settings)})
        return sources

    def _perturbed(self, name: str, value: Any, rng: np.random.Generator) -> Any:
        low, high = self.bounds[name]
        new = min(max(value * PERTURB[int(rng.integers(2))], low), high)
        return int(round(new)) if self.integer[name] else float(new)

    def settings_at(self, member: int, step: int) -> dict[str, Any]:
        """The settings member `member` trained under up to its evaluation at learner step `step`
        (a round at `step` applies after that evaluation)."""
        current = self.history[member][0][1]
        for since, settings in self.history[member][1:]:
            if since < step:
                current = settings
        return dict(current)

    def section(self) -> dict[str, Any]:
        """summary.json's sweep["pbt"]: the rounds' settings and every copy made."""
        return {"every_evaluations": self.every, "fraction": self.fraction,
                "replaced_per_round": self.num_replaced, "rounds": self.rounds,
                "perturb": list(PERTURB), "bounds": {k: list(v) for k, v in self.bounds.items()},
                "lineage": self.lineage}
