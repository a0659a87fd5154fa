"""Loggers configured from YAML."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _WandbLogger


class WandbLogger(_WandbLogger):
    """Weights & Biases logger that runs offline unless the user asks for online logging.

    Offline runs are written under ``save_dir/wandb`` and can be uploaded later with ``wandb sync``.

    Args:
        name: Run name shown on the dashboard. None: the ``talk`` CLI names the run after its run directory
            (``outputs/synthetic/lm`` -> ``synthetic-lm``); built outside the CLI, wandb picks a name.
        save_dir: Directory for the local wandb files. None: the ``talk`` CLI puts them in the run directory
            (``trainer.default_root_dir``); built outside the CLI, the working directory.
        project: wandb project.
        offline: Force offline (True) or online (False); None means offline unless ``WANDB_MODE`` is set.
        log_model: Upload checkpoints as artifacts (online runs only).
        **kwargs: Passed to ``wandb.init``.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str = "talk",
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        if offline is None:
            offline = os.environ.get("WANDB_MODE", "offline") in ("offline", "dryrun", "disabled")
        save_dir = "." if save_dir is None else save_dir
        os.makedirs(save_dir, exist_ok=True)
        super().__init__(
            name=name, save_dir=save_dir, project=project, offline=offline, log_model=log_model, **kwargs
        )
