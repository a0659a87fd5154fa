"""``talk export``: a ``talk fit`` checkpoint -> a small self-contained inference file."""

from __future__ import annotations

from pathlib import Path


def export(checkpoint: Path, output: Path, overwrite: bool = False) -> None:
    """Write a checkpoint's inference model alone (config, weights, dataset assets) to one small file.

    The file holds no training state and no reference to other files (the face model's and speech encoder's
    buffers and sizes are inside); `talk animate` and `talk.pipeline.Pipeline.from_checkpoint` read it without
    Lightning. Checkpoints written by older versions of talk are converted on the way: those that name a FLAME
    file or a hub encoder read it once, from where their config says (run from the training directory).

    Args:
        checkpoint: Checkpoint written by `talk fit`.
        output: The file to write (e.g. model.pt); its folder is created if missing.
        overwrite: Replace the output file if it exists.
    """
    from talk.cli.checks import check_output_file
    from talk.errors import CheckpointError
    from talk.pipeline.load import build, pipeline_parts, read_checkpoint
    from talk.pipeline.load import export as write

    check_output_file(Path(output), overwrite)  # before the checkpoint is read
    ckpt = read_checkpoint(checkpoint)
    if ckpt.get("talk_pipeline") is not None or ckpt.get("format") is not None:
        model = build(*pipeline_parts(ckpt, checkpoint), checkpoint, allow_file_references=True)
    else:  # an older checkpoint: rebuild its training module, which knows its pipeline config
        from talk.training.checkpoints import load_model

        module = load_model(checkpoint)
        if module.model is None or module.pipeline_config is None:
            raise CheckpointError(
                f"{checkpoint} holds a {type(module).__name__}, which has no inference model to export."
            )
        model = module.model
    path = write(model, output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
