"""LightningModule that trains the residual-VQ motion tokenizer on vertex offsets or a face model's parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from motion.face.base import FaceModel
from motion.tokens.tokenizer import MotionTokenizer
from talk.data.batch import Batch
from talk.errors import CheckpointError
from talk.metrics import VertexMetrics
from talk.training.base import LossParts, TalkModule
from talk.training.motion_space import MotionSpace


class TokenizerModule(MotionSpace, TalkModule):
    """Trains ``MotionTokenizer`` on per-frame vertex offsets from the template (``[B, T, V*3]``), or, with a
    ``face_model``, on its parameters: FLAME (``[B, T, n_expression + 3]``: expression coefficients, then jaw
    axis-angle), ARKit-52 weights (``[B, T, 52]``) or BFM expression coefficients (``[B, T, 64]``).

    Losses: reconstruction and velocity in motion space (in units of ``offset_scale``, or ``param_scale`` for
    parameters), the quantizer's commitment loss, and, for parameters, reconstruction and velocity in vertex space:
    the decoded parameters go through the face model on each sequence's template and are compared with the
    sequence's vertices (weight ``vertex_weight``). Logs per-codebook perplexity, usage and dead codes. ``talk
    test`` reports reconstruction LVE/FDD/MVE on vertices when decoding with the first 1..K codebooks (``rvq_1``
    .. ``rvq_K``) next to the static template.

    Args:
        tokenizer: Factory of the tokenizer, called as ``tokenizer(motion_dim)``.
        motion_dim: ``V * 3`` (linked from the data).
        num_styles: Training speakers (linked from the data; unused by the tokenizer itself).
        fps: Motion frame rate (linked from the data).
        optimizer: Optimizer factory.
        scheduler: Optional learning-rate scheduler factory.
        offset_scale: Metres per normalised unit of the offsets fed to the tokenizer.
        velocity_weight: Weight of the velocity losses.
        test_condition: Unused (kept for a uniform interface).
        face_model: Tokenize this face model's parameters instead of vertex offsets (``motion.face.flame.FLAME``,
            ``motion.face.blendshapes.ArkitRig`` or ``motion.face.bfm.BFM``; the data must be read as that model's
            parameters, e.g. a ``ManifestDataModule`` of FLAME ``.npz``, ARKit or BFM lines). Its vertex count must
            match the data's.
        param_scale: Parameter units per normalised unit of the parameters fed to the tokenizer.
        scale_by_displacement: Give each parameter its own scale, ``param_scale`` times how much less than the
            face model's most effective parameter it moves the mesh (``face_model.motion_weights()``, e.g. BFM), so
            that the tokenizer's input and its parameter loss weigh each parameter by its effect on the face, as
            the vertex loss does; otherwise one scale for all.
        vertex_weight: Weight of the vertex-space losses when tokenizing parameters.
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
        face_model: FaceModel | None = None,
        param_scale: float = 1.0,
        vertex_weight: float = 1.0,
        scale_by_displacement: bool = False,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        self.save_config(["tokenizer", "optimizer", "scheduler", "face_model"])
        if face_model is not None and face_model.num_vertices * 3 != motion_dim:
            raise CheckpointError(
                f"face_model has {face_model.num_vertices} vertices but the data has {motion_dim // 3}; use the "
                "face model the data was made with."
            )
        self.face_model = None if face_model is None else face_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer(motion_dim if face_model is None else face_model.num_motion_params)
        scales = torch.tensor(float(param_scale))
        if face_model is not None and scale_by_displacement:
            if not callable(getattr(face_model, "motion_weights", None)):
                raise CheckpointError(
                    f"scale_by_displacement needs a face model with motion_weights(); "
                    f"{type(face_model).__name__} has none. Set it to false."
                )
            weights = face_model.motion_weights().float()
            if (
                float(weights.max()) > 0
            ):  # a face model rebuilt from sizes has no basis yet: its state sets it
                scales = param_scale * weights.max() / weights.clamp(min=1e-3 * float(weights.max()))
        self.register_buffer("param_scales", scales, persistent=False)  # [] or [D]
        self.tokenizer.set_normalization(0.0, offset_scale if face_model is None else scales)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.offset_scale = offset_scale
        self.param_scale = param_scale
        self.velocity_weight = velocity_weight
        self.vertex_weight = vertex_weight

    def reconstruct(self, batch: Batch, num_quantizers: int | None = None) -> Tensor:
        """Vertices ``[B, T, V, 3]`` after encoding and decoding the batch's motion with n codebooks."""
        motion = self.motion(batch)
        codes = self.tokenizer.encode(motion, batch.motion_mask, num_quantizers)
        decoded = self.tokenizer.decode(codes, length=motion.shape[1])
        if self.face_model is not None:  # within the parameters' bounds, as every generated sequence is
            decoded = self.face_model.constrain(decoded)
        rec = self.to_offsets(decoded, batch.template)
        return batch.template[:, None] + rec.view(*batch.motion.shape)

    def _predict_batch(self, batch: Batch) -> Tensor:
        return self.reconstruct(batch)

    @staticmethod
    def _errors(err: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Masked mean squared error ``err`` ``[B, T, D]`` and its frame-to-frame difference (velocity)."""
        mask = mask[..., None].to(err.dtype)
        rec = (err.pow(2) * mask).sum() / (mask.sum() * err.shape[-1]).clamp(min=1)
        vel_mask = mask[:, 1:] * mask[:, :-1]
        vel = (err.diff(dim=1).pow(2) * vel_mask).sum() / (vel_mask.sum() * err.shape[-1]).clamp(min=1)
        return rec, vel

    def _loss(self, batch: Batch) -> LossParts:
        motion = self.motion(batch)
        out = self.tokenizer(motion, batch.motion_mask)
        scale = self.offset_scale if self.face_model is None else self.param_scales
        rec, vel = self._errors((out.reconstruction - motion) / scale, batch.motion_mask)
        loss = rec + self.velocity_weight * vel + out.commitment_loss
        parts = {"reconstruction": rec, "velocity": vel, "commitment": out.commitment_loss}
        if self.face_model is not None:  # the same in vertex space, against the sequence's own vertices
            decoded = self.to_offsets(out.reconstruction, batch.template)
            err = (decoded - self.offsets(batch)) / self.offset_scale
            vertex_rec, vertex_vel = self._errors(err, batch.motion_mask)
            loss = loss + self.vertex_weight * (vertex_rec + self.velocity_weight * vertex_vel)
            parts |= {"vertex_reconstruction": vertex_rec, "vertex_velocity": vertex_vel}
        for k in range(self.tokenizer.num_quantizers):
            parts[f"perplexity/{k}"] = out.perplexity[k]
            parts[f"usage/{k}"] = out.usage[k]
        return LossParts(loss, parts)

    def on_train_epoch_end(self) -> None:
        for k, layer in enumerate(self.tokenizer.quantizer.layers):
            dead = (layer.cluster_size < layer.threshold_dead).sum()
            self.log(f"train/dead_codes/{k}", dead.float(), sync_dist=True)  # equal on every process

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
