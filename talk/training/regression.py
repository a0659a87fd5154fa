"""LightningModule for continuous audio -> vertex regression (FaceFormer-style baseline)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from audio.encoder import AudioEncoder
from motion.regression.regressor import FaceFormerRegressor
from talk.data.batch import Batch
from talk.pipeline.config import bind
from talk.pipeline.generators import RegressionGenerator
from talk.pipeline.model import AudioToMotion
from talk.training.base import LossParts, TalkModule


class RegressionModule(TalkModule):
    """Trains the baseline's :class:`~talk.pipeline.AudioToMotion` (``self.model``): audio encoder -> features
    aligned to motion frames -> regressor (:class:`~talk.pipeline.generators.RegressionGenerator`) -> vertex
    offsets + template.

    With ``basis_components`` set, the regressor predicts coefficients of a linear basis of vertex offsets
    (principal components of the training motion, computed once when training starts and stored in the
    checkpoint), which the module maps back to vertices, as VOCA initialises its output layer with PCA components.
    The basis is orthonormal, so the squared error on coefficients equals the squared vertex error up to a constant
    (the part of the motion outside the basis): the loss stays a vertex loss, while training never materialises
    ``[B, T, V*3]`` predictions and runs several times faster on a CPU. ``None`` regresses ``V * 3`` offsets directly
    (FaceFormer's output layer).

    Args:
        audio_encoder: Waveform encoder (``audio.MelEncoder``, ``audio.HFSpeechEncoder``, ...).
        generator: Factory of the regressor over aligned features, called as
            ``generator(output_dim, num_styles, audio_encoder.output_dim)`` where ``output_dim`` is
            ``basis_components`` or ``motion_dim``; in YAML give its ``class_path`` and the remaining ``init_args``.
        motion_dim: Size of one motion frame, ``V * 3`` (linked from the data).
        num_styles: Number of training speakers (linked from the data).
        optimizer: Optimizer factory.
        scheduler: Optional learning-rate scheduler factory (stepped per epoch).
        basis_components: Size of the PCA output basis (at most ``motion_dim``: larger values are clamped), or None
            for direct ``V * 3`` regression.
        basis_frames: Training frames sampled (evenly) to compute the basis.
        offset_scale: Metres per unit of the generator's output; losses are computed in these units, so they are
            O(1) regardless of the mesh scale.
        velocity_weight: Weight of the frame-to-frame velocity loss.
        fps: Motion frame rate (linked from the data).
        test_condition: Training subject whose style drives subjects unseen in training; None averages all
            training styles.
        encoder_window_seconds: At inference, audio longer than this is encoded in windows of this length with
            ``encoder_context_seconds`` of context on each side (``AudioEncoder.encode_long``), as the token model
            does, so that the cost of a self-attention encoder (wav2vec2, HuBERT, WavLM) grows linearly with the
            length instead of quadratically; exact for the mel encoder, and for the speech encoders everything but
            the transformer's view past each window is exact. Training always encodes whole clips. None encodes
            every input whole.
        encoder_context_seconds: Left context and look-ahead of each window.
    """

    def __init__(
        self,
        audio_encoder: AudioEncoder,
        generator: Callable[[int, int, int], FaceFormerRegressor],
        motion_dim: int = 15069,
        num_styles: int = 8,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        basis_components: int | None = 128,
        basis_frames: int = 4000,
        offset_scale: float = 0.01,
        velocity_weight: float = 1.0,
        fps: float = 30.0,
        test_condition: str | None = None,
        encoder_window_seconds: float | None = 10.0,
        encoder_context_seconds: float = 0.5,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        from_configs = self.save_config(["audio_encoder", "generator", "optimizer", "scheduler"])
        if basis_components is not None and basis_components > motion_dim:
            basis_components = (
                motion_dim  # a basis never needs more components than the motion has dimensions
            )
        if basis_components is not None and not 0 < basis_components:
            raise ValueError(
                f"basis_components={basis_components} must be in [1, motion_dim={motion_dim}] or None."
            )
        regressor_args = (basis_components or motion_dim, num_styles, audio_encoder.output_dim)
        regression = RegressionGenerator(
            generator(*regressor_args), motion_dim, basis_components, offset_scale
        )
        self.model = AudioToMotion(
            audio_encoder,
            regression,
            num_styles=num_styles,
            fps=fps,
            test_condition=test_condition,
            encoder_window_seconds=encoder_window_seconds,
            encoder_context_seconds=encoder_context_seconds,
        )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.offset_scale = offset_scale
        self.velocity_weight = velocity_weight
        self.basis_frames = basis_frames
        if from_configs:
            generator = {
                "class_path": "talk.pipeline.generators.RegressionGenerator",
                "init_args": {
                    "regressor": bind(self.hparams["generator"], *regressor_args),
                    "motion_dim": motion_dim,
                    "basis_components": basis_components,
                    "offset_scale": offset_scale,
                },
            }
            self.record_pipeline(
                generator, num_styles=num_styles, fps=float(fps), test_condition=test_condition,
                encoder_window_seconds=encoder_window_seconds, encoder_context_seconds=encoder_context_seconds,
            )  # fmt: skip

    @property
    def regression(self) -> RegressionGenerator:
        return self.model.generator

    def legacy_state_renames(self) -> dict[str, str]:
        return {"audio_encoder.": "model.audio_encoder.", "generator.": "model.generator.regressor.",
                "basis": "model.generator.basis"}  # fmt: skip

    # ------------------------------------------------------------------------------------------------- basis
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.regression.basis is not None and not bool(self.regression.basis_ready):
            self.fit_basis(self.trainer.datamodule.datasets["train"])

    @torch.no_grad()
    def fit_basis(self, dataset) -> None:  # noqa: ANN001 - any indexable of talk.data.Sample
        """Principal components of the training offsets (in ``offset_scale`` units), from evenly spaced frames."""
        reg = self.regression
        lengths = [dataset[i].motion.shape[0] for i in range(len(dataset))]
        step = max(1, sum(lengths) // self.basis_frames)
        rows = []
        for i in range(len(dataset)):
            s = dataset[i]
            rows.append(((s.motion[::step] - s.template) / self.offset_scale).reshape(-1, self.motion_dim))
        x = torch.cat(rows).to(reg.basis.device)
        mean = x.mean(dim=0)
        q = min(reg.basis.shape[0], x.shape[0], self.motion_dim)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # svd_lowrank is randomised; keep the basis reproducible
        _, _, v = torch.svd_lowrank(x - mean, q=min(q + 10, min(x.shape)), niter=4)
        torch.random.set_rng_state(generator_state)
        reg.basis.zero_()
        reg.basis[:q] = v[:, :q].T
        reg.basis_mean.copy_(mean)
        reg.basis_ready.fill_(True)

    def _loss(self, batch: Batch) -> LossParts:
        style = self.style_for(batch)
        features = self.model.features(batch.audio, batch.audio_lengths)
        output = self.regression.output(features, batch.motion_lengths, style, self.model.fps)
        b, t, _ = output.shape
        target = (batch.motion - batch.template[:, None]).reshape(b, t, -1) / self.offset_scale
        if self.regression.basis is not None:
            target = self.regression.to_coefficients(target)
        # Normalised per vertex coordinate, so both parameterisations report the same scale of loss.
        denom = self.motion_dim
        mask = batch.motion_mask[..., None].to(output.dtype)
        rec = ((output - target).pow(2) * mask).sum() / (mask.sum() * denom).clamp(min=1)
        vel_mask = mask[:, 1:] * mask[:, :-1]
        vel = ((output.diff(dim=1) - target.diff(dim=1)).pow(2) * vel_mask).sum() / (
            vel_mask.sum() * denom
        ).clamp(min=1)
        return LossParts(rec + self.velocity_weight * vel, {"reconstruction": rec, "velocity": vel})
