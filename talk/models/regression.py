"""LightningModule for continuous audio -> vertex regression (FaceFormer-style baseline)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from audio.align import interpolate_features
from audio.encoder import AudioEncoder
from motion.regressor import FaceFormerRegressor
from talk.data.batch import Batch
from talk.models.base import TalkModule


class RegressionModule(TalkModule):
    """Audio encoder -> features aligned to motion frames -> regressor -> vertex offsets + template.

    Args:
        audio_encoder: Waveform encoder (``audio.MelEncoder``, ``audio.HFSpeechEncoder``, ...).
        generator: Factory of the regressor over aligned features, called as
            ``generator(motion_dim, num_styles, audio_encoder.output_dim)``; in YAML give its ``class_path`` and
            the remaining ``init_args``.
        motion_dim: Size of one motion frame, ``V * 3`` (linked from the data).
        num_styles: Number of training speakers (linked from the data).
        optimizer: Optimizer factory.
        scheduler: Optional learning-rate scheduler factory (stepped per epoch).
        offset_scale: Metres per unit of the generator's output; losses are computed in these units, so they are
            O(1) regardless of the mesh scale.
        velocity_weight: Weight of the frame-to-frame velocity loss.
        fps: Motion frame rate (linked from the data).
        test_condition: Training subject whose style drives subjects unseen in training; None averages all
            training styles.
    """

    def __init__(
        self,
        audio_encoder: AudioEncoder,
        generator: Callable[[int, int, int], FaceFormerRegressor],
        motion_dim: int = 15069,
        num_styles: int = 8,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        offset_scale: float = 0.01,
        velocity_weight: float = 1.0,
        fps: float = 30.0,
        test_condition: str | None = None,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        self.save_config(["audio_encoder", "generator", "optimizer", "scheduler"])
        self.audio_encoder = audio_encoder
        self.generator = generator(motion_dim, num_styles, audio_encoder.output_dim)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.offset_scale = offset_scale
        self.velocity_weight = velocity_weight

    @property
    def sample_rate(self) -> int:
        return int(self.audio_encoder.sample_rate)

    def predict_offsets(
        self, audio: Tensor, audio_lengths: Tensor, num_frames: Tensor, style: Tensor
    ) -> Tensor:
        """Offsets from the template in units of ``offset_scale``.

        Args:
            audio: ``[B, N]`` waveforms.
            audio_lengths: ``[B]`` valid samples.
            num_frames: ``[B]`` motion frames to produce per sequence.
            style: ``[B]`` style ids or ``[B, S]`` style weights.

        Returns:
            ``[B, T, V*3]``.
        """
        features = self.audio_encoder(audio, audio_lengths)
        aligned = interpolate_features(features, num_frames, fps=self.fps)
        return self.generator(aligned.x, style, aligned.mask)

    def generate(
        self, audio: Tensor, audio_lengths: Tensor, num_frames: Tensor, template: Tensor, style: Tensor
    ) -> Tensor:
        """Vertices ``[B, T, V, 3]`` for the given audio, templates ``[B, V, 3]`` and styles."""
        offsets = self.predict_offsets(audio, audio_lengths, num_frames, style)
        b, t, _ = offsets.shape
        return template[:, None] + offsets.view(b, t, -1, 3) * self.offset_scale

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, parts = self._loss(batch)
        self.log_dict(
            {f"train/{k}": v for k, v in parts.items()}, batch_size=batch.audio.shape[0], prog_bar=False
        )
        self.log("train/loss", loss, batch_size=batch.audio.shape[0], prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _ = self._loss(batch)
        self.log("val/loss", loss, batch_size=batch.audio.shape[0], prog_bar=True)
        self._val_metrics_step(batch)

    def _loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        style = self.style_for(batch)
        offsets = self.predict_offsets(batch.audio, batch.audio_lengths, batch.motion_lengths, style)
        b, t, _ = offsets.shape
        target = (batch.motion - batch.template[:, None]).reshape(b, t, -1) / self.offset_scale
        mask = batch.motion_mask[..., None].to(offsets.dtype)
        rec = ((offsets - target).pow(2) * mask).sum() / (mask.sum() * offsets.shape[-1]).clamp(min=1)
        vel_mask = mask[:, 1:] * mask[:, :-1]
        vel = ((offsets.diff(dim=1) - target.diff(dim=1)).pow(2) * vel_mask).sum()
        vel = vel / (vel_mask.sum() * offsets.shape[-1]).clamp(min=1)
        return rec + self.velocity_weight * vel, {"reconstruction": rec, "velocity": vel}
