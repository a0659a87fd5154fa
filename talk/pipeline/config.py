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


def contained(config: Mapping[str, Any], module: Any) -> dict[str, Any]:
    """``config`` of ``module`` rewritten so that it rebuilds the module without opening any file.

    Modules whose constructors read files (a FLAME model, a hub speech encoder) name those arguments in
    ``file_arguments`` and give file-free replacements in ``contained_init_args()`` (sizes and settings; the
    weights and buffers come from the state dict). Nested configs are matched to the submodule held under the
    attribute of the same name.
    """
    init = dict(config.get("init_args") or {})
    replace = getattr(module, "contained_init_args", None)
    if callable(replace):
        init.update(replace())
    for key, value in init.items():
        child = getattr(module, key, None)
        if is_config(value) and child is not None:
            init[key] = contained(value, child)
    return {"class_path": config["class_path"], "init_args": init}


def file_references(config: Mapping[str, Any]) -> list[str]:
    """The files that building ``config`` would open (empty for a self-contained config)."""
    cls = resolve_class(config["class_path"])
    init = dict(config.get("init_args") or {})
    found: list[str] = []
    names = getattr(cls, "file_arguments", ())
    if names:
        bound = inspect.signature(cls).bind_partial(**{k: v for k, v in init.items() if k in names})
        bound.apply_defaults()
        found += [str(bound.arguments[name]) for name in names if bound.arguments.get(name) is not None]
    for value in init.values():
        if is_config(value):
            found += file_references(value)
    return found
