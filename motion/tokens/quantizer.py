"""Residual vector quantization with EMA codebooks (SoundStream / EnCodec style), written for motion latents.

A ``VectorQuantizer`` is one codebook; ``ResidualVQ`` chains K of them, each quantizing what the previous ones
left over, so the first k codebooks alone give a coarse-to-fine approximation.

Codebooks are not trained by gradient descent. Each one keeps exponential moving averages of how many vectors
were assigned to every code (``cluster_size``) and of their sum (``embed_sum``); the code is their ratio, with
Laplace smoothing so that a code with a tiny count does not divide by ~0. The encoder is pulled towards the
codes by the commitment loss and receives the reconstruction gradient through the straight-through estimator.

Training-only behaviour (never in eval mode, never in ``encode``): k-means++ / Lloyd initialisation of each
codebook on its own residuals the first time it is used, EMA updates, dead-code replacement and quantizer
dropout. Under ``torch.distributed`` the EMA statistics are summed over ranks and the random choices (dropout
depth, k-means, replacement samples) are taken from rank 0, so every rank keeps an identical codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from motion.tokens.kmeans import kmeans, nearest


@dataclass(frozen=True)
class QuantizedResult:
    """Output of ``ResidualVQ.forward``.

    Attributes:
        quantized: ``[B, Tq, D]`` sum of the used codebooks' vectors; its gradient flows straight to the input.
        codes: ``[B, K', Tq]`` long code indices, K' = ``num_quantizers`` codebooks used.
        commitment_loss: Scalar, ``commitment_weight`` times the sum over used levels of the masked mean squared
            distance between each level's residual and its (detached) code.
        perplexity: ``[K]`` per-codebook perplexity ``exp(entropy)`` of this batch's valid assignments; 0 for
            codebooks not used (quantizer dropout).
        usage: ``[K]`` fraction of each codebook's codes assigned at least once in this batch; 0 when unused.
        num_quantizers: How many codebooks were used.
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    perplexity: Tensor
    usage: Tensor
    num_quantizers: int


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_rows(x: Tensor) -> Tensor:
    """The rows ``[N_r, D]`` of every rank concatenated in rank order (a collective); ``x`` itself in one process.

    Rank 0 draws k-means seeds and dead-code replacements from the whole global batch, as one process training
    on that batch would, instead of from its own shard."""
    if not _distributed():
        return x
    sizes = [torch.zeros((), dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor(x.shape[0], device=x.device))
    longest = int(max(sizes))
    padded = x.new_zeros(longest, x.shape[1])
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(n)] for part, n in zip(parts, sizes, strict=True)])


def codebook_stats(codes: Tensor, codebook_size: int) -> tuple[Tensor, Tensor]:
    """Perplexity and usage of one codebook's assignments.

    Args:
        codes: ``[N]`` code indices of the valid positions.
        codebook_size: Number of codes C.

    Returns:
        ``(perplexity, usage)`` scalars: ``exp(-sum p log p)`` of the assignment histogram (1 = one code, C =
        uniform) and the fraction of codes used. Both are 0 when ``N == 0``.
    """
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).float()
    total = counts.sum()
    if total == 0:
        zero = counts.new_zeros(())
        return zero, zero
    p = counts / total
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """One EMA codebook of ``codebook_size`` vectors of size ``dim``.

    The codebook and its EMA statistics are buffers (saved in checkpoints, never touched by the optimizer).

    Args:
        dim: Vector size D.
        codebook_size: Number of codes C.
        decay: EMA decay of the cluster sizes and sums.
        threshold_dead: A code whose EMA cluster size falls below this (in assignments per step) is dead and
            gets replaced by a random current input vector.
        kmeans_init: Initialise the codebook by k-means on the first training batch that uses it; otherwise it
            starts from a standard normal draw.
        kmeans_iters: Lloyd iterations of that k-means.
        eps: Laplace smoothing constant.
    """

    def __init__(
        self,
        dim: int = 64,
        codebook_size: int = 256,
        decay: float = 0.99,
        threshold_dead: float = 1.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.threshold_dead = threshold_dead
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.eps = eps
        embed = torch.zeros(codebook_size, dim) if kmeans_init else torch.randn(codebook_size, dim)
        self.register_buffer("embed", embed)
        self.register_buffer(
            "cluster_size", torch.zeros(codebook_size) if kmeans_init else torch.ones(codebook_size)
        )
        self.register_buffer("embed_sum", embed.clone())
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    def nearest(self, x: Tensor) -> Tensor:
        """Code indices ``[N]`` of the nearest codes to ``x`` ``[N, D]``."""
        return nearest(x, self.embed.to(x.dtype))

    def lookup(self, codes: Tensor) -> Tensor:
        """Code vectors ``[..., D]`` for indices ``[...]``."""
        return self.embed[codes]

    @torch.no_grad()
    def init_kmeans(self, x: Tensor) -> None:
        """Sets the codebook to k-means centroids of ``x`` ``[N, D]`` (of every rank's ``x`` under
        ``torch.distributed``) and the EMA statistics to match."""
        x = _all_rows(x)
        if x.shape[0] > 0:
            centroids, counts = kmeans(x, self.codebook_size, self.kmeans_iters)
            self.embed.copy_(centroids)
            self.cluster_size.copy_(counts)
            self.embed_sum.copy_(centroids * counts[:, None])
            self.initted.fill_(True)
        if _distributed():
            for buf in (self.embed, self.cluster_size, self.embed_sum, self.initted):
                dist.broadcast(buf, src=0)

    @torch.no_grad()
    def update(self, x: Tensor, codes: Tensor) -> None:
        """One EMA step from the valid vectors ``x`` ``[N, D]`` assigned to ``codes`` ``[N]``.

        ``cluster_size <- decay * cluster_size + (1 - decay) * counts`` and the same for ``embed_sum``; the code
        is ``embed_sum / n_c`` with Laplace-smoothed counts ``n_c = (size_c + eps) / (n + C eps) * n``.
        A batch without valid vectors (over all ranks) leaves everything untouched.
        """
        counts = torch.bincount(codes, minlength=self.codebook_size).to(self.cluster_size.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, x.to(self.embed_sum.dtype))
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        if counts.sum() == 0:
            return
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def replace_dead(self, x: Tensor) -> Tensor:
        """Re-initialises every dead code from a random row of ``x`` ``[N, D]`` (this batch's valid inputs, of every
        rank under ``torch.distributed``).

        The code's EMA state is reset with it (``cluster_size = threshold_dead``, ``embed_sum = code *
        threshold_dead``), so the next EMA step starts from the new vector instead of dragging it back towards
        the stale sum. The code stays alive only if it then wins on average ``threshold_dead`` assignments per
        step. Returns the ``[C]`` bool mask of replaced codes.
        """
        dead = self.cluster_size < self.threshold_dead
        num_dead = int(dead.sum())
        if num_dead == 0:
            return dead
        x = _all_rows(x)  # the dead set is the same on every rank (global statistics), so all of them gather
        if x.shape[0] == 0:
            dead = torch.zeros_like(dead)
        else:
            picks = x[torch.randint(x.shape[0], (num_dead,), device=x.device)].to(self.embed.dtype)
            self.embed[dead] = picks
            self.cluster_size[dead] = self.threshold_dead
            self.embed_sum[dead] = picks * self.threshold_dead
        if _distributed():  # rank 0's picks (each rank drew its own from the same rows)
            for buf in (self.embed, self.cluster_size, self.embed_sum):
                dist.broadcast(buf, src=0)
        return dead


class ResidualVQ(nn.Module):
    """K EMA codebooks applied in sequence to the residual of the previous ones.

    Args:
        dim: Latent size D of the vectors to quantize.
        num_quantizers: Number of codebooks K.
        codebook_size: Codes per codebook C.
        decay: EMA decay of the codebook statistics (0.99 is a good default; lower adapts faster).
        commitment_weight: Weight of the commitment loss (``beta`` in VQ-VAE).
        kmeans_init: Initialise each codebook by k-means on its own residuals the first time it is trained.
        kmeans_iters: Lloyd iterations for that initialisation.
        threshold_dead: EMA cluster size (assignments per step) below which a code is replaced by a random
            current residual. 0 disables replacement.
        quantizer_dropout: Probability that a training batch uses only a random number n in ``[1, K]`` of
            codebooks, so that every prefix of the codes decodes to plausible motion.
        eps: Laplace smoothing constant of the EMA cluster sizes.
    """

    def __init__(
        self,
        dim: int = 64,
        num_quantizers: int = 4,
        codebook_size: int = 256,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        threshold_dead: float = 1.0,
        quantizer_dropout: float = 0.5,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        limits = {  # name: (value, valid?, what is allowed)
            "dim": (dim, dim >= 1, ">= 1"),
            "num_quantizers": (num_quantizers, num_quantizers >= 1, ">= 1"),
            "codebook_size": (codebook_size, codebook_size >= 1, ">= 1"),
            "decay": (decay, 0.0 <= decay < 1.0, "in [0, 1)"),
            "quantizer_dropout": (quantizer_dropout, 0.0 <= quantizer_dropout <= 1.0, "in [0, 1]"),
            "threshold_dead": (threshold_dead, threshold_dead >= 0.0, ">= 0"),
            "kmeans_iters": (kmeans_iters, kmeans_iters >= 0, ">= 0"),
            "eps": (eps, eps > 0.0, "> 0"),
        }
        for name, (value, ok, allowed) in limits.items():
            if not ok:
                raise ValueError(f"ResidualVQ {name}={value!r} is invalid; pass a value {allowed}.")
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.commitment_weight = commitment_weight
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, decay, threshold_dead, kmeans_init, kmeans_iters, eps)
            for _ in range(num_quantizers)
        )

    @property
    def codebooks(self) -> Tensor:
        """``[K, C, D]`` the current code vectors."""
        return torch.stack([layer.embed for layer in self.layers])

    def _depth(self, num_quantizers: int | None, training: bool) -> int:
        if num_quantizers is not None:
            if not 1 <= num_quantizers <= self.num_quantizers:
                raise ValueError(
                    f"num_quantizers={num_quantizers} is invalid; pass a value in [1, {self.num_quantizers}]."
                )
            return num_quantizers
        if not training or self.quantizer_dropout == 0.0:
            return self.num_quantizers
        choice = torch.zeros(2, dtype=torch.long, device=self.layers[0].embed.device)
        if torch.rand(()) < self.quantizer_dropout:
            choice[0], choice[1] = 1, int(torch.randint(1, self.num_quantizers + 1, ()))
        if _distributed():  # every rank must run the same levels, or the EMA all-reduces would not pair up
            dist.broadcast(choice, src=0)
        return int(choice[1]) if int(choice[0]) else self.num_quantizers

    def _check(self, x: Tensor, mask: Tensor | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"ResidualVQ input must be [B, Tq, {self.dim}], got {list(x.shape)}.")
        if mask is not None and (mask.shape != x.shape[:2] or mask.dtype != torch.bool):
            raise ValueError(f"ResidualVQ mask must be a bool tensor of shape {list(x.shape[:2])}.")

    def _quantize(self, x: Tensor, mask: Tensor | None, depth: int, train: bool) -> QuantizedResult:
        b, tq, d = x.shape
        k_all = self.num_quantizers
        # Distances and EMA sums in float32 even under autocast: bf16 argmins flip between near-equal codes.
        with torch.autocast(device_type=x.device.type, enabled=False):
            residual = x.float().reshape(b * tq, d)
            valid = None if mask is None else mask.reshape(b * tq)
            num_valid = residual.shape[0] if valid is None else int(valid.sum())
            total = torch.zeros_like(residual)
            commit = residual.new_zeros(())
            perplexity = residual.new_zeros(k_all)
            usage = residual.new_zeros(k_all)
            codes = []
            for k in range(depth):
                layer = self.layers[k]
                r = residual.detach()
                r_valid = r if valid is None else r[valid]
                if train and not bool(layer.initted):
                    layer.init_kmeans(r_valid)
                idx = layer.nearest(r)
                q = layer.lookup(idx).float()  # a copy: later in-place EMA updates do not change it
                idx_valid = idx if valid is None else idx[valid]
                if num_valid > 0:
                    err = (residual - q).pow(2).mean(-1)
                    commit = commit + (err if valid is None else err[valid]).mean()
                if train:
                    layer.update(r_valid, idx_valid)
                    layer.replace_dead(r_valid)
                perplexity[k], usage[k] = codebook_stats(idx_valid, self.codebook_size)
                total = total + q
                residual = residual - q
                codes.append(idx.reshape(b, tq))
        quantized = x + (total.reshape(b, tq, d).to(x.dtype) - x).detach()
        return QuantizedResult(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),
            commitment_loss=self.commitment_weight * commit,
            perplexity=perplexity,
            usage=usage,
            num_quantizers=depth,
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, num_quantizers: int | None = None
    ) -> QuantizedResult:
        """Quantizes ``x``; in training mode also updates the codebooks.

        Args:
            x: ``[B, Tq, D]`` latents.
            mask: ``[B, Tq]`` bool, True on valid positions. Padding is quantized too (so shapes stay dense) but
                excluded from k-means, EMA statistics, dead-code sampling, losses, perplexity and usage.
            num_quantizers: Use exactly the first n codebooks (disables quantizer dropout); default all K, or a
                random n under quantizer dropout in training.

        Returns:
            ``QuantizedResult`` with ``quantized [B, Tq, D]`` and ``codes [B, n, Tq]``.
        """
        self._check(x, mask)
        depth = self._depth(num_quantizers, self.training)
        return self._quantize(x, mask, depth, train=self.training)

    @torch.no_grad()
    def encode(self, x: Tensor, mask: Tensor | None = None, num_quantizers: int | None = None) -> Tensor:
        """Codes ``[B, n, Tq]`` of ``x`` ``[B, Tq, D]`` (n defaults to K). Never updates the codebooks."""
        self._check(x, mask)
        depth = self._depth(num_quantizers, training=False)
        return self._quantize(x, mask, depth, train=False).codes

    def decode(self, codes: Tensor) -> Tensor:
        """Sum of the code vectors: ``[B, K', Tq]`` (K' <= K, the first K' codebooks) -> ``[B, Tq, D]``."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.num_quantizers:
            raise ValueError(
                f"codes must be [B, K', Tq] with 1 <= K' <= {self.num_quantizers}, got {list(codes.shape)}."
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}.")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size - 1}]; got values outside that range."
            )
        out = self.layers[0].lookup(codes[:, 0])
        for k in range(1, codes.shape[1]):
            out = out + self.layers[k].lookup(codes[:, k])
        return out
