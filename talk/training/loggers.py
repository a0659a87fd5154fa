"""Loggers configured from YAML."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _WandbLogger


class WandbLogger(_WandbLogger):
    """Weights & Biases logger that runs offline unless the user asks for online logging.

    Offline runs are written under ``save_dir/wandb`` and can be uploaded later with ``wandb sync`` (``talk fit``
    and ``talk test`` print the command when they end). ``WANDB_MODE=disabled`` turns wandb off: nothing is
    written. With ``experiments/trainer/default.yaml``, set the run's labels from a config or the command line,
    e.g. ``--trainer.logger.tags=[baseline,rvq4] --trainer.logger.group=ablation`` (the wandb logger is the last
    logger there).

    Args:
        name: Run name shown on the dashboard. None: the ``talk`` CLI names the run after its run directory
            (``outputs/synthetic/lm`` -> ``synthetic-lm``); built outside the CLI, wandb picks a name.
        save_dir: Directory for the local wandb files. None: the ``talk`` CLI puts them in the run directory
            (``trainer.default_root_dir``); built outside the CLI, the working directory.
        project: wandb project.
        tags: Labels to filter and compare runs by on the dashboard.
        group: Runs of one experiment (e.g. the seeds or ablations of one model) shown together.
        notes: A longer description of the run.
        offline: Force offline (True) or online (False); None means offline unless ``WANDB_MODE`` is set.
        log_model: Upload checkpoints as artifacts (online runs only).
        **kwargs: Passed to ``wandb.init``.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str = "talk",
        tags: list[str] | None = None,
        group: str | None = None,
        notes: str | None = None,
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        mode = os.environ.get("WANDB_MODE", "offline")
        if mode == "disabled":
            # Lightning's offline switch would set WANDB_MODE=dryrun and write a run after all
            offline, kwargs = False, {**kwargs, "mode": "disabled"}
        elif offline is None:
            offline = mode in ("offline", "dryrun")
        save_dir = "." if save_dir is None else save_dir
        os.makedirs(save_dir, exist_ok=True)
        labels = {"tags": None if tags is None else list(tags), "group": group, "notes": notes}
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=offline,
            log_model=log_model,
            **{k: v for k, v in labels.items() if v is not None},
            **kwargs,
        )

    def finish(self) -> str | None:
        """Ends the wandb run, so that its files are complete on disk.

        Returns:
            The directory of an offline run (what ``wandb sync`` uploads); None when the run was online, disabled
            or never started.
        """
        run = self._experiment
        if run is None or getattr(run, "disabled", False) or not hasattr(run, "finish"):
            return None
        offline = bool(getattr(run, "offline", False))
        folder = str(run.settings.sync_dir) if offline else None
        run.finish()
        return folder


def finish_runs(loggers: Iterable[Any]) -> None:
    """Ends the wandb runs of ``loggers`` and says how to upload the offline ones (one line each)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            folder = logger.finish()
            if folder is not None:
                print(f"wandb: offline run saved in {folder}; upload it with: wandb sync {folder}")
