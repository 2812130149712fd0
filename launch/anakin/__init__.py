"""--lp_launch_type=anakin: the agent's env, acting, replay and updates in one compiled program on
this host's devices (driver.py), with its evaluations compiled too (evaluation.py)."""
