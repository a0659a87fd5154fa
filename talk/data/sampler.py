"""The training order: one seeded shuffle per epoch, cut into global batches that the processes share.

One process and W processes (DDP) see the same global batches in the same order: global batch j is the j-th run
of ``W * batch_size`` indices of the epoch's permutation, and process r takes its r-th contiguous share. So the
rows of a global batch, gathered over the processes in rank order, are the one-process batch row for row (what
the residual VQ's k-means initialisation and dead-code replacement draw from, see
:mod:`motion.tokens.quantizer`), and a resumed run draws the order of its epoch again from the seed alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler


class GlobalBatchSampler(DistributedSampler):
    """Indices of one process's share of each global batch (see the module docstring).

    A ``DistributedSampler`` (Lightning leaves it in place under DDP and calls :meth:`set_epoch`), with the same
    padding rule: when the dataset does not divide by the number of processes, the first indices of the
    permutation are repeated so that every process runs the same number of steps.

    Args:
        dataset: The training split.
        batch_size: Sequences per batch in each process.
        num_replicas: Number of processes W.
        rank: This process's rank.
        seed: Seed of the permutations (the run's ``seed_everything`` seed).
    """

    def __init__(
        self, dataset: Sized, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        world = self.num_replicas
        total = math.ceil(len(order) / world) * world
        order += order[: total - len(order)]
        own: list[int] = []
        step = world * self.batch_size
        for start in range(0, total, step):
            chunk = order[start : start + step]
            share = len(chunk) // world  # the last global batch may be short: split evenly
            own += chunk[self.rank * share : (self.rank + 1) * share]
        return iter(own)

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.num_replicas)
