"""Loading talk models back from ``talk fit`` checkpoints."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from talk.errors import CheckpointError


def instantiate(config: dict, *args: object) -> object:
    """Builds ``{"class_path": ..., "init_args": {...}}`` (nested ones too), passing ``args`` to the outer class."""
    module_name, class_name = config["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs = {
        k: instantiate(v) if isinstance(v, dict) and "class_path" in v else v
        for k, v in (config.get("init_args") or {}).items()
    }
    return cls(*args, **kwargs)


def load_model(checkpoint: str | Path, device: str = "cpu"):  # noqa: ANN201 - a TalkModule
    """Loads any talk model from a ``talk fit`` checkpoint, ready for inference.

    Raises:
        CheckpointError: when the file is missing, not a checkpoint, or was not written by ``talk fit``.
    """
    from talk.training.base import TalkModule

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `talk fit -c CONFIG`.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means it is not a checkpoint
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}).") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint written by `talk fit`.")
    if not ckpt.get("talk_assets", {}).get("templates"):
        raise CheckpointError(
            f"{path} holds no talk assets (templates, faces); it was not written by `talk fit`."
        )
    class_path = ckpt["hyper_parameters"].get("_class_path")
    if not isinstance(class_path, str) or "." not in class_path:
        raise CheckpointError(f"{path} does not name its model class; it was not written by `talk fit`.")
    module_name, class_name = class_path.rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise CheckpointError(
            f"{path} needs model class {class_path}, which this installation lacks."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, TalkModule)):
        raise CheckpointError(f"{path} names {class_path}, which is not a talk model.")
    # Lightning rebuilds the model (and its injected submodules) from the config saved by `talk fit`.
    model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    return model.to(device).eval()
