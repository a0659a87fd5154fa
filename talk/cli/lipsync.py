"""``talk lipsync``: a checkpoint's lip sync on real speech with phone labels. Its options are this function's
signature.

Importing this module imports no torch, so ``talk lipsync --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path


def lipsync(
    checkpoint: Path,
    set: Path | None = None,
    out: Path = Path("lipsync"),
    subject: str | None = None,
    masks: Path | None = None,
    device: str = "cpu",
    seed: int | None = None,
) -> None:
    """Measure a model's lip sync on real speech: bilabial closure, open-vowel / closure gap ratio, gap-phone
    correlation and silence stillness (definitions in talk/lipsync.py).

    Args:
        checkpoint: Checkpoint written by `talk fit`, or a file written by `talk export`.
        set: Evaluation set: a folder of <name>.wav with <name>.lab phone labels (start end phone, in seconds),
            optionally listed in eval.jsonl, or such a manifest (default: the bundled assets/speech/eval).
        out: Folder for lipsync.json (pooled and per utterance) and lipsync_per_utterance.csv.
        subject: Subject whose template and style are animated (default: the first training subject).
        masks: FLAME_masks.pkl with lip_upper_edge / lip_lower_edge regions giving the lip pairs (default: the
            mouth slit found in the checkpoint's 'lips' region).
        device: Torch device of the model.
        seed: Seed of sampled decoding (token models configured to sample; default: the checkpoint's).
    """
    from talk.lipsync_eval import BUNDLED_SET, read_eval_set

    # every input is checked before the model is loaded, so a mistake costs nothing
    set_path = BUNDLED_SET if set is None else Path(set)
    recordings = read_eval_set(set_path)
    if masks is not None and not Path(masks).is_file():
        from talk.errors import UserError

        raise UserError(f"--masks {masks} not found; pass a FLAME_masks.pkl or leave --masks out.")
    import dataclasses

    from talk.lipsync_eval import evaluate_model, format_table, write_evaluation
    from talk.pipeline.load import from_checkpoint

    model = from_checkpoint(checkpoint, device)
    if seed is not None:
        model.sampling = dataclasses.replace(model.sampling, seed=seed)
    evaluation = evaluate_model(model, recordings, subject=subject, masks=masks)
    about = {"checkpoint": str(checkpoint), "set": str(set_path), "fps": model.fps}
    json_path, csv_path = write_evaluation(evaluation, out, about)
    print(
        f"{checkpoint} on {set_path} (subject {evaluation.subject}, {len(evaluation.pairs.upper)} lip pairs)"
    )
    print(format_table(evaluation))
    print(f"\nlip sync: {json_path}\nper utterance: {csv_path}")
