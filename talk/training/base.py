"""Shared behaviour of talk's LightningModules: assets, the pipeline model, losses, metrics.

An audio-to-motion subclass builds one :class:`talk.pipeline.AudioToMotion` as ``self.model`` (the inference model:
encoder, generator, face model, sampling, style resolution) and adds its loss. This base class

- copies the dataset's :class:`~talk.pipeline.Assets` (training subjects, templates, mesh faces, metric regions,
  fps, sample rate) into the model and every checkpoint, with the model's config (``talk_pipeline``), so that
  ``talk.pipeline.from_checkpoint`` and ``talk animate`` need nothing but the checkpoint and no Lightning;
- evaluates LVE / FDD / MVE (talk.metrics) for the model and for the static-template baseline in ``talk test``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import seed_everything
from torch import Tensor

from talk.data.batch import Batch
from talk.errors import CheckpointError
from talk.metrics import VertexMetrics
from talk.pipeline.assets import Assets
from talk.pipeline.config import contained
from talk.pipeline.model import AudioToMotion
from talk.training.rng import gather_rng_states, restore_rng_state


@dataclass(frozen=True)
class LossParts:
    """A training loss and its named parts (logged as ``train/<name>``)."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


class TalkModule(L.LightningModule):
    """Base class; see the module docstring.

    Every subclass takes ``motion_dim``, ``num_styles`` and ``fps``, which ``talk fit`` links from the data, and
    builds its submodules from them. Audio-to-motion subclasses set ``self.model`` (an AudioToMotion) and
    ``self.pipeline_config`` (its config, when built by ``talk fit`` from configs).

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
        self.model: AudioToMotion | None = None
        self._assets: Assets | None = None
        self.pipeline_config: dict | None = None
        self.test_results: dict[str, Any] = {}
        self._val_metrics: VertexMetrics | None = None
        self._test_metrics: dict[str, VertexMetrics] = {}
        self._rng_restored = False

    def record_pipeline(self, generator: dict, **init_args: Any) -> None:
        """Sets ``self.pipeline_config`` (and ``self.model.config``): the AudioToMotion config of this module's
        ``audio_encoder`` hyperparameter, ``generator`` (a ``{class_path, init_args}`` config) and ``init_args``,
        in that order."""
        self.pipeline_config = {
            "class_path": "talk.pipeline.model.AudioToMotion",
            "init_args": {"audio_encoder": self.hparams["audio_encoder"], "generator": generator, **init_args},
        }
        self.model.config = self.pipeline_config

    def save_config(self, modules: list[str]) -> bool:
        """Saves constructor arguments as hyperparameters so a checkpoint rebuilds its own model.

        Under ``talk fit`` the CLI supplies the full config (submodules as ``class_path`` dicts), which
        ``load_from_checkpoint`` re-instantiates. Built directly in Python, submodule objects are left out of the
        hyperparameters (their weights are in the state dict).

        Returns:
            Whether the submodules' configs are known (``talk fit``), i.e. whether the pipeline config can be
            written into checkpoints.
        """
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        from_configs = _given_hyperparameters.get() is not None
        frame = inspect.currentframe().f_back  # the subclass __init__ whose arguments are saved
        self.save_hyperparameters(ignore=[] if from_configs else modules, frame=frame)
        return from_configs

    # ------------------------------------------------------------------------------------------------- assets
    @property
    def assets(self) -> Assets | None:
        return self._assets

    @assets.setter
    def assets(self, assets: Assets | None) -> None:
        self._assets = assets
        if self.model is not None:
            self.model.assets = assets

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "assets"):
            return
        encoder = getattr(self.model, "audio_encoder", None)
        if encoder is not None and int(encoder.sample_rate) != int(dm.sample_rate):
            raise CheckpointError(
                f"the audio encoder expects {encoder.sample_rate} Hz but data.sample_rate is {dm.sample_rate}; "
                "set them to the same value."
            )
        assets = dm.assets()
        if self.model is not None and abs(assets.fps - self.model.fps) > 1e-9:
            raise CheckpointError(
                f"the model runs at {self.model.fps} fps but data.fps is {assets.fps}; set them equal."
            )
        if (
            self.assets is not None
            and self.assets.train_subjects
            and (self.assets.train_subjects != assets.train_subjects)
        ):
            raise CheckpointError(
                "the checkpoint was trained on subjects "
                f"{list(self.assets.train_subjects)} but data.train_subjects is {list(assets.train_subjects)}."
            )
        self.assets = assets

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["talk_assets"] = None if self.assets is None else self.assets.to_dict()
        if self._trainer is not None and self.trainer.state.fn == "fit":  # a resumed run continues its draws
            checkpoint["talk_rng"] = gather_rng_states(self.trainer.world_size)
        if self.pipeline_config is not None:  # self-contained: sizes instead of the files it was built from
            checkpoint["talk_pipeline"] = contained(self.pipeline_config, self.model)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.assets = Assets.from_dict(checkpoint.get("talk_assets"))
        states = checkpoint.get("talk_rng")
        if states and self._trainer is not None:  # resuming: before the loops draw (talk.training.rng)
            rank = self.trainer.global_rank
            restore_rng_state(states[rank] if len(states) == self.trainer.world_size else states[0])
            self._rng_restored = True
        renames = self.legacy_state_renames()
        if renames and "talk_pipeline" not in checkpoint:  # written before the pipeline layout
            state = checkpoint["state_dict"]
            for key in list(state):
                for old, new in renames.items():
                    if key.startswith(old):
                        state[new + key[len(old) :]] = state.pop(key)
                        break

    def on_fit_start(self) -> None:
        """A new run draws its training randomness from the run's seed as it starts training, whatever building
        the model drew before: Lightning's DDP re-seeds each process at that point (after the model was built),
        so one process does the same, and the two draw alike (:mod:`talk.training.rng`). A resumed run continues
        the streams restored from its checkpoint instead."""
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None and not self._rng_restored:
            seed_everything(int(seed), verbose=False)

    def legacy_state_renames(self) -> dict[str, str]:
        """State-dict prefixes of checkpoints written before the pipeline layout -> today's."""
        return {}

    # -------------------------------------------------------------------------------------------------- style
    def style_for(self, batch: Batch) -> Tensor:
        """Style ids ``[B]`` when every subject was seen in training, else style weights ``[B, S]``."""
        return self.model.style_for(batch.subjects, batch.style.to(batch.audio.device))

    # ------------------------------------------------------------------------------------------------ metrics
    def _regions(self) -> tuple[Tensor, Tensor]:
        regions = None if self.assets is None else self.assets.regions
        if regions is None:
            regions = self.trainer.datamodule.regions()  # raises the dataset's clear error
        return torch.as_tensor(regions["lips"]), torch.as_tensor(regions["upper_face"])

    def _predict_batch(self, batch: Batch) -> Tensor:
        """Vertices ``[B, T, V, 3]`` the model generates for a batch."""
        return self.model.generate(
            batch.audio, batch.audio_lengths, batch.motion_lengths, batch.template, self.style_for(batch)
        ).vertices

    # ------------------------------------------------------------------------------------------------- steps
    def _loss(self, batch: Batch) -> LossParts:
        """Training loss and its named parts; implemented by subclasses."""
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        b = batch.audio.shape[0]
        self.log_dict({f"train/{k}": v for k, v in loss.parts.items()}, batch_size=b)
        self.log("train/loss", loss.total, batch_size=b, prog_bar=True)
        return loss.total * self._frame_share(batch)

    def _frame_share(self, batch: Batch) -> Tensor | float:
        """Under DDP, ``W * n / N``: this process's share of the global batch's valid motion frames (n of N), W
        processes. The losses are means over a batch's frames, and DDP averages the processes' gradients, so
        weighting each process's mean by its share makes the update that of the mean over the whole global batch,
        as in one process (exactly for frame-averaged terms; a short process no longer weighs as much as a long
        one). 1 in one process."""
        if self._trainer is None or self.trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return 1.0
        frames = batch.motion_lengths.sum().to(device=self.device, dtype=torch.float64)
        total = frames.clone()
        torch.distributed.all_reduce(total)
        return (frames * self.trainer.world_size / total.clamp(min=1.0)).float()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.log(
            "val/loss",
            self._loss(batch).total,
            batch_size=batch.audio.shape[0],
            prog_bar=True,
            sync_dist=True,
        )
        self._val_metrics_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._val_metrics = None

    def _val_metrics_step(self, batch: Batch) -> None:
        if self.assets is None or self.assets.regions is None:
            return
        if self._val_metrics is None:
            self._val_metrics = VertexMetrics(*self._regions())
        pred = self._predict_batch(batch).detach().float().cpu()
        for i, name in enumerate(batch.names):
            t = int(batch.motion_lengths[i])
            self._val_metrics.update(name, pred[i, :t], batch.motion[i, :t].cpu(), batch.template[i].cpu())

    def _gathered(self, metrics: VertexMetrics | None) -> VertexMetrics | None:
        """``metrics`` with the sequences every other process evaluated merged in (DDP: each holds a shard of the
        split, and the distributed sampler's padding repeats some sequences; :class:`VertexMetrics` counts each
        once), so that every process computes the metrics of the whole split. Unchanged in one process."""
        if self._trainer is None or self.trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return metrics
        states: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, None if metrics is None else metrics.state())
        if metrics is None:  # this process saw no sequence (a shard smaller than the world)
            if all(s is None for s in states):
                return None
            metrics = VertexMetrics(*self._regions())
        metrics.merge([s for s in states if s is not None])
        return metrics

    def on_validation_epoch_end(self) -> None:
        metrics = self._gathered(self._val_metrics)
        if metrics is not None and metrics.sequences:
            # the same on every process, so the mean over processes (sync_dist) is the value itself, exactly
            values = metrics.compute()
            self.log("val/lve", values["lve"], prog_bar=True, sync_dist=True)
            self.log("val/lve_mm", values["lve_mm"], sync_dist=True)
            self.log("val/fdd", values["fdd"], sync_dist=True)
            self.log("val/abs_fdd", values["abs_fdd"], sync_dist=True)
            self.log("val/mve", values["mve"], sync_dist=True)

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
        gathered = {name: self._gathered(m) for name, m in self._test_metrics.items()}
        results = {name: m.compute() for name, m in gathered.items()}
        for name, values in results.items():
            for key in ("lve", "lve_mm", "fdd", "abs_fdd", "mve"):
                self.log(f"test/{name}/{key}", values[key], sync_dist=True)  # equal on every process
        self.test_results = {
            "metrics": results,
            "per_sequence": {
                name: [vars(s) for s in sorted(m.sequences, key=lambda s: s.name)]
                for name, m in gathered.items()
            },
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
