"""The compiled functions of one Anakin run (Podracer's Anakin): the agent's init, training
cycle, counters and policy parameters, each as pmap(vmap(...)) over [devices, members], built
from the builder's make_anakin on the run's jittable training env.

`pmap` over jax.local_devices() (axis "device": each device its own envs and replay shard,
gradients averaged) of `vmap` over members (their own parameters, replay, envs, exploration):
the seeds, or with --sweep each setting times the seeds (launch/run/sweep.py), whose
per-member settings enter the cycle as traced values (the agent's hyperparameters and the
EnvParams leaves the sweep sets).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from launch.anakin.evaluation import SplitEvaluator
from launch.run.setup import Setup, UsageError

AXIS = "device"  # the pmap axis name the agent averages its gradients over


class Program:
    """The compiled functions of one Anakin run: init, train_step, counters, policy params,
    all as pmap(vmap(...)) over [devices, seeds]."""

    def __init__(self, setup: Setup):
        import jax

        from agents import core

        self.devices = jax.local_devices()
        self.env = setup.envs.jax_train_env()  # JaxTradingEnv, or JaxPortfolioEnv of a panel
        if not hasattr(setup.builder, "make_anakin"):
            raise UsageError(f"--agent={setup.agent} has no make_anakin in its builder: it cannot "
                             "run under --lp_launch_type=anakin (use local_mt or local_mp)")
        # One device: jit, with a device axis of 1 kept by vmap (a one-device pmap made the
        # Ape-X cycle 25-35% slower, BUILD.md); pmap and gradients averaged from 2 devices on.
        many = len(self.devices) > 1
        try:
            agent = setup.builder.make_anakin(setup.config, setup.spec,
                                              core.FunctionalEnv(self.env.reset, self.env.step, self.env.observation_ref,
                                                                 self.env.observation_from_ref),
                                              AXIS if many else None)
        except ValueError as error:
            raise UsageError(f"--lp_launch_type=anakin --agent={setup.agent}: {error}") from None
        self.agent = agent
        self.sweep = setup.sweep
        self.num_members = setup.sweep.num_members if setup.sweep else setup.num_seeds
        self.member_values: tuple[dict, dict] | None = None  # (agent, env) {name: [members]}
        if setup.sweep is not None:
            from launch.run.sweep import SweepError

            try:
                self.member_values = setup.sweep.member_values(dict(agent.hyperparameters), setup.config)
            except SweepError as error:
                raise UsageError(f"{error} (--agent={setup.agent})") from None

        def per_seed(fn: Any, donate: bool = False, per_member: bool = False) -> Any:
            """fn over [devices, members, ...] in and out; env params shared; with per_member a
            third argument, the members' settings [devices, members]."""
            axes = (0, None, 0) if per_member else (0, None)
            seeds = jax.vmap(fn, in_axes=axes)
            if many:
                return jax.pmap(seeds, axis_name=AXIS, in_axes=axes, donate_argnums=(0,) if donate else ())
            return jax.jit(jax.vmap(seeds, in_axes=axes), donate_argnums=(0,) if donate else ())

        def member_step(state: Any, env_params: Any, values: tuple[dict, dict]) -> Any:
            agent_values, env_values = values  # one member's: float32 [] each
            return agent.train_step(state, env_params._replace(**env_values), agent_values)

        self.init = per_seed(agent.init)
        if self.member_values is None:
            self._cycle, self._values = per_seed(agent.train_step, donate=True), ()
        else:
            self._cycle = per_seed(member_step, donate=True, per_member=True)
            self._values = (member_values_on_devices(self.member_values, len(self.devices)),)  # [D, M] each
        counters = jax.vmap(lambda state: (agent.learner_steps(state), agent.env_steps(state)))
        self.counters = jax.pmap(counters) if many else jax.jit(jax.vmap(counters))  # [D, S]
        # The policy parameters [D, S, ...] of every device (identical on every device); with one
        # device [S, ...], sliced inside jit so that the rest of the state (the replay) is not copied.
        seed_params = jax.vmap(agent.policy_params)
        self.policy_params = (jax.pmap(seed_params) if many else
                              jax.jit(lambda state: seed_params(jax.tree.map(lambda x: x[0], state))))
        self._many = many
        # Population-based training's exploit (launch/run/pbt.py), per device.
        self._take = (jax.pmap(take_members, in_axes=(0, None, None), donate_argnums=(0,)) if many
                      else jax.jit(jax.vmap(take_members, in_axes=(0, None, None)), donate_argnums=(0,)))
        # Member m's seed: --seed + m % num_seeds (with a sweep each setting has the same seeds).
        seeds = setup.seed + np.arange(self.num_members) % setup.num_seeds
        keys = jax.vmap(jax.random.PRNGKey)(seeds)  # [M, 2]: the same parameters on every device
        self.keys = np.broadcast_to(np.asarray(keys), (len(self.devices),) + keys.shape)

    def train_step(self, state: Any, env_params: Any) -> tuple[Any, dict]:
        """One compiled cycle of every member ([devices, members] state, donated)."""
        return self._cycle(state, env_params, *self._values)

    def exploit(self, state: Any, sources: np.ndarray, salt: int) -> Any:
        """`state` ([devices, members], donated) with member m's state that of sources[m]."""
        return self._take(state, np.asarray(sources, np.int32), np.uint32(salt))

    def set_member_values(self, values: tuple[dict, dict]) -> None:
        """The members' traced settings from the next cycle on ((agent, env) {name: [M]});
        the same shapes, so nothing recompiles."""
        self.member_values = values
        self._values = (member_values_on_devices(values, len(self.devices)),)

    def compile(self, splits: list[SplitEvaluator]) -> None:
        """Compiles the cycle, the initialisation, the counters and the walks of `splits` before
        training. Tracing holds the interpreter lock and XLA's compilation does not, so this
        thread traces and lowers, the cycle first (the longest), while a pool compiles what is
        lowered: a cold start waits for the cycle's tracing and compilation, not for the sum of
        them all. The splits' baselines (Python) run while the cycle compiles."""
        from concurrent import futures

        import jax

        state = jax.eval_shape(self.init, self.keys, self.env.params)  # [D, S, ...] shapes
        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            done = [pool.submit(self._cycle.lower(state, self.env.params, *self._values).compile),
                    pool.submit(self.init.lower(self.keys, self.env.params).compile)]
            done += [pool.submit(fn.lower(state).compile) for fn in (self.counters, self.policy_params)]
            params = jax.eval_shape(self.policy_params, state)
            if self._many:
                params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), params)
            for split in splits:
                split.compile(params)
                split.references  # noqa: B018  (computed once, kept)
            for future in done:
                future.result()

    def seed_params(self, state: Any) -> Any:
        """[S] policy parameters as host arrays (device 0's: identical on every device), which
        outlive `state`'s buffers (the next cycle reuses them)."""
        import jax

        params = self.policy_params(state)
        return jax.device_get(jax.tree.map(lambda x: x[0], params) if self._many else params)


def member_values_on_devices(values: tuple[dict, dict], num_devices: int) -> tuple[dict, dict]:
    """The members' settings {name: [M]} as [devices, M] (every device the same)."""
    return tuple({name: np.broadcast_to(np.asarray(value, np.float32), (num_devices,) + np.shape(value))
                  for name, value in part.items()} for part in values)


def take_members(state: Any, sources: Any, salt: Any) -> Any:
    """One device's members' state [M, ...] with member m's state that of member sources[m];
    the random key (a state's `rng` field) of a member that took another's is folded with
    `salt`, so that the copy does not replay its source's draws."""
    import jax
    import jax.numpy as jnp

    taken = jax.tree.map(lambda x: x[sources], state)
    if not hasattr(taken, "rng"):
        return taken
    moved = sources != jnp.arange(sources.shape[0])
    folded = jax.vmap(lambda key: jax.random.fold_in(key, salt))(taken.rng)
    return taken._replace(rng=jnp.where(moved.reshape((-1,) + (1,) * (folded.ndim - 1)),
                                        folded, taken.rng))
