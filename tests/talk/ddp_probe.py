"""Callbacks the distributed and resume tests add to `talk fit` (``--trainer.callbacks+=tests.talk.ddp_probe.X``;
the test puts the repository on PYTHONPATH so that every process of the run imports them)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch


class Probe(L.Callback):
    """Writes what each process ends training with to ``<run dir>/probe_rank<r>.pt``: the logged metrics, the
    weights (and those after the first update), every codebook, and how many codes were dead (and so replaced)
    before each step.

    Args:
        every_epoch: Also write the metrics of every epoch end to ``probe_epochs_rank<r>.jsonl``.
    """

    def __init__(self, every_epoch: bool = True) -> None:
        self.every_epoch = every_epoch
        self.replaced = 0
        self.first_step: dict | None = None

    def _path(self, trainer: L.Trainer, name: str) -> Path:
        return Path(trainer.default_root_dir) / f"{name}_rank{trainer.global_rank}"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if os.environ.get("PROBE_RNG"):
            with open(self._path(trainer, "rng").with_suffix(".txt"), "a") as f:
                f.write(
                    f"{trainer.current_epoch} {batch_idx} {hashlib.md5(torch.get_rng_state().numpy().tobytes()).hexdigest()[:8]} {batch.names}\n"
                )
        if trainer.global_step == 1:  # after the first update
            self.first_step = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        quantizer = getattr(getattr(pl_module, "tokenizer", None), "quantizer", None)
        if quantizer is not None and pl_module.training:
            self.replaced += sum(int((q.cluster_size < q.threshold_dead).sum()) for q in quantizer.layers)

    def on_validation_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.state.fn == "validate":  # `talk validate`: its metrics, for comparison across world sizes
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self._path(trainer, "probe_validate").with_suffix(".json").write_text(json.dumps(metrics))

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if not self.every_epoch:
            return
        row = {"epoch": trainer.current_epoch, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
        with open(self._path(trainer, "probe_epochs").with_suffix(".jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        quantizer = getattr(getattr(pl_module, "tokenizer", None), "quantizer", None)
        torch.save(
            {
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
                "weights": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "codebooks": None if quantizer is None else quantizer.codebooks.clone(),
                "first_step": self.first_step,
                "replaced": self.replaced,
                "world_size": trainer.world_size,
            },
            self._path(trainer, "probe").with_suffix(".pt"),
        )


class KillAt(L.Callback):
    """Kills its own process with SIGKILL (no clean-up of any kind) before training batch ``batch`` of epoch
    ``epoch``: a pre-empted job.

    Args:
        epoch: Epoch index.
        batch: Batch index within the epoch.
    """

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
