"""A run's output paths: everything a `talk fit|validate|test|predict` run writes goes under its run directory,
``trainer.default_root_dir``; the paths a config leaves empty are filled from it."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from jsonargparse import Namespace


def resolve_run_dir(cfg: Namespace) -> Namespace:
    """A copy of ``cfg`` with the run's output paths that were left empty placed in its run directory.

    The run directory is ``trainer.default_root_dir`` (the working directory when unset, as in Lightning). Filled
    when ``None``: ``save_dir`` of every logger in ``trainer.logger`` (the run directory), the wandb-style run
    ``name`` of a logger (the run directory's last two parts, ``outputs/synthetic/lm`` -> ``synthetic-lm``), and
    ``dirpath`` of every ``ModelCheckpoint`` in ``trainer.callbacks`` (``<run dir>/checkpoints``). Paths given
    explicitly are kept. Idempotent.

    Args:
        cfg: A parsed config: of one subcommand (with a ``trainer`` key) or of the whole CLI (with ``subcommand``).

    Returns:
        The filled copy (an unchanged copy when ``cfg`` has no trainer section).
    """
    cfg = cfg.clone()
    subcommand = cfg.get("subcommand")
    node = cfg.get(subcommand) if isinstance(subcommand, str) else cfg
    trainer = node.get("trainer") if isinstance(node, Namespace) else None
    if not isinstance(trainer, Namespace):
        return cfg
    run_dir = trainer.get("default_root_dir")
    run_dir = str(run_dir) if run_dir else None
    for spec in _subclass_specs(trainer.get("logger")):
        args = spec.init_args
        if "save_dir" in args and args.save_dir is None:
            args.save_dir = run_dir or "."
        if "name" in args and args.name is None:
            args.name = run_name(run_dir or os.getcwd())
    checkpoints = os.path.join(run_dir, "checkpoints") if run_dir else "checkpoints"
    for spec in _subclass_specs(trainer.get("callbacks")):
        args = spec.init_args
        if "dirpath" in args and args.dirpath is None and _is_model_checkpoint(spec.class_path):
            args.dirpath = checkpoints
    return cfg


def run_name(run_dir: str | os.PathLike) -> str:
    """The run's display name (wandb): the run directory's last two parts, ``outputs/vocaset/lm`` -> ``vocaset-lm``."""
    parts = [p for p in Path(run_dir).parts if p not in (os.sep, ".", "..")]
    return "-".join(parts[-2:]).replace("_", "-") or "talk"


def _subclass_specs(value: Any) -> list[Namespace]:
    """The ``class_path`` + ``init_args`` entries of a ``trainer.logger`` / ``trainer.callbacks`` value."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, Namespace) and isinstance(v.get("init_args"), Namespace)]


def _is_model_checkpoint(class_path: str) -> bool:
    from lightning.pytorch.callbacks import ModelCheckpoint

    module, _, name = str(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, ModelCheckpoint)
