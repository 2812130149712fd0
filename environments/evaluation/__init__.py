"""What a policy did: trading metrics and episodes with their baselines (metrics.py), the
rules a practitioner tries first (rules.py), walk-forward chaining (chaining.py) and the
significance of a Sharpe ratio (significance.py)."""
