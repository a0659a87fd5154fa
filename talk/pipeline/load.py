"""Loading and exporting :class:`~talk.pipeline.model.AudioToMotion` models, without Lightning.

Two files hold one:

- a ``talk fit`` checkpoint: Lightning's dict, to which the training modules add ``talk_pipeline`` (the model's
  config: ``{"class_path", "init_args"}`` with every submodule a config too) and ``talk_assets``; the model's
  weights are the ``model.``-prefixed entries of its ``state_dict``;
- a ``talk export`` file: ``{"format": "talk.pipeline", "version", "class_path", "init_args", "state_dict",
  "assets"}``, the same without the training state (optimizer, loops, callbacks), a fraction of the size.

Both are read with ``torch.load(weights_only=True)``: tensors and plain Python only, nothing executes, and the
config may only name ``nn.Module`` classes of talk's packages (:mod:`talk.pipeline.config`). Both are
self-contained: the config gives the face model's and the speech encoder's sizes, not the files they were built
from (:func:`talk.pipeline.config.contained`), so loading opens no file but the one named. A file written before
that names its FLAME file or hub encoder and is refused unless ``allow_file_references=True`` (``talk export``
converts it once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from motion.lm import Sampling
from talk.errors import CheckpointError
from talk.pipeline.assets import Assets
from talk.pipeline.config import contained, file_references, instantiate, resolve_class
from talk.pipeline.model import AudioToMotion

EXPORT_FORMAT = "talk.pipeline"
EXPORT_VERSION = 1
PREFIX = "model."  # where a training module keeps its AudioToMotion


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict in a checkpoint file, read with ``weights_only=True``; one-line errors for anything else."""
    path = Path(path)
    if not path.is_file():
        hint = "" if path.suffix else " (a directory or a path without a suffix: name the .ckpt file)"
        raise CheckpointError(f"checkpoint {path} not found{hint}; train one with `talk fit -c CONFIG`.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle safely means it is not a talk checkpoint
        kind = type(exc).__name__  # torch's own message advises unsafe loading: not repeated
        raise CheckpointError(
            f"{path} is not a readable talk checkpoint ({kind}); it may be truncated or not a checkpoint: pass a "
            "checkpoint written by `talk fit` (<run dir>/checkpoints/best.ckpt) or a file written by `talk export`."
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a talk checkpoint (it holds a {type(ckpt).__name__}).")
    return ckpt


def pipeline_parts(ckpt: dict[str, Any], path: str | Path) -> tuple[dict, dict, Assets | None]:
    """``(config, state_dict, assets)`` of the AudioToMotion in a ``talk fit`` checkpoint or a ``talk export`` file."""
    if ckpt.get("format") == EXPORT_FORMAT:
        if int(ckpt.get("version", 0)) > EXPORT_VERSION:
            raise CheckpointError(
                f"{path} was exported by a newer talk (version {ckpt['version']}); upgrade talk."
            )
        config = {"class_path": ckpt["class_path"], "init_args": ckpt["init_args"]}
        return config, ckpt["state_dict"], Assets.from_dict(ckpt.get("assets"))
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is neither a `talk fit` checkpoint nor a `talk export` file.")
    config = ckpt.get("talk_pipeline")
    if config is None:
        class_path = ckpt["hyper_parameters"].get("_class_path", "a model")
        if "Tokenizer" in str(class_path):
            raise CheckpointError(
                f"{path} holds a motion tokenizer, which reconstructs motion but cannot animate audio; train an "
                "audio-to-motion model (experiments/synthetic/lm.yaml) on top of it."
            )
        raise CheckpointError(
            f"{path} was written by an older talk (no pipeline config); convert it once with "
            f"`talk export --checkpoint {path} --output model.pt` and use model.pt."
        )
    state = {k[len(PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    return config, state, Assets.from_dict(ckpt.get("talk_assets"))


def build(
    config: dict[str, Any],
    state_dict: dict[str, Any],
    assets: Assets | None,
    source: str | Path = "the checkpoint",
    allow_file_references: bool = False,
) -> AudioToMotion:
    """The model of a pipeline config, with its weights.

    Args:
        config: The model's config (``{"class_path", "init_args"}``).
        state_dict: Its weights and buffers.
        assets: Its dataset assets.
        source: The file it came from (for messages).
        allow_file_references: Build a config that names other files (a FLAME file, a hub encoder), as
            checkpoints written before they were self-contained do; otherwise such a config is refused.
    """
    cls = resolve_class(config["class_path"])
    if not issubclass(cls, AudioToMotion):
        raise CheckpointError(f"{config['class_path']} is not an AudioToMotion model.")
    files = file_references(config)
    if files and not allow_file_references:
        raise CheckpointError(
            f"{source} builds its model from {', '.join(files)}, which it does not contain (written before "
            f"checkpoints were self-contained); convert it once with `talk export --checkpoint {source} "
            "--output model.pt` (where those files exist) and use model.pt."
        )
    init_args = dict(config.get("init_args") or {})
    init_args["sampling"] = Sampling(**(init_args.get("sampling") or {}))
    init_args["assets"] = assets
    model = instantiate({"class_path": config["class_path"], "init_args": init_args})
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {source} do not fit the model they name (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})."
        )
    model.config = contained(
        {"class_path": config["class_path"], "init_args": config.get("init_args") or {}}, model
    )
    return model


def from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", allow_file_references: bool = False
) -> AudioToMotion:
    """An :class:`AudioToMotion` in eval mode from a ``talk fit`` checkpoint or a ``talk export`` file.

    Args:
        path: The checkpoint or exported file.
        device: Torch device of the model.
        allow_file_references: Load a file written before checkpoints were self-contained, re-opening the
            FLAME file or hub encoder its config names (relative paths from the working directory).
    """
    ckpt = read_checkpoint(path)
    config, state, assets = pipeline_parts(ckpt, path)
    return build(config, state, assets, path, allow_file_references).to(device).eval()


def export(model: AudioToMotion, path: str | Path) -> Path:
    """Writes ``model`` as a ``talk export`` file (atomically): its config, weights and assets.

    Raises:
        CheckpointError: for a model built in Python (no config to rebuild it from): export a ``talk fit``
            checkpoint of it instead.
    """
    from talk.files import atomic_write

    if model.config is None:
        raise CheckpointError(
            "this model was built in Python and carries no config to rebuild it from; train it with `talk fit` "
            "(or load a talk fit checkpoint) before exporting it."
        )
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "class_path": model.config["class_path"],
        "init_args": contained(model.config, model)["init_args"],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "assets": None if model.assets is None else model.assets.to_dict(),
    }
    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    return path
