"""Nearest-code search and k-means++ / Lloyd clustering, the codebook initialisation of the residual VQ."""

from __future__ import annotations

import torch
from torch import Tensor


def nearest(x: Tensor, embed: Tensor) -> Tensor:
    """Index of the nearest code (squared L2) for each row of ``x`` ``[N, D]`` among ``embed`` ``[C, D]``."""
    # ||x||^2 is constant per row, so argmin over ||e||^2 - 2 x.e is enough (and cheaper than cdist).
    scores = embed.pow(2).sum(-1)[None, :] - 2.0 * (x @ embed.t())
    return scores.argmin(dim=-1)


def kmeans(x: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """k-means++ seeding followed by ``iters`` Lloyd iterations.

    Args:
        x: ``[N, D]`` float32 points, ``N >= 1``.
        num_clusters: C.
        iters: Lloyd iterations.

    Returns:
        ``(centroids [C, D], counts [C])`` where counts are the final assignment histogram. Clusters that end
        empty (possible only when the data has fewer than C distinct points) keep a data point as centroid and
        count 0, so the dead-code rule replaces them at once.
    """
    n = x.shape[0]
    # k-means++: D^2 sampling spreads the seeds over the clusters, which plain random seeding often misses.
    centroids = x.new_empty(num_clusters, x.shape[1])
    centroids[0] = x[torch.randint(n, (1,), device=x.device)]
    closest = (x - centroids[0]).pow(2).sum(-1)
    for c in range(1, num_clusters):
        total = closest.sum()
        if total > 0:
            idx = torch.multinomial(closest / total, 1)
        else:  # every point is already a centroid: duplicate one
            idx = torch.randint(n, (1,), device=x.device)
        centroids[c] = x[idx]
        closest = torch.minimum(closest, (x - centroids[c]).pow(2).sum(-1))
    for _ in range(iters):
        codes = nearest(x, centroids)
        counts = torch.bincount(codes, minlength=num_clusters).float()
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    counts = torch.bincount(nearest(x, centroids), minlength=num_clusters).float()
    return centroids, counts
