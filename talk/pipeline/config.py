"""Module configs: ``{"class_path": ..., "init_args": {...}}`` dicts, as ``talk fit`` writes them, built safely.

The import path is the registry: a config names its class by import path. Because configs are read from files
(checkpoints, exported models), only ``torch.nn.Module`` subclasses of talk's own packages are built, so that a
crafted file cannot call an arbitrary function.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from talk.errors import CheckpointError

PACKAGES = ("audio", "motion", "render", "talk")


def resolve_class(class_path: str) -> type:
    """The class at ``class_path``, which must be an ``nn.Module`` of one of talk's packages."""
    import torch

    if not isinstance(class_path, str) or "." not in class_path:
        raise CheckpointError(
            f"class_path {class_path!r} is not an import path such as 'motion.lm.MotionLM'."
        )
    module_name, class_name = class_path.rsplit(".", 1)
    if module_name.split(".")[0] not in PACKAGES:
        raise CheckpointError(
            f"class_path {class_path} is outside talk's packages {PACKAGES}; refusing to build it."
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise CheckpointError(f"class {class_path} does not exist in this installation of talk.") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise CheckpointError(f"class_path {class_path} is not a torch module; refusing to build it.")
    return cls


def is_config(value: object) -> bool:
    return isinstance(value, Mapping) and "class_path" in value


def instantiate(config: Mapping[str, Any], *args: object, **kwargs: object) -> Any:
    """Builds a config (nested configs in its ``init_args`` too), passing ``args``/``kwargs`` to the outer class."""
    cls = resolve_class(config["class_path"])
    init = {k: instantiate(v) if is_config(v) else v for k, v in (config.get("init_args") or {}).items()}
    return cls(*args, **{**init, **kwargs})


def bind(config: Mapping[str, Any], *args: object, **kwargs: object) -> dict[str, Any]:
    """The config of ``instantiate(config, *args, **kwargs)`` with every argument named: a factory's config (the
    partial ``init_args`` of a YAML file) plus the arguments it is called with becomes a complete config."""
    cls = resolve_class(config["class_path"])
    bound = inspect.signature(cls).bind_partial(*args, **{**(config.get("init_args") or {}), **kwargs})
    return {"class_path": config["class_path"], "init_args": dict(bound.arguments)}
