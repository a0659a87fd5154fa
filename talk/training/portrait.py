"""LightningModule of the image-space portrait generator (:class:`render.generator.PortraitGenerator`).

Trained on synthetic portrait clips (:class:`talk.data.formats.portraits.PortraitDataModule`): each sample is a
reference frame, a target frame and the target's conditioning (the reference warped by the mesh motion, normals,
depth, head and mouth-interior masks, flow); the generator's frame is compared with the target by

    loss = l1_weight * L1 + ssim_weight * (1 - SSIM)
         [+ perceptual_weight * VGG16 perceptual]  [+ adversarial_weight * hinge loss of a PatchGAN]

(the last two off by default; :mod:`talk.training.portrait_losses`). Optimisation is manual, one code path with or
without the discriminator, so the module clips its own gradients (``gradient_clip_val``) and the trainer's
``gradient_clip_val`` must stay null (``experiments/synthetic/portrait.yaml``).

Validation logs ``val/psnr`` and ``val/ssim`` (and the warp-only baseline's, ``val/warp_only/*``). ``talk test``
reports PSNR (dB) and SSIM of the generator and, beside it, of two baselines measured on the same frames:
``copy_reference`` (the reference portrait as the output) and ``warp_only`` (the warped reference as the output);
split-wide means and per clip (:mod:`talk.image_metrics`). Frames whose target is the reference itself are left
out of both (they would measure nothing). LPIPS, FID, CSIM and LSE-C/LSE-D run when their networks are given
(:mod:`talk.image_metric_hooks`), and are otherwise skipped with one line each. ``mouth_sync`` (no weights,
:mod:`talk.mouth_sync`) correlates the darkness of each clip's mouth box with the driving mesh's mouth opening, for
every method and for the ground-truth frames (row ``ground_truth``).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from render.generator import GeneratorOutput, PortraitGenerator
from talk.errors import UserError
from talk.image_metric_hooks import CSIMHook, FIDHook, LPIPSHook, MetricHook, SyncNetHook
from talk.image_metrics import IMAGE_UNITS, ImageMetrics, ssim
from talk.mouth_sync import MouthSync
from talk.training.portrait_losses import PatchDiscriminator, PerceptualLoss, hinge_d_loss, hinge_g_loss

METHODS = ("generator", "copy_reference", "warp_only")


class PortraitModule(L.LightningModule):
    """Trains a :class:`~render.generator.PortraitGenerator` (see the module docstring).

    Args:
        generator: The generator network; None builds ``PortraitGenerator()`` with its defaults.
        optimizer: Optimizer factory (the discriminator gets its own, from the same factory).
        scheduler: Optional learning-rate scheduler factory of the generator's optimizer, stepped per epoch.
        l1_weight: Weight of the mean absolute error (per pixel and channel, [0,1] images).
        ssim_weight: Weight of ``1 - SSIM`` (:func:`talk.image_metrics.ssim`).
        perceptual_weight: Weight of the VGG16 perceptual loss; > 0 needs ``perceptual_weights``.
        perceptual_weights: torchvision ``vgg16`` state-dict file (the user's; nothing is downloaded).
        adversarial_weight: Weight of the generator's hinge loss; > 0 trains a PatchGAN discriminator beside it.
        discriminator_channels: Width of the discriminator's first layer.
        gradient_clip_val: Clip the gradient norm of each optimizer's parameters to this (None: no clipping).
        lpips_weights: TorchScript LPIPS network for ``talk test`` (:mod:`talk.image_metric_hooks`), or None.
        fid_weights: TorchScript feature network for FID, or None.
        csim_weights: TorchScript identity-embedding network for CSIM, or None.
        syncnet_weights: TorchScript SyncNet for LSE-C / LSE-D (needs audio), or None.
    """

    def __init__(
        self,
        generator: PortraitGenerator | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        l1_weight: float = 1.0,
        ssim_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        perceptual_weights: str | None = None,
        adversarial_weight: float = 0.0,
        discriminator_channels: int = 32,
        gradient_clip_val: float | None = 1.0,
        lpips_weights: str | None = None,
        fid_weights: str | None = None,
        csim_weights: str | None = None,
        syncnet_weights: str | None = None,
    ) -> None:
        super().__init__()
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        from_configs = _given_hyperparameters.get() is not None  # talk fit: the generator's config is known
        self.save_hyperparameters(ignore=[] if from_configs else ["generator", "optimizer", "scheduler"])
        if min(l1_weight, ssim_weight, perceptual_weight, adversarial_weight) < 0:
            raise UserError("the portrait loss weights (l1, ssim, perceptual, adversarial) must be >= 0.")
        if perceptual_weight > 0 and not perceptual_weights:
            raise UserError(
                "perceptual_weight > 0 needs perceptual_weights=<torchvision vgg16 .pth file>; pass it or set "
                "perceptual_weight to 0."
            )
        self.generator = generator if generator is not None else PortraitGenerator()
        self.optimizer, self.scheduler = optimizer, scheduler
        self.l1_weight, self.ssim_weight = float(l1_weight), float(ssim_weight)
        self.perceptual_weight, self.adversarial_weight = float(perceptual_weight), float(adversarial_weight)
        self.perceptual = PerceptualLoss(perceptual_weights) if perceptual_weight > 0 else None
        self.discriminator = (
            PatchDiscriminator(3 + 4, discriminator_channels) if adversarial_weight > 0 else None
        )  # image + (normals, mouth mask) as its conditioning
        self.gradient_clip_val = gradient_clip_val
        self.hook_files = {"lpips": lpips_weights, "fid": fid_weights, "csim": csim_weights,
                           "syncnet": syncnet_weights}  # fmt: skip
        self.automatic_optimization = False
        self.test_results: dict[str, Any] = {}
        self._val: dict[str, ImageMetrics] = {}
        self._test: dict[str, ImageMetrics] = {}
        self._hooks: dict[str, list[MetricHook]] = {}

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Tensor]) -> GeneratorOutput:
        """The generator on a batch of :class:`~talk.synth.portrait_dataset.PortraitClips` samples."""
        return self.generator(
            batch["warped"], batch["reference"], batch["normals"], batch["depth"], batch["mask"],
            batch["mouth_mask"], batch.get("flow"),
        )  # fmt: skip

    def _condition(self, batch: dict[str, Tensor]) -> Tensor:
        return torch.cat([batch["normals"], batch["mouth_mask"]], dim=1)

    def _reconstruction(self, image: Tensor, target: Tensor) -> dict[str, Tensor]:
        parts = {"l1": (image - target).abs().mean(), "ssim": 1.0 - ssim(image, target).mean()}
        if self.perceptual is not None:
            parts["perceptual"] = self.perceptual(image, target)
        return parts

    def _total(self, parts: dict[str, Tensor]) -> Tensor:
        weights = {"l1": self.l1_weight, "ssim": self.ssim_weight, "perceptual": self.perceptual_weight,
                   "adversarial": self.adversarial_weight}  # fmt: skip
        return sum(weights[k] * v for k, v in parts.items())

    # ----------------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        opt_g, opt_d = optimizers if isinstance(optimizers, list) else (optimizers, None)
        b = batch["target"].shape[0]
        out = self(batch)
        parts = self._reconstruction(out.image, batch["target"])
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # the generator's step does not train the discriminator
            parts["adversarial"] = hinge_g_loss(self.discriminator(out.image, self._condition(batch)))
            self.discriminator.requires_grad_(True)
        loss = self._total(parts)
        opt_g.zero_grad()
        self.manual_backward(loss)
        self._clip(opt_g)
        opt_g.step()
        if opt_d is not None:
            condition = self._condition(batch)
            real = self.discriminator(batch["target"], condition)
            fake = self.discriminator(out.image.detach(), condition)
            loss_d = hinge_d_loss(real, fake)
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            self._clip(opt_d)
            opt_d.step()
            parts["discriminator"] = loss_d
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, batch_size=b)
        self.log("train/loss", loss.detach(), batch_size=b, prog_bar=True)

    def _clip(self, optimizer: Any) -> None:
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            (scheduler[0] if isinstance(scheduler, list) else scheduler).step()

    def configure_optimizers(self) -> Any:
        """The generator's optimizer (and scheduler), then the discriminator's when there is one."""
        opt_g = self.optimizer(self.generator.parameters())
        config: list[dict[str, Any]] = [{"optimizer": opt_g}]
        if self.scheduler is not None:
            config[0]["lr_scheduler"] = self.scheduler(opt_g)
        if self.discriminator is not None:
            config.append({"optimizer": self.optimizer(self.discriminator.parameters())})
        return config if len(config) > 1 else config[0]

    # --------------------------------------------------------------------------------------------- evaluation
    def _names(self, batch: dict[str, Tensor]) -> list[str]:
        """Clip names of a batch's samples (the data module's ``clip_names``, else the clip index)."""
        names = getattr(getattr(self._trainer, "datamodule", None), "clip_names", None) or {}
        return [names.get(int(c), f"clip_{int(c):05d}") for c in batch["clip"]]

    @staticmethod
    def _evaluated(batch: dict[str, Tensor]) -> Tensor:
        """``[B]`` bool: samples whose target is not the reference frame itself."""
        return batch["frame"] != batch["reference_frame"]

    def _update(
        self, metrics: dict[str, ImageMetrics], outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> None:
        keep = self._evaluated(batch)
        if not bool(keep.any()):
            return
        names = [n for n, k in zip(self._names(batch), keep.tolist(), strict=True) if k]
        frames = batch["frame"][keep].tolist()
        for method, image in outputs.items():
            metrics[method].update(image[keep], batch["target"][keep], names, frames)
            for hook in self._hooks.get(method, []):
                hook.update(image[keep], batch["target"][keep], batch["reference"][keep], names)

    def on_validation_epoch_start(self) -> None:
        self._val = {"generator": ImageMetrics(), "warp_only": ImageMetrics()}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self(batch)
        parts = self._reconstruction(out.image, batch["target"])
        self.log(
            "val/loss", self._total(parts), batch_size=batch["target"].shape[0], prog_bar=True, sync_dist=True
        )
        self._update(self._val, {"generator": out.image, "warp_only": batch["warped"]}, batch)

    def on_validation_epoch_end(self) -> None:
        values = {m: self._gathered(metrics).compute() for m, metrics in self._val.items()}
        if values["generator"]["frames"]:  # equal on every process: sync_dist keeps the value
            self.log("val/psnr", values["generator"]["psnr"], prog_bar=True, sync_dist=True)
            self.log("val/ssim", values["generator"]["ssim"], sync_dist=True)
            self.log("val/warp_only/psnr", values["warp_only"]["psnr"], sync_dist=True)
            self.log("val/warp_only/ssim", values["warp_only"]["ssim"], sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._test = {m: ImageMetrics() for m in METHODS}
        self._sync = {m: MouthSync() for m in (*METHODS, "ground_truth")}
        kinds = {"lpips": LPIPSHook, "fid": FIDHook, "csim": CSIMHook, "syncnet": SyncNetHook}
        self._hooks = {m: [] for m in METHODS}
        for key, cls in kinds.items():
            probe = cls(self.hook_files[key], f"--model.init_args.{key}_weights")
            reason = probe.skip_reason(has_audio=False)  # the portrait set carries no audio
            if reason is not None:
                if self.trainer.is_global_zero:
                    print(reason)
                continue
            for method in METHODS:
                self._hooks[method].append(cls(self.hook_files[key], probe.option))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        out = self(batch)
        outputs = {"generator": out.image, "copy_reference": batch["reference"], "warp_only": batch["warped"]}
        self._update(self._test, outputs, batch)
        names, frames = self._names(batch), batch["frame"].tolist()
        for method, image in {**outputs, "ground_truth": batch["target"]}.items():  # every frame, the first too
            self._sync[method].update(image, batch["mouth_mask"], names, frames)
        return {"image": out.image.detach()}

    def on_test_epoch_end(self) -> None:
        gathered = {m: self._gathered(metrics) for m, metrics in self._test.items()}
        results, units = {}, dict(IMAGE_UNITS)
        for method, metrics in gathered.items():
            results[method] = metrics.compute()
            for hook in self._hooks.get(method, []):  # (one process: hooks see that process's frames)
                results[method] |= hook.compute()
                units |= hook.units
            for key in ("psnr", "ssim"):
                self.log(f"test/{method}/{key}", results[method][key], sync_dist=True)
        for method, sync in self._sync.items():  # (one process: each sees its own clips' frames)
            value = sync.compute()
            results.setdefault(method, {})["mouth_sync"] = None if math.isnan(value) else value
        units["mouth_sync"] = "1"
        self.test_results = {
            "metrics": results,
            "units": units,
            "columns": ["psnr", "ssim"],
            "per_sequence": {m: [vars(c) for c in metrics.clips()] for m, metrics in gathered.items()},
        }

    def _gathered(self, metrics: ImageMetrics) -> ImageMetrics:
        """``metrics`` with every other process's frames merged in (DDP), so each process holds the whole split."""
        if self._trainer is None or self.trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return metrics
        states: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, metrics.state())
        merged = ImageMetrics()
        merged.merge(states)
        return merged

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        raise UserError(
            "talk predict does not write portrait frames yet; use talk test for the portrait generator."
        )

    def metric_units(self) -> dict[str, str]:
        """Unit of every metric this module logs (the experiment dashboard records them with the config)."""
        units = {
            f"train/{k}": "unitless"
            for k in ("loss", "l1", "ssim", "perceptual", "adversarial", "discriminator")
        }
        units |= {"val/loss": "unitless", "val/psnr": "dB", "val/ssim": "1", "val/warp_only/psnr": "dB",
                  "val/warp_only/ssim": "1"}  # fmt: skip
        units |= {f"test/<method>/{k}": u for k, u in IMAGE_UNITS.items()}
        return units
