"""Shared behaviour of talk's audio -> mesh LightningModules: assets, style conditioning, metrics, inference.

A subclass implements ``generate(audio, audio_lengths, num_frames, template, style) -> [B, T, V, 3]`` and its
training/validation steps. This base class

- copies the dataset's assets (training subjects, templates, mesh faces, metric regions, fps, sample rate) into
  every checkpoint, so ``talk animate`` needs nothing but the checkpoint;
- evaluates LVE / FDD / MVE (talk.metrics) for the model and for the static-template baseline in ``talk test``;
- maps subjects to style conditions (unseen subjects use ``test_condition`` or the average style).
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from talk.data.batch import Batch
from talk.errors import CheckpointError
from talk.metrics import VertexMetrics


class TalkModule(L.LightningModule):
    """Base class; see the module docstring.

    Every subclass takes ``motion_dim``, ``num_styles`` and ``fps``, which ``talk fit`` links from the data, and
    builds its submodules from them.

    Args:
        motion_dim: Size of one motion frame (``V * 3`` for vertex offsets).
        num_styles: Number of training speakers (style conditions).
        fps: Motion frame rate.
        test_condition: Training subject whose style drives unseen subjects; None averages all training styles.
    """

    def __init__(
        self, motion_dim: int, num_styles: int, fps: float = 30.0, test_condition: str | None = None
    ) -> None:
        super().__init__()
        self.motion_dim = motion_dim
        self.num_styles = num_styles
        self.fps = fps
        self.test_condition = test_condition
        self.assets: dict[str, Any] = {}
        self.test_results: dict[str, Any] = {}
        self._val_metrics: VertexMetrics | None = None
        self._test_metrics: dict[str, VertexMetrics] = {}

    def save_config(self, modules: list[str]) -> None:
        """Saves constructor arguments as hyperparameters so a checkpoint rebuilds its own model.

        Under ``talk fit`` the CLI supplies the full config (submodules as ``class_path`` dicts), which
        ``load_from_checkpoint`` re-instantiates. Built directly in Python, submodule objects are left out of the
        hyperparameters (their weights are in the state dict).
        """
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        ignore = [] if _given_hyperparameters.get() is not None else modules
        frame = inspect.currentframe().f_back  # the subclass __init__ whose arguments are saved
        self.save_hyperparameters(ignore=ignore, frame=frame)

    # ------------------------------------------------------------------------------------------------- assets
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "templates"):
            return
        encoder = getattr(self, "audio_encoder", None)
        if encoder is not None and int(encoder.sample_rate) != int(dm.sample_rate):
            raise CheckpointError(
                f"the audio encoder expects {encoder.sample_rate} Hz but data.sample_rate is {dm.sample_rate}; "
                "set them to the same value."
            )
        faces = dm.faces()
        # Tensors and plain Python only: checkpoints must load with torch.load(weights_only=True).
        assets = {
            "train_subjects": list(dm.train_subjects),
            "templates": {
                k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in dm.templates.items()
            },
            "faces": None if faces is None else torch.as_tensor(np.asarray(faces, dtype=np.int64)),
            "fps": float(dm.fps),
            "sample_rate": int(dm.sample_rate),
        }
        try:
            regions = {k: torch.as_tensor(v) for k, v in dm.regions().items()}
        except Exception:  # noqa: BLE001 - regions are only required by metrics, which report their own error
            regions = None
        assets["regions"] = regions
        if self.assets.get("train_subjects") and self.assets["train_subjects"] != assets["train_subjects"]:
            raise CheckpointError(
                "the checkpoint was trained on subjects "
                f"{self.assets['train_subjects']} but data.train_subjects is {assets['train_subjects']}."
            )
        self.assets = assets

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["talk_assets"] = self.assets

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.assets = checkpoint.get("talk_assets", {})

    # -------------------------------------------------------------------------------------------------- style
    @property
    def train_subjects(self) -> list[str]:
        return list(self.assets.get("train_subjects", []))

    def style_weights(self, subject: str | None) -> Tensor:
        """``[S]`` style weights for a subject: one-hot for training subjects, else the test condition."""
        subjects = self.train_subjects
        n = self.num_styles
        if subject in subjects:
            return torch.nn.functional.one_hot(torch.tensor(subjects.index(subject)), n).float()
        if self.test_condition is not None:
            if self.test_condition not in subjects:
                raise CheckpointError(
                    f"test_condition '{self.test_condition}' is not a training subject; choose one of {subjects}."
                )
            return self.style_weights(self.test_condition)
        return torch.full((n,), 1.0 / n)

    def style_for(self, batch: Batch) -> Tensor:
        """Style ids ``[B]`` when every subject was seen in training, else style weights ``[B, S]``."""
        if bool((batch.style >= 0).all()):
            return batch.style
        return torch.stack([self.style_weights(s) for s in batch.subjects]).to(batch.audio.device)

    # ------------------------------------------------------------------------------------------------ metrics
    def _regions(self) -> tuple[Tensor, Tensor]:
        regions = self.assets.get("regions")
        if regions is None:
            dm = self.trainer.datamodule
            regions = dm.regions()  # raises the dataset's clear error
        return torch.as_tensor(regions["lips"]), torch.as_tensor(regions["upper_face"])

    def _predict_batch(self, batch: Batch) -> Tensor:
        return self.generate(
            batch.audio, batch.audio_lengths, batch.motion_lengths, batch.template, self.style_for(batch)
        )

    # ------------------------------------------------------------------------------------------------- steps
    def _loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss and its named parts; implemented by subclasses."""
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, parts = self._loss(batch)
        b = batch.audio.shape[0]
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=b)
        self.log("train/loss", loss, batch_size=b, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _ = self._loss(batch)
        self.log("val/loss", loss, batch_size=batch.audio.shape[0], prog_bar=True)
        self._val_metrics_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._val_metrics = None

    def _val_metrics_step(self, batch: Batch) -> None:
        if self.assets.get("regions") is None:
            return
        if self._val_metrics is None:
            self._val_metrics = VertexMetrics(*self._regions())
        pred = self._predict_batch(batch).detach().float().cpu()
        for i, name in enumerate(batch.names):
            t = int(batch.motion_lengths[i])
            self._val_metrics.update(name, pred[i, :t], batch.motion[i, :t].cpu(), batch.template[i].cpu())

    def on_validation_epoch_end(self) -> None:
        if self._val_metrics is not None and self._val_metrics.sequences:
            values = self._val_metrics.compute()
            self.log("val/lve", values["lve"], prog_bar=True)
            self.log("val/fdd", values["fdd"])
            self.log("val/abs_fdd", values["abs_fdd"])
            self.log("val/mve", values["mve"])

    def on_test_epoch_start(self) -> None:
        lips, upper = self._regions()
        self._test_metrics = {
            "model": VertexMetrics(lips, upper),
            "static_template": VertexMetrics(lips, upper),
        }

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        pred = self._predict_batch(batch)
        self._update_test_metrics("model", pred, batch)
        self._update_static_template(batch)
        return {"vertices": pred.detach()}  # for callbacks (talk.training.callbacks.ComparisonVideos)

    def _update_test_metrics(self, method: str, pred: Tensor, batch: Batch) -> None:
        """Adds each sequence of a predicted batch ``[B, T, V, 3]`` to ``method``'s test metrics."""
        pred = pred.detach().float().cpu()
        for i, name in enumerate(batch.names):
            t = int(batch.motion_lengths[i])
            self._test_metrics[method].update(
                name, pred[i, :t], batch.motion[i, :t].cpu(), batch.template[i].cpu()
            )

    def _update_static_template(self, batch: Batch) -> None:
        """The static-template baseline: every frame is the subject's neutral mesh."""
        self._update_test_metrics("static_template", batch.template[:, None].expand_as(batch.motion), batch)

    def on_test_epoch_end(self) -> None:
        results = {name: m.compute() for name, m in self._test_metrics.items()}
        for name, values in results.items():
            for key in ("lve", "lve_mm", "fdd", "abs_fdd", "mve"):
                self.log(f"test/{name}/{key}", values[key])
        self.test_results = {
            "metrics": results,
            "per_sequence": {name: [vars(s) for s in m.sequences] for name, m in self._test_metrics.items()},
        }

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        pred = self._predict_batch(batch)
        return {"names": batch.names, "vertices": pred.cpu(), "lengths": batch.motion_lengths.cpu()}

    # ------------------------------------------------------------------------------------------- optimisation
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters handed to the optimizer (subclasses leave frozen parts out)."""
        return list(self.parameters())

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's union of return types
        """``self.optimizer`` / ``self.scheduler`` factories (set by subclasses from their config)."""
        optimizer = self.optimizer(self.trainable_parameters())
        if getattr(self, "scheduler", None) is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}

    # ---------------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def animate(self, wav: Tensor, subject: str | None = None, template: Tensor | None = None) -> Tensor:
        """Vertices ``[T, V, 3]`` for one waveform ``[N]`` at the model's sample rate.

        Args:
            wav: Mono waveform ``[N]``.
            subject: Subject whose template (and style, if seen in training) is used; default the first training
                subject.
            template: Explicit neutral mesh ``[V, 3]`` overriding the subject's template.
        """
        from audio.align import motion_frame_count

        templates = self.assets.get("templates") or {}
        subjects = self.train_subjects
        if subject is None:
            subject = subjects[0] if subjects else next(iter(templates), None)
        if template is None:
            if subject not in templates:
                raise CheckpointError(
                    f"subject '{subject}' is not in this checkpoint; choose one of {sorted(templates)}."
                )
            template = torch.as_tensor(templates[subject])
        n = wav.shape[-1]
        sample_rate = int(self.assets["sample_rate"])
        frames = motion_frame_count(n, sample_rate, float(self.fps))
        if frames * sample_rate < n * float(self.fps):
            frames += 1  # cover a partial last frame, so a video of these frames never cuts the speech short
        device = self.device
        style = self.style_weights(subject)[None].to(device)
        out = self.generate(
            wav[None].float().to(device),
            torch.tensor([n], device=device),
            torch.tensor([frames], device=device),
            template[None].float().to(device),
            style,
        )
        return out[0].cpu()
