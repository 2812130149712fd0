"""Replay tables (prioritized, or a FIFO queue) and a sampler that yields numpy batches from them."""

from typing import Any, Iterator, NamedTuple

import numpy as np
import reverb
import tensorflow as tf

from agents.layouts import TransitionLayout


class ReplayBatch(NamedTuple):
    """A sampled batch: item data plus what prioritized replay needs to weigh and update it."""

    keys: np.ndarray  # [B] uint64, for mutate_priorities
    probabilities: np.ndarray  # [B] float64, P(i) at sampling time
    priorities: np.ndarray  # [B] float64, p_i at sampling time
    table_size: np.ndarray  # [B] int64, N at sampling time
    data: dict[str, np.ndarray]  # the item structure of TransitionLayout.item_spec, batched


def make_prioritized_table(
    name: str,
    layout: TransitionLayout,
    max_size: int,
    priority_exponent: float,
    min_size_to_sample: int = 1,
    samples_per_insert: float | None = None,
    samples_per_insert_tolerance_rate: float = 0.1,
) -> reverb.Table:
    """A table of `layout` items: Prioritized(alpha) sampling, FIFO eviction at max_size.

    The rate limiter is MinSize(min_size_to_sample) unless samples_per_insert is given;
    then SampleToInsertRatio lets the sample/insert ratio drift by at most
    min_size_to_sample * samples_per_insert * tolerance_rate samples (as Acme's DQN does).
    """
    if max_size < 1 or min_size_to_sample < 1 or min_size_to_sample > max_size:
        raise ValueError(
            f"table {name!r}: need 1 <= min_size_to_sample ({min_size_to_sample}) <= max_size ({max_size})"
        )
    if samples_per_insert is None:
        rate_limiter = reverb.rate_limiters.MinSize(min_size_to_sample)
    else:
        # error_buffer: how far (in samples) the ratio may drift before sampling or inserting blocks.
        error_buffer = max(
            2.0 * max(1.0, samples_per_insert),
            min_size_to_sample * samples_per_insert * samples_per_insert_tolerance_rate,
        )
        rate_limiter = reverb.rate_limiters.SampleToInsertRatio(
            samples_per_insert=samples_per_insert,
            min_size_to_sample=min_size_to_sample,
            error_buffer=error_buffer,
        )
    return reverb.Table(
        name=name,
        sampler=reverb.selectors.Prioritized(priority_exponent),
        remover=reverb.selectors.Fifo(),
        max_size=max_size,
        rate_limiter=rate_limiter,
        signature=layout.item_spec(),
    )


def make_queue_table(name: str, signature: Any, max_size: int) -> reverb.Table:
    """A FIFO queue (as Acme's IMPALA uses): items come out in insertion order, each is
    sampled once and then removed; inserts block while `max_size` items wait, samples block
    while it is empty (reverb.rate_limiters.Queue)."""
    if max_size < 1:
        raise ValueError(f"queue {name!r}: max_size must be >= 1, got {max_size}")
    return reverb.Table.queue(name=name, max_size=max_size, signature=signature)


def make_dataset(
    server_address: str,
    table: str,
    batch_size: int,
    prefetch_batches: int = 4,
    max_in_flight_samples_per_worker: int | None = None,
    num_workers_per_iterator: int = -1,
) -> tf.data.Dataset:
    """A TrajectoryDataset of batches (the table's signature gives shapes and dtypes).

    num_workers_per_iterator=1 keeps a queue's order (several workers interleave their items).
    """
    in_flight = max_in_flight_samples_per_worker or 2 * batch_size
    dataset = reverb.TrajectoryDataset.from_table_signature(
        server_address=server_address,
        table=table,
        max_in_flight_samples_per_worker=in_flight,
        num_workers_per_iterator=num_workers_per_iterator,
    )
    return dataset.batch(batch_size, drop_remainder=True).prefetch(prefetch_batches)


def sample_batches(
    server_address: str,
    table: str,
    batch_size: int,
    prefetch_batches: int = 4,
    **dataset_kwargs: Any,
) -> Iterator[ReplayBatch]:
    """Yields ReplayBatch of numpy arrays, sampled in TF's background threads."""
    dataset = make_dataset(server_address, table, batch_size, prefetch_batches, **dataset_kwargs)
    for sample in dataset.as_numpy_iterator():
        yield to_replay_batch(sample)


def to_replay_batch(sample: Any) -> ReplayBatch:
    """Converts a (numpy) reverb.ReplaySample into a ReplayBatch."""
    return ReplayBatch(
        keys=sample.info.key,
        probabilities=sample.info.probability,
        priorities=sample.info.priority,
        table_size=sample.info.table_size,
        data=dict(sample.data),
    )



class BatchFetcher:
    """Takes batches from `iterator` in a background thread; `next()` waits for one while
    checking every `check_every_s` that the server at `server_address` still answers.

    A TrajectoryDataset waiting on a table that gets no more items (an empty queue once the
    actors stopped) keeps waiting after its server is gone; this wait does not: `next()`
    raises once the server stops answering, so the learner's node can stop. The fetching
    thread is a daemon and is abandoned then.
    """

    def __init__(self, iterator: Iterator[ReplayBatch], server_address: str, check_every_s: float = 1.0,
                 server_timeout_s: int = 5):
        import queue
        import threading

        self._batches: "queue.Queue" = queue.Queue(maxsize=1)
        self._client = reverb.Client(server_address)
        self._check_every_s = check_every_s
        self._server_timeout_s = server_timeout_s
        self._empty = queue.Empty
        self._thread = threading.Thread(target=self._fetch, args=(iterator,), daemon=True,
                                        name="batch_fetcher")
        self._thread.start()

    def _fetch(self, iterator: Iterator[ReplayBatch]) -> None:
        try:
            for batch in iterator:
                self._batches.put((batch, None))
            self._batches.put((None, StopIteration()))
        except Exception as error:  # noqa: BLE001 - handed to the caller of next()
            self._batches.put((None, error))

    def __iter__(self) -> "BatchFetcher":
        return self

    def __next__(self) -> ReplayBatch:
        while True:
            try:
                batch, error = self._batches.get(timeout=self._check_every_s)
            except self._empty:
                self._client.server_info(timeout=self._server_timeout_s)  # raises once it is gone
                continue
            if error is not None:
                self._batches.put((None, error))  # every later call raises it too
                raise error
            return batch
