import pytest

from talk.data.sampler import GlobalBatchSampler


@pytest.mark.parametrize("size", [10, 12, 7])
def test_processes_share_the_global_batches_of_one_process(size):
    """W processes with batch b: their j-th batches, concatenated in rank order, are one process's j-th batch of
    W * b sequences (the order k-means and dead-code replacement draw their rows in); with padding as
    DistributedSampler when the split does not divide by W."""
    data, b, world = list(range(size)), 2, 2
    one = list(GlobalBatchSampler(data, b * world))
    assert sorted(one) == data
    shares = [list(GlobalBatchSampler(data, b, world, rank)) for rank in range(world)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(GlobalBatchSampler(data, b, world, 0))
    padded = one + one[: len(shares[0]) * world - size]
    batches = [padded[i : i + b * world] for i in range(0, len(padded), b * world)]
    for j, batch in enumerate(batches):
        share = len(batch) // world
        assert sum((s[j * b : j * b + share] for s in shares), []) == batch


def test_the_order_depends_on_seed_and_epoch_only():
    data = list(range(20))
    a, b = GlobalBatchSampler(data, 4, seed=3), GlobalBatchSampler(data, 4, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == data
    assert list(GlobalBatchSampler(data, 4, seed=4)) != first
