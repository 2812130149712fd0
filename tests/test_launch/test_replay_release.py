"""A stopped replay node lets in the inserts its rate limiter holds back (so a stopping actor
is not left waiting for samples nobody takes), with a real in-process reverb.Server."""

import threading
import types

import numpy as np
import pytest

from agents.registry import AGENTS
from launch.distributed import nodes
from launch.distributed.nodes.replay import admissible_samples


def limiter(samples_per_insert, min_diff, max_diff, inserts, samples, min_size=1):
    return types.SimpleNamespace(
        samples_per_insert=samples_per_insert, min_diff=min_diff, max_diff=max_diff,
        min_size_to_sample=min_size, insert_stats=types.SimpleNamespace(completed=inserts),
        sample_stats=types.SimpleNamespace(completed=samples))


def test_admissible_samples_by_hand():
    # 16 samples per insert, diff D = 16 * inserts - samples in [0, 64].
    assert admissible_samples(limiter(16, 0, 64, inserts=4, samples=0), size=4) == 64  # D = 64
    assert admissible_samples(limiter(16, 0, 64, inserts=4, samples=10), size=4) == 54  # 54 + 16 > 64
    assert admissible_samples(limiter(16, 0, 64, inserts=4, samples=16), size=4) == 0  # 48 + 16 <= 64: inserts go
    assert admissible_samples(limiter(16, 0, 64, inserts=4, samples=0, min_size=5), size=4) == 0
    # A queue of 8 (1 sample per insert, D in [0, 8]): full, every item may be taken.
    assert admissible_samples(limiter(1, 0, 8, inserts=8, samples=0), size=8) == 8
    # MinSize: inserts never wait.
    assert admissible_samples(limiter(1, -1.8e308, 1.8e308, inserts=100, samples=0), size=100) == 0


def rate_limited_builder():
    import reverb
    import tensorflow as tf

    def make_replay_tables(config, spec):
        # 4 samples per insert, min_size 2, error buffer 8: D = 4 * inserts - samples in [0, 16],
        # so without samples the 5th insert waits.
        return [reverb.Table("items", reverb.selectors.Prioritized(0.6), reverb.selectors.Fifo(), 100,
                             reverb.rate_limiters.SampleToInsertRatio(4.0, 2, 8.0),
                             signature={"x": tf.TensorSpec([], tf.float32)})]

    return types.SimpleNamespace(REPLAY_CHECKPOINTED=True, make_replay_tables=make_replay_tables)


@pytest.mark.reverb
def test_a_stopped_replay_lets_rate_limited_inserts_in_and_keeps_them(tmp_path, monkeypatch):
    import reverb

    monkeypatch.setitem(AGENTS, "limited", rate_limited_builder())
    directory = str(tmp_path / "replay")
    replay = nodes.ReplayNode("limited", None, None, checkpoint_dir=directory)
    client = reverb.Client(replay.address())
    inserted = []

    def actor():  # writes 10 items, waiting for room after each, as the n-step adder does
        with client.trajectory_writer(num_keep_alive_refs=1) as writer:
            for i in range(10):
                writer.append({"x": np.float32(i)})
                writer.create_item("items", 1.0, {"x": writer.history["x"][-1]})
                writer.flush(block_until_num_items=0)
                inserted.append(i)

    thread = threading.Thread(target=actor, daemon=True)
    thread.start()
    thread.join(1.0)
    for _ in range(100):  # the first 4 inserts go in at once; wait for them, 10 s at most
        info = client.server_info(timeout=5)["items"]
        if info.current_size >= 4:
            break
        thread.join(0.1)
    assert thread.is_alive() and replay.size() == 4  # the 5th insert waits for samples
    assert admissible_samples(info.rate_limiter_info, info.current_size) == 16
    replay.stop()  # the program stops: nothing else will sample
    thread.join(30)
    assert not thread.is_alive() and inserted == list(range(10))
    replay.close()
    assert replay.size() == 10
    again = nodes.ReplayNode("limited", None, None, checkpoint_dir=directory)
    assert again.size() == 10  # the checkpoint holds what was let in
    again.close()
