"""LightningModule that trains the residual-VQ motion tokenizer on vertex offsets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from motion.tokenizer import MotionTokenizer
from talk.data.batch import Batch
from talk.errors import CheckpointError
from talk.metrics import VertexMetrics
from talk.models.base import TalkModule


class TokenizerModule(TalkModule):
    """Trains ``MotionTokenizer`` on per-frame vertex offsets from the template (``[B, T, V*3]``).

    Losses (in units of ``offset_scale``): reconstruction, velocity, and the quantizer's commitment loss. Logs
    per-codebook perplexity, usage and dead codes. ``talk test`` reports reconstruction LVE/FDD/MVE when decoding
    with the first 1..K codebooks (``rvq_1`` .. ``rvq_K``) next to the static template.

    Args:
        tokenizer: Factory of the tokenizer, called as ``tokenizer(motion_dim)``.
        motion_dim: ``V * 3`` (linked from the data).
        num_styles: Training speakers (linked from the data; unused by the tokenizer itself).
        fps: Motion frame rate (linked from the data).
        optimizer: Optimizer factory.
        scheduler: Optional learning-rate scheduler factory.
        offset_scale: Metres per normalised unit of the offsets fed to the tokenizer.
        velocity_weight: Weight of the velocity loss.
        test_condition: Unused (kept for a uniform interface).
    """

    def __init__(
        self,
        tokenizer: Callable[[int], MotionTokenizer],
        motion_dim: int = 15069,
        num_styles: int = 8,
        fps: float = 30.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        offset_scale: float = 0.002,
        velocity_weight: float = 1.0,
        test_condition: str | None = None,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        self.save_config(["tokenizer", "optimizer", "scheduler"])
        self.tokenizer = tokenizer(motion_dim)
        self.tokenizer.set_normalization(0.0, offset_scale)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.offset_scale = offset_scale
        self.velocity_weight = velocity_weight

    @staticmethod
    def offsets(batch: Batch) -> Tensor:
        """Vertex offsets from the template, flattened: ``[B, T, V*3]`` in metres."""
        b, t = batch.motion.shape[:2]
        return (batch.motion - batch.template[:, None]).reshape(b, t, -1)

    def reconstruct(self, batch: Batch, num_quantizers: int | None = None) -> Tensor:
        """Vertices ``[B, T, V, 3]`` after encoding and decoding the batch's motion with n codebooks."""
        offsets = self.offsets(batch)
        codes = self.tokenizer.encode(offsets, batch.motion_mask, num_quantizers)
        rec = self.tokenizer.decode(codes, length=offsets.shape[1])
        return batch.template[:, None] + rec.view(*batch.motion.shape)

    def _predict_batch(self, batch: Batch) -> Tensor:
        return self.reconstruct(batch)

    def generate(self, *args, **kwargs) -> Tensor:  # noqa: ANN002, ANN003
        raise CheckpointError(
            "a tokenizer checkpoint reconstructs motion but cannot animate audio; train an audio-to-motion model "
            "(experiments/synthetic/lm.yaml) on top of it."
        )

    def _loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        offsets = self.offsets(batch)
        out = self.tokenizer(offsets, batch.motion_mask)
        mask = batch.motion_mask[..., None].to(offsets.dtype)
        err = (out.reconstruction - offsets) / self.offset_scale
        denom = (mask.sum() * offsets.shape[-1]).clamp(min=1)
        rec = (err.pow(2) * mask).sum() / denom
        vel_mask = mask[:, 1:] * mask[:, :-1]
        vel = (err.diff(dim=1).pow(2) * vel_mask).sum() / (vel_mask.sum() * offsets.shape[-1]).clamp(min=1)
        loss = rec + self.velocity_weight * vel + out.commitment_loss
        parts = {"reconstruction": rec, "velocity": vel, "commitment": out.commitment_loss}
        for k in range(self.tokenizer.num_quantizers):
            parts[f"perplexity/{k}"] = out.perplexity[k]
            parts[f"usage/{k}"] = out.usage[k]
        return loss, parts

    def on_train_epoch_end(self) -> None:
        for k, layer in enumerate(self.tokenizer.quantizer.layers):
            dead = (layer.cluster_size < layer.threshold_dead).sum()
            self.log(f"train/dead_codes/{k}", dead.float())

    def on_test_epoch_start(self) -> None:
        lips, upper = self._regions()
        names = [f"rvq_{k}" for k in range(1, self.tokenizer.num_quantizers + 1)]
        self._test_metrics = {n: VertexMetrics(lips, upper) for n in [*names, "static_template"]}

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        for k in range(1, self.tokenizer.num_quantizers + 1):
            reconstruction = self.reconstruct(batch, k)
            self._update_test_metrics(f"rvq_{k}", reconstruction, batch)
        self._update_static_template(batch)
        return {"vertices": reconstruction.detach()}  # all codebooks, for callbacks
