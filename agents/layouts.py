"""What one replay item is (an n-step transition, a sequence of rows), free of TensorFlow.

The losses read items through these layouts, so a jitted loop imports them without Reverb or
TensorFlow; the adders write items of the same layouts, and a Reverb table's signature is
derived from `item_signature()` by `item_spec()` (which alone imports TensorFlow, when called).
"""

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from agents.specs import EnvironmentSpec

Signature = dict[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape, dtype) of one item


def action_shape(spec: EnvironmentSpec) -> tuple[int, ...]:
    """The shape of one step's action: () for one action, (D,) with D action branches."""
    return () if spec.num_branches is None else (spec.num_branches,)


def tensor_specs(signature: Signature) -> dict[str, Any]:
    """The tf.TensorSpec structure of a signature (a Reverb table's); imports TensorFlow."""
    import tensorflow as tf  # only where a Reverb table is built

    return {name: tf.TensorSpec(shape, tf.as_dtype(dtype)) for name, (shape, dtype) in signature.items()}


@dataclasses.dataclass(frozen=True)
class TransitionLayout:
    """One n-step transition item (agents/adders.py has the maths) for a given environment.

    - ordinary observations: an item holds obs_t and obs_{t+k}.
    - frame-window observations ([window, F]): an item holds the `window + n` frames ending
      at step t+k plus `obs_offset = n - k`; `observations` cuts obs_t and obs_{t+k} out.
    """

    observation_shape: tuple[int, ...]
    observation_dtype: np.dtype
    n_step: int
    frame_window: int | None = None  # frames per observation when storing frames once
    action_shape: tuple[int, ...] = ()  # (D,): one action per branch (a portfolio's instruments)

    @classmethod
    def from_spec(cls, spec: EnvironmentSpec, n_step: int) -> "TransitionLayout":
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        return cls(spec.observation_shape, np.dtype(spec.observation_dtype), n_step, spec.frame_window,
                   action_shape(spec))

    @property
    def num_frames(self) -> int:
        """Frames one item references (frame-window layout only)."""
        return self.frame_window + self.n_step

    @property
    def steps_spanned(self) -> int:
        """Writer steps an item may reach back, counting the rows written after it."""
        if self.frame_window is None:
            return 2 * self.n_step + 1
        return self.frame_window + 2 * self.n_step

    def item_signature(self) -> Signature:
        """The structure, shapes and dtypes of one item."""
        scalars = {
            "action": (tuple(self.action_shape), np.dtype(np.int32)),
            "n_step_return": ((), np.dtype(np.float32)),
            "discount": ((), np.dtype(np.float32)),
        }
        dtype = np.dtype(self.observation_dtype)
        if self.frame_window is None:
            shape = tuple(self.observation_shape)
            return {"observation": (shape, dtype), "next_observation": (shape, dtype), **scalars}
        frame_shape = tuple(self.observation_shape[1:])
        return {
            "frames": ((self.num_frames, *frame_shape), dtype),
            "obs_offset": ((), np.dtype(np.int32)),
            **scalars,
        }

    def item_spec(self) -> dict[str, Any]:
        """The table signature (tf.TensorSpec per field) of `item_signature`."""
        return tensor_specs(self.item_signature())

    def observations(self, data: dict[str, Any]) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Returns (obs [B, ...], next_obs [B, ...]) of a batch of items (jit-friendly)."""
        if self.frame_window is None:
            return jnp.asarray(data["observation"]), jnp.asarray(data["next_observation"])
        frames = jnp.asarray(data["frames"])  # [B, window + n, F]
        rows = jnp.asarray(data["obs_offset"])[:, None] + jnp.arange(self.frame_window)  # [B, window]
        obs = jnp.take_along_axis(frames, rows[:, :, None], axis=1)  # [B, window, F]
        next_obs = frames[:, self.n_step :]  # [B, window, F]
        return obs, next_obs


SEQUENCE_COLUMNS = ("observation", "action", "reward", "discount", "behaviour_log_prob", "valid")


@dataclasses.dataclass(frozen=True)
class SequenceLayout:
    """One item of T consecutive rows of one env (agents/sequence_adder.py says what a row is).

    - ordinary observations: an item holds the T rows' observations [T, ...].
    - frame-window observations ([window, F], a sliding window of per-step frames): an item
      holds the `T + window - 1` frames ending at its last row (each row's newest frame, after
      the window - 1 frames its episode started with) and `rows` rebuilds observation t as
      frames t .. t + window - 1, so an item's size barely grows with the window.
    """

    observation_shape: tuple[int, ...]
    observation_dtype: np.dtype
    sequence_length: int  # T rows per item; T - 1 of them are learned
    frame_window: int | None = None  # frames per observation when storing frames once
    action_shape: tuple[int, ...] = ()  # (D,): one action per branch (a portfolio's instruments)

    def __post_init__(self):
        if self.sequence_length < 2:
            raise ValueError(f"sequence_length must be >= 2 (one learned row and one to "
                             f"bootstrap from), got {self.sequence_length}")

    @classmethod
    def from_spec(cls, spec: EnvironmentSpec, sequence_length: int) -> "SequenceLayout":
        return cls(spec.observation_shape, np.dtype(spec.observation_dtype), sequence_length, spec.frame_window,
                   action_shape(spec))

    @property
    def num_frames(self) -> int:
        """Frames one item references (frame-window layout only)."""
        return self.sequence_length + self.frame_window - 1

    def item_signature(self) -> Signature:
        T = self.sequence_length
        dtype = np.dtype(self.observation_dtype)
        if self.frame_window is None:
            observations = {"observation": ((T, *self.observation_shape), dtype)}
        else:
            observations = {"frames": ((self.num_frames, *self.observation_shape[1:]), dtype)}
        return {
            **observations,
            "action": ((T, *self.action_shape), np.dtype(np.int32)),
            "reward": ((T,), np.dtype(np.float32)),
            "discount": ((T,), np.dtype(np.float32)),
            "behaviour_log_prob": ((T,), np.dtype(np.float32)),
            "valid": ((T,), np.dtype(np.bool_)),
        }

    def item_spec(self) -> dict[str, Any]:
        """The table signature (tf.TensorSpec per field) of `item_signature`."""
        return tensor_specs(self.item_signature())

    def rows(self, data: dict[str, Any]) -> dict[str, Any]:
        """A batch of items [B, ...] as rows: every field of `item_signature` but with
        "observation" [B, T, ...] in place of "frames" (jit-friendly; ordinary items as given)."""
        if self.frame_window is None:
            return data
        rows = dict(data)
        frames = jnp.asarray(rows.pop("frames"))  # [B, T + window - 1, F]
        windows = jnp.arange(self.sequence_length)[:, None] + jnp.arange(self.frame_window)  # [T, window]
        rows["observation"] = frames[:, windows]  # [B, T, window, F]
        return rows
