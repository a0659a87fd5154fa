"""Loading talk's LightningModules back from ``talk fit`` checkpoints (for ``talk export`` and Python users).

Inference does not need this: :func:`talk.pipeline.from_checkpoint` loads the model without Lightning. This module
builds the whole training module, and converts checkpoints written before the pipeline layout: their config names
classes by the module paths of that time, which are renamed here, and their weights are moved to the pipeline
model's keys by :meth:`TalkModule.on_load_checkpoint`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from talk.errors import CheckpointError
from talk.pipeline.config import resolve_class
from talk.pipeline.load import read_checkpoint

# Module paths of checkpoints written before the pipeline layout -> today's.
LEGACY_MODULES = {
    "talk.models.audio_to_motion": "talk.training.audio_to_motion",
    "talk.models.regression": "talk.training.regression",
    "talk.models.tokenizer": "talk.training.tokenizer",
    "talk.models": "talk.training",
    "motion.procedural_face": "motion.face.procedural.face",
    "motion.face_model": "motion.face.base",
    "motion.flame": "motion.face.flame",
    "motion.quantizer": "motion.tokens.quantizer",
    "motion.tokenizer": "motion.tokens.tokenizer",
    "motion.regressor": "motion.regression.regressor",
    "motion.lm": "motion.lm",
}


def rename_legacy(value: Any) -> tuple[Any, bool]:
    """``value`` with every ``class_path`` of a legacy module path renamed; and whether anything was."""
    if isinstance(value, dict):
        changed = False
        out = {}
        for k, v in value.items():
            if k in ("class_path", "_class_path") and isinstance(v, str):
                module, _, name = v.rpartition(".")
                new = LEGACY_MODULES.get(module, module)
                out[k], changed = f"{new}.{name}", changed or new != module
            else:
                out[k], sub = rename_legacy(v)
                changed = changed or sub
        return out, changed
    if isinstance(value, list):
        pairs = [rename_legacy(v) for v in value]
        return [v for v, _ in pairs], any(c for _, c in pairs)
    return value, False


SAMPLING_KEYS = ("temperature", "top_k", "top_p", "cfg_scale", "greedy", "seed")


def legacy_sampling(hparams: dict[str, Any]) -> bool:
    """Folds the loose sampling arguments of older checkpoints (``greedy``, ``temperature``, ...) into the one
    ``sampling`` argument, in place; whether there were any."""
    if not any(k in hparams for k in SAMPLING_KEYS):
        return False
    old = {k: hparams.pop(k) for k in SAMPLING_KEYS if k in hparams}
    greedy = old.pop("greedy", True)
    sampling = {k: v for k, v in old.items() if k in ("temperature", "top_k", "top_p", "cfg_scale", "seed")}
    if greedy:
        sampling["temperature"] = 0.0
    hparams["sampling"] = sampling
    return True


def load_model(checkpoint: str | Path, device: str = "cpu"):  # noqa: ANN201 - a TalkModule
    """Loads any talk LightningModule from a ``talk fit`` checkpoint (read with ``weights_only=True``).

    Raises:
        CheckpointError: when the file is missing, not a checkpoint, or was not written by ``talk fit``.
    """
    from talk.training.base import TalkModule

    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint written by `talk fit`.")
    if not (ckpt.get("talk_assets") or {}).get("templates"):
        raise CheckpointError(
            f"{path} holds no talk assets (templates, faces); it was not written by `talk fit`."
        )
    ckpt["hyper_parameters"], renamed = rename_legacy(ckpt["hyper_parameters"])
    renamed = legacy_sampling(ckpt["hyper_parameters"]) or renamed
    class_path = ckpt["hyper_parameters"].get("_class_path")
    cls = resolve_class(class_path)
    if not issubclass(cls, TalkModule):
        raise CheckpointError(f"{path} names {class_path}, which is not a talk model.")
    source: Any = path
    if renamed:  # hand Lightning the renamed config
        source = io.BytesIO()
        torch.save(ckpt, source)
        source.seek(0)
    # As under `talk fit`, the module sees its submodules' configs, so that it knows its pipeline config.
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    with _given_hyperparameters_context(
        dict(ckpt["hyper_parameters"]), "lightning.pytorch.cli.instantiate_module"
    ):
        model = cls.load_from_checkpoint(source, map_location="cpu", weights_only=True)
    return model.to(device).eval()
